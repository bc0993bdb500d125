package jsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/backoff"
)

// DefaultPublishTimeout bounds a Publish whose context has no deadline.
const DefaultPublishTimeout = 10 * time.Second

// Defaults of the publisher's options.
const (
	DefaultAttemptTimeout = 2 * time.Second
	DefaultSettleTimeout  = 10 * time.Second
	// DefaultDuplicateWindow is StreamConfig's default Duplicates: the
	// publisher's retry horizon with room to spare. A Publish re-sends
	// its message id for as long as its caller waits (DefaultPublishTimeout
	// without a deadline; the manager's commands allow 10s) and then
	// settles for up to DefaultSettleTimeout: 20s after its first attempt.
	// The stream keeps every id of the window in memory, so a longer one
	// costs heap in proportion to the write rate (docs/design.md).
	DefaultDuplicateWindow = 30 * time.Second
)

// Publisher publishes facts to AUTH_EVENTS and waits for the stream's ack.
// It is safe for concurrent use.
type Publisher struct {
	js             jetstream.JetStream
	attemptTimeout time.Duration
	settleTimeout  time.Duration
	dupWindow      time.Duration
	observe        func(error)
	tracer         trace.Tracer
}

// PublisherOption configures a Publisher.
type PublisherOption func(*Publisher) error

// WithAttemptTimeout sets how long one publish attempt waits for the ack
// before it is retried with the same message id (default 2s).
func WithAttemptTimeout(d time.Duration) PublisherOption {
	return func(p *Publisher) error {
		if d <= 0 {
			return fmt.Errorf("jsbus: attempt timeout must be positive, got %s", d)
		}
		p.attemptTimeout = d
		return nil
	}
}

// WithSettleTimeout sets how long Publish goes on, after its context
// ended, finding out whether an attempt it heard no answer to was stored
// (default 10s).
func WithSettleTimeout(d time.Duration) PublisherOption {
	return func(p *Publisher) error {
		if d <= 0 {
			return fmt.Errorf("jsbus: settle timeout must be positive, got %s", d)
		}
		p.settleTimeout = d
		return nil
	}
}

// WithDuplicateWindow tells the publisher the stream's de-duplication
// window (StreamConfig.Duplicates; default DefaultDuplicateWindow). A message id is sent
// again only well within it, so a late re-send is never stored twice.
func WithDuplicateWindow(d time.Duration) PublisherOption {
	return func(p *Publisher) error {
		if d <= 0 {
			return fmt.Errorf("jsbus: duplicate window must be positive, got %s", d)
		}
		p.dupWindow = d
		return nil
	}
}

// WithObserver makes the publisher tell observe the outcome of every
// Publish: nil, a conflict or the error (WriteHealth.Observe).
func WithObserver(observe func(error)) PublisherOption {
	return func(p *Publisher) error {
		p.observe = observe
		return nil
	}
}

// WithTracerProvider makes the publisher's spans with tp (default: the
// global provider, a no-op unless the program set one).
func WithTracerProvider(tp trace.TracerProvider) PublisherOption {
	return func(p *Publisher) error {
		if tp != nil {
			p.tracer = tp.Tracer(TracerName)
		}
		return nil
	}
}

// TracerName names the tracer of this package's spans.
const TracerName = "github.com/sessionbus/sessionbus/events/jsbus"

// NewPublisher returns a Publisher on js.
func NewPublisher(js jetstream.JetStream, opts ...PublisherOption) (*Publisher, error) {
	p := &Publisher{js: js, attemptTimeout: DefaultAttemptTimeout, settleTimeout: DefaultSettleTimeout, dupWindow: DefaultDuplicateWindow}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	if p.tracer == nil {
		p.tracer = otel.GetTracerProvider().Tracer(TracerName)
	}
	return p, nil
}

