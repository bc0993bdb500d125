package denylist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/events/natsauth"
)

// batchSize is how many stored revocations one read asks for.
const batchSize = 512

// Run follows the revocations until ctx ends, then returns nil. It needs
// no consumer and no JetStream of its own, only the service role:
//
//   - live, a core subscription to auth.events.*.revoked.> applies each
//     revocation as the manager publishes it;
//   - stored, batch direct gets of AUTH_REVOCATIONS (the revocation and
//     key facts, sourced from AUTH_EVENTS) replay the revocations of the
//     last Lookback at start, and every Heartbeat read what was stored
//     since the last one. A read that reaches the end of the stream makes
//     the list fresh as of when it was sent, and ready the first time.
//
// So a revocation missed by the live subscription (a reconnect, a NATS
// restart) is applied by the next read, at most a Heartbeat later, and an
// outage shows as staleness. Facts are applied twice as a rule (live and
// stored); applying is idempotent.
//
// It returns ErrNoJetStream without Config.JetStream, ErrAlreadyRunning
// for a second Run, and an error when the NATS connection is closed.
func (l *List) Run(ctx context.Context) error {
	if l.cfg.JetStream == nil {
		return ErrNoJetStream
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	nc := l.cfg.JetStream.Conn()
	sub, err := nc.Subscribe(events.SubjectRevocations, l.handleLive)
	if err != nil {
		return fmt.Errorf("denylist: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	l.runStart = l.cfg.Now()
	start := l.runStart.Add(-l.cfg.Lookback)
	probe := time.NewTicker(l.cfg.Heartbeat)
	defer probe.Stop()
	sweep := time.NewTicker(l.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		if err := l.read(ctx, nc, start); err != nil {
			if errors.Is(err, nats.ErrConnectionClosed) {
				return fmt.Errorf("denylist: %w", err)
			}
			if ctx.Err() == nil {
				l.m.consumerErrors.Inc()
				l.log.Debug("reading the revocations failed", "err", err, "staleness", l.Staleness())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-probe.C:
		case <-sweep.C:
			l.sweep(l.cfg.Now())
		}
	}
}

// read applies what AUTH_REVOCATIONS stored after the last sequence read
// (from start on the first read), until it reaches the end. The list is
// then complete as of the moment the stream's sourcing from AUTH_EVENTS
// was last known to be caught up (asked before the read): fresh as of
// then, and ready once that moment is after Run started.
func (l *List) read(ctx context.Context, nc *nats.Conn, start time.Time) error {
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Heartbeat)
	defer cancel()
	asOf, err := sourcedUpTo(rctx, nc, l.cfg.Now)
	if err != nil {
		return err
	}
	for {
		req := jsbus.BatchRequest{Seq: l.readSeq + 1, Batch: batchSize}
		if l.readSeq == 0 {
			req.Seq, req.StartTime = 0, start
		}
		b, err := jsbus.DirectBatch(rctx, nc, events.RevocationsStreamName, req)
		if err != nil {
			return err
		}
		for _, m := range b.Msgs {
			l.handle(jsbus.StoredMsg(m), jsbus.MsgTime(m))
			l.readSeq = jsbus.MsgSeq(m)
			if seq := jsbus.SourceSeq(m); seq > 0 {
				l.lastSeq.Store(seq)
			}
		}
		if b.Pending == 0 {
			break
		}
	}
	if asOf.IsZero() {
		return nil
	}
	l.markFresh(asOf)
	if !asOf.Before(l.runStart) {
		l.markReady()
	}
	return nil
}

// sourcedUpTo asks AUTH_REVOCATIONS how far its sourcing has come: the
// moment its source last reported nothing pending (a message with no lag,
// or an idle heartbeat, one a second). Everything AUTH_EVENTS stored
// before then is in AUTH_REVOCATIONS. Zero when the source lags or
// failed.
func sourcedUpTo(ctx context.Context, nc *nats.Conn, now func() time.Time) (time.Time, error) {
	sent := now()
	m, err := nc.RequestWithContext(ctx, natsauth.RevocationsInfoSubject, nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("info %s: %w", events.RevocationsStreamName, err)
	}
	var info struct {
		Error   *struct{ Description string } `json:"error"`
		Sources []struct {
			Name   string        `json:"name"`
			Lag    uint64        `json:"lag"`
			Active time.Duration `json:"active"`
			Error  *struct{}     `json:"error"`
		} `json:"sources"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return time.Time{}, fmt.Errorf("info %s: %w", events.RevocationsStreamName, err)
	}
	if info.Error != nil {
		return time.Time{}, fmt.Errorf("info %s: %s", events.RevocationsStreamName, info.Error.Description)
	}
	for _, src := range info.Sources {
		if src.Name == events.StreamName && src.Error == nil && src.Lag == 0 && src.Active >= 0 {
			return sent.Add(-src.Active), nil
		}
	}
	return time.Time{}, nil
}

// handleLive applies a revocation as it was published.
func (l *List) handleLive(m *nats.Msg) { l.handle(m, time.Time{}) }

// handle applies one message; stored is when the stream stored it (zero
// for a live message). Messages it cannot use are skipped and counted.
// Applying a fact that carries a trace context (ce-traceparent) is a span,
// a child of it, so that the revocation's trace shows every service that
// applied it; once live and once stored, as a rule.
func (l *List) handle(m *nats.Msg, stored time.Time) {
	recv := l.cfg.Now()
	e, err := events.FromMsg(m)
	kind := KindNone
	if err == nil {
		if sc := e.Trace(); sc.IsValid() {
			var span trace.Span
			_, span = l.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc),
				"denylist apply "+string(e.Type), trace.WithSpanKind(trace.SpanKindConsumer))
			defer func() { endApplySpan(span, kind, stored, err) }()
		}
		kind, err = l.apply(e, recv)
	}
	switch {
	case err == nil:
		l.m.applied[kind].Inc()
		if stored.IsZero() && !e.Time.IsZero() && l.isReady.Load() {
			l.m.lag.Observe(recv.Sub(e.Time).Seconds())
		}
	case errors.Is(err, events.ErrMsgIDMismatch):
		l.m.skip(skipMsgID)
		l.log.Warn("skipped a revocation whose message id is not its ce-id", "subject", m.Subject)
	case errors.Is(err, events.ErrUnknownType):
		l.m.skip(skipUnknownType)
		l.log.Debug("skipped an unknown event type", "type", string(e.Type), "subject", m.Subject)
	case errors.Is(err, ErrNotRevocation):
		l.m.skip(skipNotRevocation)
	case errors.Is(err, ErrExpired):
		l.m.skip(skipExpired)
	default:
		l.m.skip(skipMalformed)
		l.log.Warn("skipped a malformed revocation", "subject", m.Subject, "err", err)
	}
}

func endApplySpan(span trace.Span, kind Kind, stored time.Time, err error) {
	if span.IsRecording() {
		delivery := "live"
		if !stored.IsZero() {
			delivery = "stored"
		}
		span.SetAttributes(attribute.String("sessionbus.delivery", delivery), attribute.String("sessionbus.deny.kind", kind.String()))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
