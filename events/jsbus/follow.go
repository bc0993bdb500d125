package jsbus

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
)

// FollowConfig configures Follow.
type FollowConfig struct {
	// StartSeq is the first sequence to deliver; 0 delivers from the
	// start of the stream.
	StartSeq uint64
	// Subjects filters the stream (default: every fact).
	Subjects []string
	// MaxBatch caps the messages handed to fn at once (default 512).
	MaxBatch int
}

// Follow delivers the stream's messages in order, in batches of what is
// available, to fn, until ctx ends (it then returns nil) or fn returns an
// error (which Follow returns). It uses an ordered consumer, which
// survives reconnects and server restarts by resuming after the last
// delivered sequence: no gap, no duplicate.
func Follow(ctx context.Context, js jetstream.JetStream, cfg FollowConfig, fn func([]events.Stored) error) error {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	// The name prefix is random, not nats.go's NUID: a NUID shares its
	// prefix with every other NUID of the process (the micro service id
	// that $SRV.INFO hands to anyone), so its consumer names could be
	// guessed and pulled from by another identity of the account.
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: cfg.Subjects, NamePrefix: UnguessableName()}
	if cfg.StartSeq > 0 {
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = cfg.StartSeq
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, occ)
	if err != nil {
		return fmt.Errorf("follow %s: %w", events.StreamName, err)
	}
	msgs := make(chan jetstream.Msg, cfg.MaxBatch*2)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return fmt.Errorf("follow %s: %w", events.StreamName, err)
	}
	defer cc.Stop()
	batch := make([]events.Stored, 0, cfg.MaxBatch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			batch = append(batch[:0], Decode(m))
		fill:
			for len(batch) < cfg.MaxBatch {
				select {
				case m := <-msgs:
					batch = append(batch, Decode(m))
				default:
					break fill
				}
			}
			if err := fn(batch); err != nil {
				return err
			}
		}
	}
}

// Decode turns a consumed message into a Stored fact.
func Decode(m jetstream.Msg) events.Stored {
	s := events.Stored{Subject: m.Subject()}
	if md, err := m.Metadata(); err == nil {
		s.Seq = md.Sequence.Stream
		s.Time = md.Timestamp
	}
	s.Event, s.Err = events.FromMsg(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	return s
}

// UnguessableName returns a consumer name nobody can guess: 128 random
// bits. Names of consumers are how JetStream addresses them, so knowing
// one is being able to pull from it.
func UnguessableName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "c" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
