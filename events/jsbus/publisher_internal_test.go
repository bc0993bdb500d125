package jsbus

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
)

// fakeJS answers Stream with a stream whose GetMsg returns the first of
// msgs (all on the expectation's subject) at or after the sequence asked.
// The same path on a real server: internal/integration/jsbus (settle).
type fakeJS struct {
	jetstream.JetStream
	msgs []jetstream.RawStreamMsg
}

func (f *fakeJS) Stream(context.Context, string) (jetstream.Stream, error) {
	return fakeStream{msgs: f.msgs}, nil
}

type fakeStream struct {
	jetstream.Stream
	msgs []jetstream.RawStreamMsg
}

func (s fakeStream) GetMsg(_ context.Context, seq uint64, _ ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	for i := range s.msgs {
		if s.msgs[i].Sequence >= seq {
			return &s.msgs[i], nil
		}
	}
	return nil, jetstream.ErrMsgNotFound
}

// A retried attempt whose first try was stored finds its own message even
// though the server answers "wrong last sequence" before de-duplication.
func TestFindStoredAfterLostAck(t *testing.T) {
	ctx := context.Background()
	const id = "E1"
	expect := &events.Expect{Subject: events.SessionSubjects("S1"), LastSeq: 4}
	stored := jetstream.RawStreamMsg{Sequence: 7, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
	p := &Publisher{js: &fakeJS{msgs: []jetstream.RawStreamMsg{stored}}}

	got, ok, err := p.findStored(ctx, expect, id)
	if err != nil || !ok || got != 7 {
		t.Fatalf("findStored = %d %v %v, want 7", got, ok, err)
	}
	if _, ok, err := p.findStored(ctx, expect, "other-id"); ok || err != nil {
		t.Fatalf("found a message that was never published (err %v)", err)
	}
	// Nothing after the last sequence: not stored, and no error.
	if _, ok, err := p.findStored(ctx, &events.Expect{Subject: expect.Subject, LastSeq: 7}, id); ok || err != nil {
		t.Fatalf("found a message after the last one (err %v)", err)
	}
}