// Publish stores e on its subject and returns the stream sequence once the
// stream has acknowledged it. Failed attempts (timeouts, no responders,
// reconnects) are retried with the same message id until ctx ends, so the
// fact is stored at most once. With expect set, it returns an
// *events.ConflictError (errors.Is events.ErrConflict) when another
// writer moved the subjects first.
//
// An attempt that got no answer may have been stored. If ctx ends after
// such an attempt, Publish settles it before returning, on a context of
// its own bounded by the settle timeout: it sends the same message id
// again (the stream answers with the stored sequence if the first one
// landed) or, with expect set, reads the first message after the expected
// sequence and compares its message id. The caller hears the truth:
// a sequence, a conflict, or, if the stream did not answer in time,
// ErrUnsettled.
//
// Publish is a span ("publish <type>", a child of the span in ctx) whose
// trace context the fact carries as its ce-traceparent and
// ce-tracestate, so that whoever applies the fact continues the trace.
func (p *Publisher) Publish(ctx context.Context, e events.Event, expect *events.Expect) (uint64, error) {
	ctx, span := p.tracer.Start(ctx, "publish "+string(e.Type), producerSpan...)
	e.SetTrace(span.SpanContext())
	seq, err := p.publish(ctx, e, expect)
	if p.observe != nil {
		p.observe(err)
	}
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", e.NATSSubject()),
			attribute.String("messaging.message.id", e.ID),
			attribute.String("cloudevents.event_type", string(e.Type)),
			attribute.String("cloudevents.event_subject", e.Subject),
		)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.Int64("sessionbus.stream.sequence", int64(seq)))
		}
	}
	span.End()
	return seq, err
}

func (p *Publisher) publish(ctx context.Context, e events.Event, expect *events.Expect) (uint64, error) {
	subject := e.NATSSubject()
	if subject == "" {
		return 0, fmt.Errorf("publish: %w: no subject for type %q and id %q", events.ErrMalformed, e.Type, e.Subject)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPublishTimeout)
		defer cancel()
	}
	pub := publication{p: p, e: e, subject: subject, expect: expect}
	if seq, done, err := pub.retry(ctx); done {
		return seq, err
	}
	if !pub.unknown {
		return 0, fmt.Errorf("publish %s: %w (last attempt: %v)", e.Type, ctx.Err(), pub.last)
	}
	// Settle on a context of our own: the caller's has ended.
	sctx, cancel := context.WithTimeout(context.Background(), p.settleTimeout)
	defer cancel()
	if seq, done, err := pub.retry(sctx); done {
		return seq, err
	}
	return 0, fmt.Errorf("publish %s: %w (last attempt: %v)", e.Type, ErrUnsettled, pub.last)
}

// publication is one Publish: its attempts share the message id.
type publication struct {
	p       *Publisher
	e       events.Event
	subject string
	expect  *events.Expect
	first   time.Time // when the first attempt was sent
	unknown bool      // an attempt was sent and its outcome is unknown
	last    error     // the last attempt's error
}

// retry makes attempts until one has a definite outcome (done) or ctx
// ends.
func (pub *publication) retry(ctx context.Context) (seq uint64, done bool, err error) {
	b := backoff.New(20*time.Millisecond, 500*time.Millisecond)
	for {
		if seq, done, err := pub.attempt(ctx); done {
			return seq, true, err
		}
		if b.Wait(ctx) != nil {
			return 0, false, nil
		}
	}
}

