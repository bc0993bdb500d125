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

	"github.com/sessionbus/sessionbus/events"
)

// DefaultPublishTimeout bounds a Publish whose context has no deadline.
const DefaultPublishTimeout = 10 * time.Second

// Publisher publishes facts to AUTH_EVENTS and waits for the stream's ack.
// It is safe for concurrent use.
type Publisher struct {
	js             jetstream.JetStream
	attemptTimeout time.Duration
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

// NewPublisher returns a Publisher on js.
func NewPublisher(js jetstream.JetStream, opts ...PublisherOption) (*Publisher, error) {
	p := &Publisher{js: js, attemptTimeout: 2 * time.Second}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Publish stores e on its subject and returns the stream sequence once the
// stream has acknowledged it. Failed attempts (timeouts, no responders,
// reconnects) are retried with the same message id until ctx ends, so the
// fact is stored at most once. With expect set, it returns an
// *events.ConflictError (errors.Is events.ErrConflict) when another
// writer moved the subjects first.
func (p *Publisher) Publish(ctx context.Context, e events.Event, expect *events.Expect) (uint64, error) {
	subject := e.NATSSubject()
	if subject == "" {
		return 0, fmt.Errorf("publish: %w: no subject for type %q and id %q", events.ErrMalformed, e.Type, e.Subject)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPublishTimeout)
		defer cancel()
	}
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		msg, err := events.ToMsg(subject, e)
		if err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		opts := []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}
		if expect != nil {
			opts = append(opts, jetstream.WithExpectLastSequenceForSubject(expect.LastSeq, expect.Subject))
		}
		actx, cancel := context.WithTimeout(ctx, p.attemptTimeout)
		ack, err := p.js.PublishMsg(actx, msg, opts...)
		cancel()
		if err == nil {
			return ack.Sequence, nil
		}
		if last, ok := wrongLastSequence(err); ok {
			if attempt > 1 {
				// An earlier attempt may have been stored without our
				// hearing the ack: the server checks expectations before
				// de-duplication, so look for our own message id.
				if seq, found := p.findStored(ctx, expect, e.ID); found {
					return seq, nil
				}
			}
			return 0, &events.ConflictError{Subject: expect.Subject, LastSeq: last}
		}
		if !retryable(err) {
			return 0, fmt.Errorf("publish %s: %w", e.Type, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("publish %s: %w (last attempt: %v)", e.Type, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// findStored looks for a message with Nats-Msg-Id id on the expectation's
// subjects after the expected sequence.
func (p *Publisher) findStored(ctx context.Context, expect *events.Expect, id string) (uint64, bool) {
	s, err := p.js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, false
	}
	seq := expect.LastSeq + 1
	for range 64 {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(expect.Subject))
		if err != nil {
			return 0, false
		}
		if m.Header.Get(jetstream.MsgIDHeader) == id {
			return m.Sequence, true
		}
		seq = m.Sequence + 1
	}
	return 0, false
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
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
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
