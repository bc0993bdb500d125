package jsbus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/embedded"
)

// A retried attempt whose first try was stored finds its own message even
// though the server answers "wrong last sequence" before de-duplication.
func TestFindStoredAfterLostAck(t *testing.T) {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.Config{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureStream(ctx, js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	p, err := NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e, err := events.New(events.TypeSessionRevoked, events.Source("t"), "S1", now, events.SessionRevoked{SessionID: "S1"})
	if err != nil {
		t.Fatal(err)
	}
	expect := &events.Expect{Subject: events.SessionSubjects("S1")}
	seq, err := p.Publish(ctx, e, expect)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := p.findStored(ctx, expect, e.ID)
	if err != nil || !ok || got != seq {
		t.Fatalf("findStored = %d %v %v, want %d", got, ok, err, seq)
	}
	if _, ok, err := p.findStored(ctx, expect, "other-id"); ok || err != nil {
		t.Fatalf("found a message that was never published (err %v)", err)
	}
	// Nothing after the last sequence: not stored, and no error.
	if _, ok, err := p.findStored(ctx, &events.Expect{Subject: expect.Subject, LastSeq: seq}, e.ID); ok || err != nil {
		t.Fatalf("found a message after the last one (err %v)", err)
	}
}
