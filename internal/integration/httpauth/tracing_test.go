package httpauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

// The middleware's span: a child of the span already in the request's
// context, else of its W3C traceparent; a malformed traceparent starts a
// new trace and changes no answer; the span says the result, never the
// token.
func TestMiddlewareSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := setup(t, setupOpts{cfg: httpauth.Config{TracerProvider: tp}})
	tok := f.es.sign(t, claims(time.Now()), nil)
	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	inCtx := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})

	for _, tc := range []struct {
		name, auth, traceparent string
		ctx                     trace.SpanContext
		wantCode                int
		wantResult, wantParent  string // wantParent "" for a new trace
	}{
		{"valid token, caller's traceparent", "Bearer " + tok, caller, trace.SpanContext{}, 200, "ok", "b7ad6b7169203331"},
		{"span in the context wins", "Bearer " + tok, caller, inCtx, 200, "ok", inCtx.SpanID().String()},
		{"malformed traceparent", "Bearer " + tok, "00-xyz-b7ad6b7169203331-01", trace.SpanContext{}, 200, "ok", ""},
		{"garbage token", "Bearer " + tok + "x", caller, trace.SpanContext{}, 401, "malformed", "b7ad6b7169203331"},
		{"no token", "", "", trace.SpanContext{}, 401, "no_token", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			r := httptest.NewRequest(http.MethodGet, "/protected-resource", nil)
			if tc.ctx.IsValid() {
				r = r.WithContext(trace.ContextWithSpanContext(r.Context(), tc.ctx))
			}
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.traceparent != "" {
				r.Header.Set("traceparent", tc.traceparent)
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Fatalf("status %d, want %d", w.Code, tc.wantCode)
			}
			spans := exp.GetSpans()
			if len(spans) != 1 || spans[0].Name != "httpauth authenticate" {
				t.Fatalf("spans %v, want one httpauth authenticate", spans.Snapshots())
			}
			s := spans[0]
			if got := attrOf(s, "sessionbus.auth.result"); got != tc.wantResult {
				t.Errorf("result %q, want %q", got, tc.wantResult)
			}
			switch {
			case tc.wantParent == "" && s.Parent.IsValid():
				t.Errorf("parent %v, want a new trace", s.Parent)
			case tc.wantParent != "" && s.Parent.SpanID().String() != tc.wantParent:
				t.Errorf("parent %s, want %s", s.Parent.SpanID(), tc.wantParent)
			}
			for _, a := range s.Attributes {
				if strings.Contains(a.Value.Emit(), tok[20:]) {
					t.Errorf("attribute %s holds the token", a.Key)
				}
			}
		})
	}
}

func attrOf(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}