// attempt sends the message once, or, once re-sending is no longer safe,
// looks for it.
func (pub *publication) attempt(ctx context.Context) (seq uint64, done bool, err error) {
	p, e, expect := pub.p, pub.e, pub.expect
	if ctx.Err() != nil {
		return 0, false, nil
	}
	if pub.unknown && time.Since(pub.first) > p.dupWindow*9/10 {
		// Past the window a re-send could be stored a second time:
		// only a lookup can tell.
		return pub.lookup(ctx)
	}
	msg, err := events.ToMsg(pub.subject, e)
	if err != nil {
		return 0, true, fmt.Errorf("publish: %w", err)
	}
	opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequenceForSubject(expect.LastSeq, expect.Subject))
	}
	if pub.first.IsZero() {
		pub.first = time.Now()
	}
	actx, cancel := context.WithTimeout(ctx, p.attemptTimeout)
	ack, err := p.js.PublishMsg(actx, msg, opts...)
	cancel()
	if err == nil {
		return ack.Sequence, true, nil
	}
	pub.last = err
	if last, ok := wrongLastSequence(err); ok {
		if pub.unknown {
			// An earlier attempt may have been stored without our
			// hearing the ack: the server checks expectations before
			// de-duplication, so look for our own message id.
			seq, found, err := p.findStored(ctx, expect, e.ID)
			if err != nil {
				pub.last = err
				return 0, false, nil
			}
			if found {
				return seq, true, nil
			}
		}
		return 0, true, &events.ConflictError{Subject: expect.Subject, LastSeq: last}
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		// Nobody took this attempt: it was not stored.
		return 0, false, nil
	case retryable(err), errors.Is(err, context.Canceled):
		// Sent, or maybe sent: only the stream knows.
		pub.unknown = true
		return 0, false, nil
	}
	if pub.unknown {
		return 0, true, fmt.Errorf("publish %s: %w: %w", e.Type, ErrUnsettled, err)
	}
	return 0, true, fmt.Errorf("publish %s: %w", e.Type, err)
}

// lookup settles an unknown attempt without sending: with an expectation,
// the stored message, if any, is the first one after the expected
// sequence on its subjects; without one, only the subject's last message
// can be checked.
func (pub *publication) lookup(ctx context.Context) (uint64, bool, error) {
	s, err := pub.p.js.Stream(ctx, events.StreamName)
	if err != nil {
		pub.last = err
		return 0, false, nil
	}
	var m *jetstream.RawStreamMsg
	if pub.expect != nil {
		m, err = s.GetMsg(ctx, pub.expect.LastSeq+1, jetstream.WithGetMsgSubject(pub.expect.Subject))
	} else {
		m, err = s.GetLastMsgForSubject(ctx, pub.subject)
	}
	switch {
	case err == nil && m.Header.Get(jetstream.MsgIDHeader) == pub.e.ID:
		return m.Sequence, true, nil
	case err == nil && pub.expect != nil:
		// Another message took the place ours needed.
		return 0, true, &events.ConflictError{Subject: pub.expect.Subject, LastSeq: m.Sequence}
	case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
		pub.last = err
		return 0, false, nil
	}
	err = errors.New("not found among the stored messages")
	pub.last = err
	return 0, true, fmt.Errorf("publish %s: %w (duplicate window passed: %v)", pub.e.Type, ErrUnsettled, err)
}

// findStored reports whether the message stored right after the
// expectation's sequence on its subjects has Nats-Msg-Id id: a publish
// conditional on that sequence, if stored, is that message.
func (p *Publisher) findStored(ctx context.Context, expect *events.Expect, id string) (uint64, bool, error) {
	s, err := p.js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, false, err
	}
	m, err := s.GetMsg(ctx, expect.LastSeq+1, jetstream.WithGetMsgSubject(expect.Subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return m.Sequence, m.Header.Get(jetstream.MsgIDHeader) == id, nil
}

// wrongLastSequence reports whether err is JetStream's "wrong last
// sequence" and the sequence it names.
func wrongLastSequence(err error) (uint64, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	if apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence &&
		apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant {
		return 0, false
	}
	d := apiErr.Description
	if i := strings.LastIndexByte(d, ' '); i >= 0 {
		d = d[i+1:]
	}
	n, _ := strconv.ParseUint(d, 10, 64)
	return n, true
}

func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// LastSeq returns the stream's last sequence: everything acknowledged
// before the call is at or below it.
func (p *Publisher) LastSeq(ctx context.Context) (uint64, error) {
	s, err := p.js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, fmt.Errorf("stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.LastSeq, nil
}

// producerSpan is the publish span's option, made once.
var producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
