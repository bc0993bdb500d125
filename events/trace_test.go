package events_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
)

const (
	validParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	validState  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

// The trace context travels as the CloudEvents Distributed Tracing
// extension: ce-traceparent and ce-tracestate in binary mode, the
// traceparent and tracestate attributes in structured mode.
func TestTraceContextRoundTrip(t *testing.T) {
	e := sampleEvent(t)
	e.SetTrace(events.SpanContext(validParent, validState))
	if e.TraceParent != validParent || e.TraceState != validState {
		t.Fatalf("SetTrace: %q %q", e.TraceParent, e.TraceState)
	}
	m, err := events.ToMsg(e.NATSSubject(), e)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header[events.HeaderTraceParent][0] != validParent || m.Header[events.HeaderTraceState][0] != validState {
		t.Fatalf("headers: %v", m.Header)
	}
	got, err := events.FromMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	if got.TraceParent != validParent || got.TraceState != validState {
		t.Errorf("binary mode: %q %q", got.TraceParent, got.TraceState)
	}
	b, err := json.Marshal(e.CloudEvent())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"traceparent":"`+validParent+`"`) {
		t.Errorf("structured mode has no traceparent attribute: %s", b)
	}
	got, err = events.FromStructured(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.TraceParent != validParent || got.TraceState != validState {
		t.Errorf("structured mode: %q %q", got.TraceParent, got.TraceState)
	}
	if sc := got.Trace(); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !sc.IsRemote() || !sc.IsSampled() {
		t.Errorf("Trace() = %v", sc)
	}
}

// A malformed trace context is dropped, never an error: the event is
// decoded as if it had none. A tracestate over 512 bytes is dropped and
// the traceparent kept.
func TestMalformedTraceContextDropped(t *testing.T) {
	long := "k=" + strings.Repeat("v", 250) + ",l=" + strings.Repeat("v", 250) + ",m=" + strings.Repeat("v", 20)
	for _, tc := range []struct {
		name, parent, state, wantParent, wantState string
	}{
		{"none", "", "", "", ""},
		{"valid", validParent, validState, validParent, validState},
		{"garbage", "hello", validState, "", ""},
		{"bad flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", "", "", ""},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", "", ""},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", "", ""},
		{"upper case", strings.ToUpper(validParent), "", "", ""},
		{"version ff", "ff" + validParent[2:], "", "", ""},
		{"secret-looking tracestate", validParent, "sbr_abc def", validParent, ""},
		{"tracestate too large", validParent, long, validParent, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := events.ToMsg("auth.events.x", sampleEvent(t))
			if err != nil {
				t.Fatal(err)
			}
			if tc.parent != "" {
				m.Header[events.HeaderTraceParent] = []string{tc.parent}
				m.Header[events.HeaderTraceState] = []string{tc.state}
			}
			e, err := events.FromMsg(m)
			if err != nil {
				t.Fatalf("FromMsg: %v", err)
			}
			if e.TraceParent != tc.wantParent || e.TraceState != tc.wantState {
				t.Errorf("got %q %q, want %q %q", e.TraceParent, e.TraceState, tc.wantParent, tc.wantState)
			}
		})
	}
}

// Commands take the W3C headers first, else the CloudEvents extension;
// Request-side injection writes the W3C headers from the span in ctx.
func TestCommandTrace(t *testing.T) {
	m, err := events.NewCommand(events.SubjectRefresh, "/test", events.RefreshRequest{RefreshToken: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if sc := events.MsgTrace(m.Header); sc.IsValid() {
		t.Fatalf("a command without trace context has one: %v", sc)
	}
	events.InjectTrace(context.Background(), m)
	if _, ok := m.Header[events.HeaderW3CTraceParent]; ok {
		t.Fatal("InjectTrace without a span set a header")
	}
	ctx := trace.ContextWithSpanContext(context.Background(), events.SpanContext(validParent, validState))
	events.InjectTrace(ctx, m)
	if m.Header[events.HeaderW3CTraceParent][0] != validParent || m.Header[events.HeaderW3CTraceState][0] != validState {
		t.Fatalf("InjectTrace: %v", m.Header)
	}
	other := "00-11111111111111111111111111111111-2222222222222222-00"
	m.Header[events.HeaderTraceParent] = []string{other}
	if sc := events.MsgTrace(m.Header); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("MsgTrace preferred the extension over traceparent: %v", sc)
	}
	h := nats.Header{"Ce-Traceparent": {other}}
	if sc := events.MsgTrace(h); sc.TraceID().String() != "11111111111111111111111111111111" {
		t.Errorf("MsgTrace of the extension alone (canonical case): %v", sc)
	}
}

func FuzzTraceContext(f *testing.F) {
	f.Add(validParent, validState)
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "a=b,,c=d")
	f.Fuzz(func(t *testing.T, parent, state string) {
		m, err := events.ToMsg("auth.events.x", sampleEvent(t))
		if err != nil {
			t.Fatal(err)
		}
		m.Header[events.HeaderTraceParent] = []string{parent}
		m.Header[events.HeaderTraceState] = []string{state}
		e, err := events.FromMsg(m)
		if err != nil {
			return // too large, or not a header NATS could carry
		}
		if e.TraceParent == "" {
			if e.TraceState != "" {
				t.Fatalf("tracestate %q kept without a traceparent", e.TraceState)
			}
			return
		}
		if len(e.TraceParent) != 55 || len(e.TraceState) > events.MaxTraceStateSize || !e.Trace().IsValid() {
			t.Fatalf("kept a bad trace context: %q %q", e.TraceParent, e.TraceState)
		}
		// What is kept survives a round trip unchanged.
		m2, err := events.ToMsg("auth.events.x", e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := events.FromMsg(m2)
		if err != nil || e2.TraceParent != e.TraceParent || e2.TraceState != e.TraceState {
			t.Fatalf("round trip: %v %q %q", err, e2.TraceParent, e2.TraceState)
		}
	})
}
