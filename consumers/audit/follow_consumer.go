package audit

// The durable consumer of a Follower: placing it after the file's last
// line, and writing what it delivers.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// position returns the durable consumer, delivering from lastSeq+1. It
// keeps the existing durable when its state already says exactly that,
// and otherwise recreates it there: the file, not the server, knows what
// is on disk (a crash between fsync and ack leaves acks missing; a
// crash before fsync leaves deliveries the file never got).
func (f *Follower) position(ctx context.Context, lastSeq uint64) (jetstream.Stream, jetstream.Consumer, error) {
	stream, err := f.js.Stream(ctx, f.cfg.Stream)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", f.cfg.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("stream info: %w", err)
	}
	if info.State.LastSeq < lastSeq {
		return nil, nil, fmt.Errorf("%w: the file ends at sequence %d, the stream %s at %d", ErrFileAhead, lastSeq, f.cfg.Stream, info.State.LastSeq)
	}
	cons, err := stream.Consumer(ctx, f.cfg.Durable)
	switch {
	case err == nil:
		ci := cons.CachedInfo()
		if ci.Config.AckPolicy == jetstream.AckExplicitPolicy && ci.Config.FilterSubject == "" &&
			len(ci.Config.FilterSubjects) == 0 && ci.Config.AckWait == f.cfg.AckWait &&
			ci.Delivered.Stream == lastSeq && ci.AckFloor.Stream == lastSeq && ci.NumAckPending == 0 {
			return stream, cons, nil
		}
		if err := stream.DeleteConsumer(ctx, f.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, nil, fmt.Errorf("delete consumer %s: %w", f.cfg.Durable, err)
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, nil, fmt.Errorf("consumer %s: %w", f.cfg.Durable, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       f.cfg.Durable,
		Description:   "sessionbus audit follow into " + f.cfg.Out,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       f.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * f.cfg.Batch,
	}
	if lastSeq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, lastSeq+1
	}
	cons, err = stream.CreateConsumer(ctx, cc)
	if err != nil {
		return nil, nil, fmt.Errorf("create consumer %s: %w", f.cfg.Durable, err)
	}
	return stream, cons, nil
}

// consume writes what cons delivers until ctx ends (nil), the consumer
// must be repositioned (errReposition), or an error.
func (f *Follower) consume(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer, w *chainWriter) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(f.cfg.Batch))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	enc := newBodyEncoder(f.cfg.Stream)
	var body []byte
	var pending []jetstream.Msg // on the file, not yet synced nor acked
	var stats Stats
	lastAck := time.Now()
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := w.out.sync(); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		for _, m := range pending {
			_ = m.Ack() // a lost ack means a redelivery, skipped as a duplicate
		}
		pending = pending[:0]
		lastAck = time.Now()
		f.setStats(func(s *Stats) {
			s.Lines += stats.Lines
			s.Unreadable += stats.Unreadable
			s.MsgIDMismatch += stats.MsgIDMismatch
			s.Foreign += stats.Foreign
			s.Gaps += stats.Gaps
			s.LastSeq, s.LastHash, s.Part = w.st.lastSeq, w.st.prevHash(), w.st.part
		})
		stats = Stats{}
		f.m.lastSeq.Set(float64(w.st.lastSeq))
		return nil
	}
	write := func(b []byte, seq uint64, k kind) error {
		if err := w.writeBody(b, seq); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		stats.count(k)
		f.m.count(k)
		return nil
	}
	defer func() { _ = flush() }()
	for {
		wait := f.cfg.IdleCheck
		if len(pending) > 0 {
			wait = 2 * time.Millisecond
		}
		m, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			if len(pending) > 0 {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			if time.Since(lastAck) >= f.cfg.IdleCheck {
				// A message delivered while the connection was down is
				// neither here nor redelivered before AckWait: go get it.
				if ci, err := cons.Info(ctx); err == nil && ci.Delivered.Stream > w.st.lastSeq {
					return errReposition
				}
				lastAck = time.Now()
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		switch {
		case seq <= w.st.lastSeq:
			f.m.duplicates.Inc()
			pending = append(pending, m) // acked once what it duplicates is synced
			continue
		case seq > w.st.lastSeq+1:
			if err := flush(); err != nil {
				return err
			}
			nm, err := stream.GetMsg(ctx, w.st.lastSeq+1, jetstream.WithGetMsgSubject(">"))
			if err != nil {
				return fmt.Errorf("look for sequence %d: %w", w.st.lastSeq+1, err)
			}
			if nm.Sequence == w.st.lastSeq+1 || nm.Sequence > seq {
				return errReposition // a delivery was lost in transit
			}
			body = appendGap(body[:0], f.cfg.Stream, w.st.lastSeq+1, nm.Sequence-1)
			if err := write(body, nm.Sequence-1, kindGap); err != nil {
				return err
			}
			if nm.Sequence != seq {
				if err := flush(); err != nil {
					return err
				}
				return errReposition
			}
		}
		st := stored{Seq: seq, Time: meta.Timestamp, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
		var k kind
		body, k, _ = enc.appendBody(body[:0], &st)
		if err := write(body, seq, k); err != nil {
			return err
		}
		pending = append(pending, m)
		if len(pending) >= f.cfg.Batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
