package denylist

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
)

// Run follows the revocation subjects of AUTH_EVENTS until ctx ends, then
// returns nil. It replays the revocations published within Lookback,
// closes Ready once it has caught up, and applies each new revocation as
// it is stored. It uses an ordered consumer: on a reconnect, a missed
// heartbeat or a server restart (which loses the consumer) the consumer is
// recreated from the sequence after the last one handled, so nothing is
// skipped and nothing needs acknowledging. While the stream cannot be
// reached at start, Run retries. It returns ErrNoJetStream without
// Config.JetStream, ErrAlreadyRunning for a second Run, and an error when
// the NATS connection is closed.
func (l *List) Run(ctx context.Context) error {
	if l.cfg.JetStream == nil {
		return ErrNoJetStream
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	start := time.Now().Add(-l.cfg.Lookback)
	var (
		cons jetstream.Consumer
		cc   jetstream.ConsumeContext
		err  error
	)
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		cons, cc, err = l.subscribe(ctx, start)
		if err == nil {
			break
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("denylist: %w", err)
		}
		l.m.consumerErrors.Inc()
		l.log.Warn("cannot follow the revocations yet", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
	defer l.unsubscribe(cc)

	probe := time.NewTicker(l.cfg.Heartbeat)
	defer probe.Stop()
	sweep := time.NewTicker(l.cfg.SweepInterval)
	defer sweep.Stop()
	if err := l.probe(ctx, cons); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-probe.C:
			if err := l.probe(ctx, cons); err != nil {
				return err
			}
		case now := <-sweep.C:
			l.sweep(now)
		}
	}
}

// inactiveThreshold is how long the server keeps a consumer nobody pulls
// from: a stopped list's consumer goes after it.
const inactiveThreshold = time.Minute

// subscribe starts an ordered consumer of the revocation subjects from
// start. It needs no stream info (the service role may not ask for it:
// the request can ask for per-subject counts of the whole stream): the
// catch-up target comes from the consumer's own deliveries (handle).
func (l *List) subscribe(ctx context.Context, start time.Time) (jetstream.Consumer, jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// handle derives each catch-up target from a delivery made after
	// this moment: reaching it means the list holds every revocation
	// stored before this moment.
	l.targetAt.Store(int64(time.Since(l.epoch)))
	cons, err := l.cfg.JetStream.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{events.SubjectRevocations},
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &start,
		ReplayPolicy:      jetstream.ReplayInstantPolicy,
		InactiveThreshold: inactiveThreshold,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("consumer: %w", err)
	}
	cc, err := cons.Consume(l.handle,
		jetstream.PullHeartbeat(l.cfg.Heartbeat),
		jetstream.ConsumeErrHandler(l.consumeError))
	if err != nil {
		return nil, nil, fmt.Errorf("consume: %w", err)
	}
	return cons, cc, nil
}

// unsubscribe stops consuming and waits until the last message is
// handled. The server's consumer is left to its inactivity threshold:
// the service role may not delete consumers.
func (l *List) unsubscribe(cc jetstream.ConsumeContext) {
	cc.Stop()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		l.log.Warn("consumer did not stop in time")
	}
}

func (l *List) consumeError(_ jetstream.ConsumeContext, err error) {
	l.m.consumerErrors.Inc()
	l.log.Warn("revocation consumer", "err", err)
}

// handle applies one message. The ordered consumer calls it from one
// goroutine, in stream order.
func (l *List) handle(m jetstream.Msg) {
	recv := time.Now()
	e, err := events.FromMsg(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	kind := KindNone
	if err == nil {
		kind, err = l.apply(e, recv)
	}
	switch {
	case err == nil:
		l.m.applied[kind].Inc()
	case errors.Is(err, events.ErrUnknownType):
		l.m.skip(skipUnknownType)
		l.log.Debug("skipped an unknown event type", "type", string(e.Type), "subject", m.Subject())
	case errors.Is(err, ErrNotRevocation):
		l.m.skip(skipNotRevocation)
	case errors.Is(err, ErrExpired):
		l.m.skip(skipExpired)
	default:
		l.m.skip(skipMalformed)
		l.log.Warn("skipped a malformed revocation", "subject", m.Subject(), "err", err)
	}
	md, mdErr := m.Metadata()
	if mdErr != nil {
		l.log.Warn("message without JetStream metadata", "subject", m.Subject(), "err", mdErr)
		return
	}
	l.progMu.Lock()
	l.prog = progress{consumer: md.Consumer, cseq: md.Sequence.Consumer}
	if l.target.consumer != md.Consumer {
		// The first message of this consumer (at start, or after the
		// ordered consumer was recreated): what it reports as still
		// pending was stored by the time it was delivered, which is after
		// Run's start. Handling this consumer up to that sequence is
		// catching up with the stream as it was when Run started.
		l.target = progress{consumer: md.Consumer, cseq: md.Sequence.Consumer + md.NumPending}
	}
	reached := md.Sequence.Consumer >= l.target.cseq
	l.progMu.Unlock()
	l.lastSeq.Store(md.Sequence.Stream)
	if err == nil && l.isReady.Load() {
		l.m.lag.Observe(recv.Sub(md.Timestamp).Seconds())
	}
	switch {
	case md.NumPending == 0:
		l.markFresh(recv)
		l.markReady()
	case reached:
		// Caught up with where the stream stood when Run started.
		l.markFresh(l.epoch.Add(time.Duration(l.targetAt.Load())))
		l.markReady()
	}
}

// probe asks the server about the consumer: when nothing is pending and
// every message delivered has been handled, the list is complete as of the
// moment the probe was sent. This keeps a quiet stream fresh and tells an
// outage (the probe fails) from silence.
func (l *List) probe(ctx context.Context, cons jetstream.Consumer) error {
	sent := time.Now()
	pctx, cancel := context.WithTimeout(ctx, l.cfg.Heartbeat)
	defer cancel()
	info, err := cons.Info(pctx)
	if err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("denylist: %w", err)
		}
		if ctx.Err() == nil {
			l.m.consumerErrors.Inc()
			l.log.Debug("freshness probe failed", "err", err, "staleness", l.Staleness())
		}
		return nil
	}
	if info.NumPending != 0 {
		return nil
	}
	l.progMu.Lock()
	p := l.prog
	l.progMu.Unlock()
	if info.Delivered.Consumer == 0 || (info.Name == p.consumer && info.Delivered.Consumer <= p.cseq) {
		l.markFresh(sent)
		l.markReady()
	}
	return nil
}
