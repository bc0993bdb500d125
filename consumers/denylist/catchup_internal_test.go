package denylist

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
)

// fakeMsg is a delivered revocation with the metadata a test chooses.
type fakeMsg struct {
	jetstream.Msg // nil: only the methods below are called
	m             *nats.Msg
	md            jetstream.MsgMetadata
}

func (f fakeMsg) Subject() string                           { return f.m.Subject }
func (f fakeMsg) Headers() nats.Header                      { return f.m.Header }
func (f fakeMsg) Data() []byte                              { return f.m.Data }
func (f fakeMsg) Metadata() (*jetstream.MsgMetadata, error) { md := f.md; return &md, nil }

// deliver hands handle one session revocation as consumer cons delivered
// it at consumer sequence cseq (stream sequence sseq), with pending
// revocations stored after it.
func deliver(t *testing.T, l *List, cons string, cseq, sseq, pending uint64) {
	t.Helper()
	now := time.Now().UTC()
	sid := events.NewID()
	ev, err := events.New(events.TypeSessionRevoked, events.Source("t"), sid, now,
		events.SessionRevoked{SessionID: sid, RevokedAt: now, DenyUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.ToMsg(ev.NATSSubject(), ev)
	if err != nil {
		t.Fatal(err)
	}
	l.handle(fakeMsg{m: m, md: jetstream.MsgMetadata{
		Sequence:   jetstream.SequencePair{Consumer: cseq, Stream: sseq},
		NumPending: pending, Timestamp: now, Stream: events.StreamName, Consumer: cons,
	}})
}

func isReady(l *List) bool {
	select {
	case <-l.Ready():
		return true
	default:
		return false
	}
}

// Without the stream's info, the catch-up target is what the consumer's
// first delivery reports: its sequence plus what is pending after it.
// Revocations stored later (the pending count grows) do not move it, and
// an ordered consumer recreated before the target was reached sets a new
// one from its own first delivery.
func TestCatchUpTargetFromFirstDelivery(t *testing.T) {
	newList := func(t *testing.T) *List {
		l, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		l.targetAt.Store(int64(time.Since(l.epoch)))
		return l
	}
	t.Run("steady stream", func(t *testing.T) {
		l := newList(t)
		deliver(t, l, "C_1", 1, 10, 3) // target: consumer sequence 4
		deliver(t, l, "C_1", 2, 11, 6) // more stored meanwhile
		deliver(t, l, "C_1", 3, 12, 7)
		if isReady(l) {
			t.Fatal("ready before the target")
		}
		deliver(t, l, "C_1", 4, 20, 9)
		if !isReady(l) {
			t.Fatal("not ready at the target, though revocations keep coming")
		}
		if s := l.Staleness(); s > time.Minute {
			t.Fatalf("staleness %s at the target", s)
		}
	})
	t.Run("recreated consumer", func(t *testing.T) {
		l := newList(t)
		deliver(t, l, "C_1", 1, 10, 5) // target: C_1 sequence 6
		deliver(t, l, "C_1", 2, 11, 5)
		// C_1 is lost (server restart); C_2 starts after stream sequence 11.
		deliver(t, l, "C_2", 1, 14, 2) // target: C_2 sequence 3
		deliver(t, l, "C_2", 2, 15, 4)
		if isReady(l) {
			t.Fatal("ready before the new target")
		}
		deliver(t, l, "C_2", 3, 16, 4)
		if !isReady(l) {
			t.Fatal("not ready at the recreated consumer's target")
		}
	})
	t.Run("nothing pending", func(t *testing.T) {
		l := newList(t)
		deliver(t, l, "C_1", 1, 10, 1)
		if isReady(l) {
			t.Fatal("ready with a revocation pending")
		}
		deliver(t, l, "C_1", 2, 12, 0)
		if !isReady(l) || l.LastSequence() != 12 {
			t.Fatalf("ready %v at sequence %d, want ready at 12", isReady(l), l.LastSequence())
		}
	})
}
