package events

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header names of the CloudEvents Distributed Tracing extension in binary
// mode (the W3C Trace Context traceparent and tracestate of the span that
// published the fact), and the plain W3C headers a command request may
// carry instead.
const (
	HeaderTraceParent = "ce-traceparent"
	HeaderTraceState  = "ce-tracestate"

	HeaderW3CTraceParent = "traceparent"
	HeaderW3CTraceState  = "tracestate"
)

// MaxTraceStateSize caps a tracestate (W3C Trace Context: 512 characters
// is what every platform must carry). A longer one is dropped, the
// traceparent kept.
const MaxTraceStateSize = 512

// traceContext parses and formats W3C Trace Context: only a well-formed
// traceparent is taken (version, lengths, lower-case hex, non-zero ids),
// and only a well-formed tracestate.
var traceContext = propagation.TraceContext{}

// pair is a carrier of one traceparent and one tracestate.
type pair struct{ parent, state string }

func (p *pair) Get(k string) string {
	switch k {
	case HeaderW3CTraceParent:
		return p.parent
	case HeaderW3CTraceState:
		if len(p.state) > MaxTraceStateSize {
			return ""
		}
		return p.state
	}
	return ""
}

func (p *pair) Set(k, v string) {
	switch k {
	case HeaderW3CTraceParent:
		p.parent = v
	case HeaderW3CTraceState:
		p.state = v
	}
}

func (p *pair) Keys() []string { return []string{HeaderW3CTraceParent, HeaderW3CTraceState} }

// SpanContext returns the remote span context of a traceparent and a
// tracestate; it is invalid when traceparent is not a well-formed W3C
// traceparent. A malformed or oversized tracestate is dropped.
func SpanContext(traceparent, tracestate string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(traceContext.Extract(context.Background(), &pair{traceparent, tracestate}))
}

// formatTrace returns the traceparent and tracestate of sc, or "" for an
// invalid sc. A tracestate over MaxTraceStateSize is left out: a caller
// cannot make facts carry more than that of its own.
func formatTrace(sc trace.SpanContext) (traceparent, tracestate string) {
	if !sc.IsValid() {
		return "", ""
	}
	var p pair
	traceContext.Inject(trace.ContextWithSpanContext(context.Background(), sc), &p)
	if len(p.state) > MaxTraceStateSize {
		p.state = ""
	}
	return p.parent, p.state
}

// SetTrace records sc as the event's trace context (the CloudEvents
// Distributed Tracing extension); an invalid sc clears it.
func (e *Event) SetTrace(sc trace.SpanContext) {
	e.TraceParent, e.TraceState = formatTrace(sc)
}

// Trace returns the event's trace context as a remote span context,
// invalid when the event carries none.
func (e Event) Trace() trace.SpanContext { return SpanContext(e.TraceParent, e.TraceState) }

// cleanTrace keeps a received trace context only if it is well formed,
// in its canonical form: a bad one is dropped, never an error.
func (e *Event) cleanTrace() { e.SetTrace(e.Trace()) }

// MsgTrace returns the trace context a command request carries: the W3C
// traceparent and tracestate headers, or else the CloudEvents extension
// (ce-traceparent, ce-tracestate). Header names match in any case. It is
// invalid when there is none or it is malformed.
func MsgTrace(h nats.Header) trace.SpanContext {
	if p := header(h, HeaderW3CTraceParent); p != "" {
		return SpanContext(p, header(h, HeaderW3CTraceState))
	}
	return SpanContext(header(h, HeaderTraceParent), header(h, HeaderTraceState))
}

// InjectTrace sets the W3C traceparent and tracestate headers of a command
// request m from the span in ctx; it does nothing when ctx has none.
func InjectTrace(ctx context.Context, m *nats.Msg) {
	p, s := formatTrace(trace.SpanContextFromContext(ctx))
	if p == "" {
		return
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	// Set the map directly: nats.Header.Set would canonicalise the
	// lower-case W3C names.
	m.Header[HeaderW3CTraceParent] = []string{p}
	if s != "" {
		m.Header[HeaderW3CTraceState] = []string{s}
	}
}
