package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/poll"
)

// A request's W3C traceparent makes its route's span a child of the
// caller's, and the fact it publishes carries the publish span's context
// (ce-traceparent). A malformed traceparent starts a new trace and the
// request works. No span holds a secret.
func TestHTTPSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newFixture(t, func(c *node.Config) { c.TracerProvider = tp })

	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	r := do(t, "POST", f.public+"/refresh", ctJSON, mustJSON(t, map[string]string{"token": f.login.RefreshToken}), "traceparent", caller)
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	var route, pub tracetest.SpanStub
	poll.Until(t, "the route and publish spans in the caller's trace", func() bool {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
				continue
			}
			switch s.Name {
			case "POST /refresh":
				route = s
			case "publish " + string(events.TypeSessionRefreshed):
				pub = s
			}
		}
		return route.Name != "" && pub.Name != ""
	})
	if route.Parent.SpanID().String() != "b7ad6b7169203331" || !route.Parent.IsRemote() {
		t.Errorf("route span's parent %v, want the caller's span", route.Parent)
	}
	if pub.Parent.SpanID() != route.SpanContext.SpanID() {
		t.Errorf("publish span's parent %s, want the route span %s", pub.Parent.SpanID(), route.SpanContext.SpanID())
	}
	m, err := f.stream.GetLastMsgForSubject(context.Background(), events.TypeSessionRefreshed.Subject(f.login.SessionID))
	if err != nil {
		t.Fatal(err)
	}
	if got := events.SpanContext(m.Header.Get(events.HeaderTraceParent), ""); got.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("fact's ce-traceparent %q, want the publish span %s", m.Header.Get(events.HeaderTraceParent), pub.SpanContext.SpanID())
	}

	exp.Reset()
	r = do(t, "POST", f.public+"/logout", ctJSON, mustJSON(t, map[string]string{"token": f.login.RefreshToken}), "traceparent", "00-"+strings.Repeat("z", 32)+"-b7ad6b7169203331-01")
	if r.status != http.StatusNoContent {
		t.Fatalf("logout with a malformed traceparent: %d %s", r.status, r.body)
	}
	poll.Until(t, "the span of the logout", func() bool { return hasSpan(exp, "POST /logout") })
	for _, s := range exp.GetSpans() {
		if s.Name == "POST /logout" && s.Parent.IsValid() {
			t.Errorf("the malformed traceparent became the parent: %v", s.Parent)
		}
		for _, a := range s.Attributes {
			for _, secret := range f.secrets() {
				if strings.Contains(a.Value.Emit(), secret) {
					t.Errorf("span %s attribute %s holds a secret", s.Name, a.Key)
				}
			}
		}
	}
}

func hasSpan(exp *tracetest.InMemoryExporter, name string) bool {
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			return true
		}
	}
	return false
}
