package denylist_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
)

// A revocation that carries a trace context is applied in a span, a child
// of the publisher's span, once as it is published (live) and once as it
// is read from the stream (stored). One without, or with a malformed one,
// is applied all the same, without a span.
func TestApplySpans(t *testing.T) {
	e := newEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	l, _, _ := e.start(denylist.Config{TracerProvider: tp, Heartbeat: 500 * time.Millisecond})
	waitReady(t, l)

	e.revokeSession("UNTRACED", time.Minute)
	now := time.Now().UTC()
	bad, err := events.New(events.TypeSessionRevoked, events.Source("test-manager"), "BADTRACE", now,
		events.SessionRevoked{SessionID: "BADTRACE", UserID: "U1", Reason: events.ReasonLogout, RevokedAt: now, DenyUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.ToMsg(bad.NATSSubject(), bad)
	if err != nil {
		t.Fatal(err)
	}
	m.Header[events.HeaderTraceParent] = []string{"00-zz-yy-01"}
	e.publishRaw(m)

	// The manager's tracer is another program's: the publisher here uses
	// the global no-op provider, which passes the caller's context on.
	caller := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = caller.Shutdown(context.Background()) })
	ctx, root := caller.Tracer("test").Start(context.Background(), "admin")
	traced, err := events.New(events.TypeSessionRevoked, events.Source("test-manager"), "TRACED", now,
		events.SessionRevoked{SessionID: "TRACED", UserID: "U1", Reason: events.ReasonAdmin, RevokedAt: now, DenyUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pub.Publish(ctx, traced, nil); err != nil {
		t.Fatal(err)
	}
	root.End()

	for _, sid := range []string{"UNTRACED", "BADTRACE", "TRACED"} {
		eventually(t, sid+" denied", func() bool { return denied(l, denylist.Token{SessionID: sid}) == denylist.KindSession })
	}
	got := map[string]bool{}
	eventually(t, "live and stored apply spans", func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name != "denylist apply "+string(events.TypeSessionRevoked) {
				t.Fatalf("unexpected span %q", s.Name)
			}
			if s.Parent.SpanID() != root.SpanContext().SpanID() || s.SpanContext.TraceID() != root.SpanContext().TraceID() {
				t.Fatalf("apply span in trace %s parent %s, want the publisher's %s", s.SpanContext.TraceID(), s.Parent.SpanID(), root.SpanContext().SpanID())
			}
			for _, a := range s.Attributes {
				if a.Key == "sessionbus.delivery" {
					got[a.Value.AsString()] = true
				}
			}
		}
		return got["live"] && got["stored"]
	})
	// Only the traced fact made spans: two, live and stored, whatever
	// else was applied twice.
	if n := len(exp.GetSpans()); n != 2 {
		t.Errorf("%d apply spans, want 2 (the traced fact, live and stored)", n)
	}
}
