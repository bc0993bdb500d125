package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

// tracer is one program's tracer provider, exporting to memory.
type tracer struct {
	tp  *sdktrace.TracerProvider
	exp *tracetest.InMemoryExporter
}

func newTracer(t *testing.T) *tracer {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &tracer{tp: tp, exp: exp}
}

// span waits for the ended span named name in the trace, and returns it.
func (tr *tracer) span(t *testing.T, id trace.TraceID, name string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	waitFor(t, "span "+name, 10*time.Second, func() bool {
		for _, s := range tr.exp.GetSpans() {
			if s.Name == name && s.SpanContext.TraceID() == id {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// tracedService is a protected service with a tracer of its own: a
// separate program, which learns of the trace only through the bus.
func tracedService(t *testing.T, srv *natstest.Server, tp trace.TracerProvider) string {
	t.Helper()
	nc := srv.ConnectService(nats.Name("traced"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	svc, err := httpauth.NewService(httpauth.ServiceConfig{Conn: nc, Name: "/traced",
		Auth: httpauth.Config{Issuer: "sessionbus", TracerProvider: tp}, DenyList: denylist.Config{Heartbeat: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(ctx) })
	h := httptest.NewServer(svc.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(func() { h.Close(); cancel(); wg.Wait() })
	wctx, wcancel := context.WithTimeout(bg, 10*time.Second)
	defer wcancel()
	if err := svc.DenyList.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return h.URL
}

// get asks the service for a resource with token, in the trace of ctx
// (the W3C traceparent header), and returns the status.
func get(t *testing.T, ctx context.Context, url, token string, header ...string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/resource", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// lastFact reads the last fact stored on subject, headers and all.
func lastFact(t *testing.T, srv *natstest.Server, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := srv.JetStream().Stream(bg, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(bg, subject)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// One revocation, followed as one trace: the operator's request carries
// a traceparent; the manager's command span, its publish span and its
// view's apply span, the deny-list's apply span in a service that has a
// tracer of its own, and that service's middleware refusing the token all
// share the trace id. The fact on the stream carries the publish span's
// context as ce-traceparent. No span says a token or a password.
func TestRevocationIsOneTrace(t *testing.T) {
	srv := natstest.Start(t)
	mgrT, svcT, opT := newTracer(t), newTracer(t), newTracer(t)
	m := nodetest.Start(t, srv, func(c *node.Config) { c.TracerProvider = mgrT.tp })
	m.AddUser(t, "alice", pw)
	url := tracedService(t, srv, svcT.tp)

	// The operator's workflow is one trace: log in, use the token,
	// revoke the session, use the token again.
	ctx, root := opT.tp.Tracer("operator").Start(bg, "operator workflow")
	id := root.SpanContext().TraceID()
	var tok events.TokenReply
	if err := events.Request(ctx, srv.ConnectService(), events.SubjectLogin, "/test", events.LoginRequest{Username: "alice", Password: pw}, &tok); err != nil {
		t.Fatal(err)
	}
	if got := get(t, ctx, url, tok.AccessToken); got != 200 {
		t.Fatalf("before the revocation: %d, want 200", got)
	}
	op := srv.ConnectIdentity(natsauth.RoleOperator)
	if err := events.Request(ctx, op, events.SubjectRevoke, "/test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "admin"}, nil); err != nil {
		t.Fatal(err)
	}
	var refusedAt int
	waitFor(t, "the revoked token refused", 10*time.Second, func() bool { refusedAt = get(t, ctx, url, tok.AccessToken); return refusedAt == 401 })
	root.End()

	cmd := mgrT.span(t, id, events.SubjectRevoke)
	if cmd.Parent.SpanID() != root.SpanContext().SpanID() || cmd.SpanKind != trace.SpanKindServer {
		t.Errorf("command span: parent %s kind %s, want the operator's span %s, server", cmd.Parent.SpanID(), cmd.SpanKind, root.SpanContext().SpanID())
	}
	pub := mgrT.span(t, id, "publish "+string(events.TypeSessionRevoked))
	if pub.Parent.SpanID() != cmd.SpanContext.SpanID() {
		t.Errorf("publish span's parent %s, want the command span %s", pub.Parent.SpanID(), cmd.SpanContext.SpanID())
	}
	view := mgrT.span(t, id, "view apply "+string(events.TypeSessionRevoked))
	if view.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("view apply span's parent %s, want the publish span", view.Parent.SpanID())
	}
	apply := svcT.span(t, id, "denylist apply "+string(events.TypeSessionRevoked))
	if apply.Parent.SpanID() != pub.SpanContext.SpanID() || !apply.Parent.IsRemote() {
		t.Errorf("deny-list apply span's parent %s (remote %v), want the publish span %s from the bus", apply.Parent.SpanID(), apply.Parent.IsRemote(), pub.SpanContext.SpanID())
	}
	// The middleware's span ends just after its answer: wait for it.
	results := map[string]bool{}
	waitFor(t, "the middleware's spans", 10*time.Second, func() bool {
		for _, s := range svcT.exp.GetSpans() {
			if s.Name == "httpauth authenticate" && s.SpanContext.TraceID() == id {
				results[attr(s, "sessionbus.auth.result")] = true
				if r := attr(s, "sessionbus.auth.result"); r == "ok" && attr(s, "sessionbus.session_id") != tok.SessionID {
					t.Errorf("middleware span names session %q, want %q", attr(s, "sessionbus.session_id"), tok.SessionID)
				}
			}
		}
		return results["ok"] && results["revoked"]
	})

	// The fact itself carries the publish span's context.
	fact := lastFact(t, srv, events.TypeSessionRevoked.Subject(tok.SessionID))
	if got := fact.Header.Get(events.HeaderTraceParent); events.SpanContext(got, "").SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("stored fact's ce-traceparent %q, want the publish span %s", got, pub.SpanContext.SpanID())
	}

	// The login's command span continues the operator's trace too.
	login := mgrT.span(t, id, events.SubjectLogin)
	if login.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("login span's parent %s, want the operator's span", login.Parent.SpanID())
	}
	noSecretInSpans(t, []string{tok.AccessToken, tok.RefreshToken, pw}, mgrT, svcT)
}

// noSecretInSpans fails if any span's name, attributes, status or events
// hold one of the secrets.
func noSecretInSpans(t *testing.T, secrets []string, trs ...*tracer) {
	t.Helper()
	for _, tr := range trs {
		for _, s := range tr.exp.GetSpans() {
			var b bytes.Buffer
			fmt.Fprint(&b, s.Name, s.Status.Description, s.SpanContext.TraceState().String())
			for _, a := range s.Attributes {
				fmt.Fprint(&b, " ", a.Key, "=", a.Value.Emit())
			}
			for _, e := range s.Events {
				fmt.Fprint(&b, " ", e.Name)
				for _, a := range e.Attributes {
					fmt.Fprint(&b, " ", a.Key, "=", a.Value.Emit())
				}
			}
			for _, secret := range secrets {
				if strings.Contains(b.String(), secret) {
					t.Errorf("span %q holds a secret", s.Name)
				}
			}
		}
	}
}

// An untrusted caller's trace context cannot break anything nor put what
// it likes on the stream: a malformed traceparent is dropped (the command
// works and starts a new trace; the fact carries the manager's own
// context), a tracestate beyond 512 bytes never reaches the fact, and a
// malformed traceparent at a service is ignored.
func TestUntrustedTraceContext(t *testing.T) {
	srv := natstest.Start(t)
	mgrT, svcT := newTracer(t), newTracer(t)
	m := nodetest.Start(t, srv, func(c *node.Config) { c.TracerProvider = mgrT.tp })
	m.AddUser(t, "alice", pw)
	url := tracedService(t, srv, svcT.tp)
	svc := srv.ConnectService()
	const bad = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x" // bad flags
	valid := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	huge := "k=" + strings.Repeat("v", 250)
	for i := range 8 {
		huge += fmt.Sprintf(",k%d=%s", i, strings.Repeat("v", 250))
	}

	for _, tc := range []struct {
		name, parent, state string
		wantTrace           string // the trace id the command joins; "" a new one
		wantState           bool
	}{
		{"malformed traceparent", bad, "k=v", "", false},
		{"all-zero trace id", "00-00000000000000000000000000000000-b7ad6b7169203331-01", "", "", false},
		{"upper-case hex", strings.ToUpper(valid), "", "", false},
		{"valid, tracestate too large", valid, huge, "0af7651916cd43dd8448eb211c80319c", false},
		{"valid, with tracestate", valid, "k=v", "0af7651916cd43dd8448eb211c80319c", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := events.NewCommand(events.SubjectLogin, "/test", events.LoginRequest{Username: "alice", Password: pw})
			if err != nil {
				t.Fatal(err)
			}
			msg.Header[events.HeaderW3CTraceParent] = []string{tc.parent}
			msg.Header[events.HeaderW3CTraceState] = []string{tc.state}
			resp, err := svc.RequestMsg(msg, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := events.ReplyError(resp); err != nil {
				t.Fatalf("login with trace context %q: %v", tc.parent, err)
			}
			var tok events.TokenReply
			if err := json.Unmarshal(resp.Data, &tok); err != nil {
				t.Fatal(err)
			}
			fact := lastFact(t, srv, events.TypeSessionCreated.Subject(tok.SessionID))
			sc := events.SpanContext(fact.Header.Get(events.HeaderTraceParent), fact.Header.Get(events.HeaderTraceState))
			if !sc.IsValid() {
				t.Fatalf("fact carries no well-formed ce-traceparent: %q", fact.Header.Get(events.HeaderTraceParent))
			}
			if tc.wantTrace != "" && sc.TraceID().String() != tc.wantTrace {
				t.Errorf("fact's trace %s, want the caller's %s", sc.TraceID(), tc.wantTrace)
			}
			if tc.wantTrace == "" && strings.Contains(tc.parent, sc.TraceID().String()) {
				t.Errorf("fact joined the malformed trace %s", sc.TraceID())
			}
			if got := fact.Header.Get(events.HeaderTraceState); tc.wantState != (got != "") || len(got) > events.MaxTraceStateSize {
				t.Errorf("fact's ce-tracestate %q (%d bytes), want one: %v", got, len(got), tc.wantState)
			}
			// A service given the same trace context still decides on
			// the token alone.
			if got := get(t, bg, url, tok.AccessToken, "traceparent", tc.parent, "tracestate", tc.state); got != 200 {
				t.Errorf("service answers %d with trace context %q, want 200", got, tc.parent)
			}
		})
	}
}
