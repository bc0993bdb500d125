package jsbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

func revoked(t testing.TB, sid string) events.Event {
	t.Helper()
	now := time.Now().UTC()
	e, err := events.New(events.TypeSessionRevoked, events.Source("test"), sid, now,
		events.SessionRevoked{SessionID: sid, UserID: "u1", Reason: events.ReasonAdmin, RevokedAt: now, DenyUntil: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func setup(t *testing.T) (jetstream.JetStream, *jsbus.Publisher) {
	t.Helper()
	js := natstest.Start(t).JetStream()
	p, err := jsbus.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	return js, p
}

func TestPublishStoresOnceAndSDKReadsIt(t *testing.T) {
	ctx := context.Background()
	js, p := setup(t)
	e := revoked(t, "S1")
	seq, err := p.Publish(ctx, e, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A retry of the same event is de-duplicated to the same sequence.
	seq2, err := p.Publish(ctx, e, nil)
	if err != nil || seq2 != seq {
		t.Fatalf("retry: seq %d err %v, want %d", seq2, err, seq)
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Subject != "auth.events.session.revoked.S1" {
		t.Fatalf("subject %q", raw.Subject)
	}
	// The CloudEvents sdk-go JetStream binding reads the stored message
	// as it is, in binary mode.
	c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	bm := cejs.NewMessage(natsMsg{m}.msg())
	if bm.ReadEncoding() != binding.EncodingBinary {
		t.Fatalf("encoding %v, want binary", bm.ReadEncoding())
	}
	ce, err := binding.ToEvent(ctx, bm)
	if err != nil {
		t.Fatal(err)
	}
	if ce.ID() != e.ID || ce.Type() != string(e.Type) || ce.Source() != e.Source || ce.DataSchema() != e.DataSchema || string(ce.Data()) != string(e.Data) {
		t.Fatalf("sdk-go read %v", ce)
	}
	if err := ce.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPublishConflict(t *testing.T) {
	ctx := context.Background()
	_, p := setup(t)
	filter := events.SessionSubjects("S1")
	seq, err := p.Publish(ctx, revoked(t, "S1"), &events.Expect{Subject: filter, LastSeq: 0})
	if err != nil {
		t.Fatal(err)
	}
	// A fact about another session does not move S1's subjects.
	if _, err := p.Publish(ctx, revoked(t, "S2"), &events.Expect{Subject: events.SessionSubjects("S2")}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(ctx, revoked(t, "S1"), &events.Expect{Subject: filter, LastSeq: 0})
	var ce *events.ConflictError
	if !errors.Is(err, events.ErrConflict) || !errors.As(err, &ce) || ce.LastSeq != seq {
		t.Fatalf("err = %v, want conflict at %d", err, seq)
	}
	if _, err := p.Publish(ctx, revoked(t, "S1"), &events.Expect{Subject: filter, LastSeq: seq}); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryCannotBeRewritten(t *testing.T) {
	ctx := context.Background()
	js, p := setup(t)
	seq, err := p.Publish(ctx, revoked(t, "S1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, seq); err == nil {
		t.Fatal("delete allowed")
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("purge allowed")
	}
	if _, err := s.GetMsg(ctx, seq); err != nil {
		t.Fatalf("message gone: %v", err)
	}
}

// The stream is bounded by default, never shorter than the session
// lifetime, and refuses new facts rather than dropping old ones.
func TestStreamConfigBounds(t *testing.T) {
	for _, tc := range []struct {
		cfg      jsbus.StreamConfig
		maxAge   time.Duration
		maxBytes int64
	}{
		{jsbus.StreamConfig{MinMaxAge: 30*24*time.Hour + 6*time.Minute}, jsbus.DefaultMaxAge, -1},
		{jsbus.StreamConfig{MinMaxAge: 60 * 24 * time.Hour}, 60 * 24 * time.Hour, -1},
		{jsbus.StreamConfig{MaxAge: 90 * 24 * time.Hour, MinMaxAge: time.Hour, MaxBytes: 1 << 30}, 90 * 24 * time.Hour, 1 << 30},
	} {
		c := tc.cfg.JetStreamConfig()
		if c.MaxAge != tc.maxAge || c.MaxBytes != tc.maxBytes {
			t.Errorf("%+v: max age %s, max bytes %d; want %s, %d", tc.cfg, c.MaxAge, c.MaxBytes, tc.maxAge, tc.maxBytes)
		}
		if c.Discard != jetstream.DiscardNew {
			t.Errorf("%+v: discard %v, want new (facts are never dropped to make room)", tc.cfg, c.Discard)
		}
	}
}

func TestStreamConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     jsbus.StreamConfig
		wantErr error
	}{
		{"defaults", jsbus.StreamConfig{}, nil},
		{"default age", jsbus.StreamConfig{MinMaxAge: time.Hour}, nil},
		{"negative max bytes", jsbus.StreamConfig{MaxBytes: -1}, jsbus.ErrInvalidConfig},
		{"long enough", jsbus.StreamConfig{MaxAge: 2 * time.Hour, MinMaxAge: time.Hour}, nil},
		{"too short", jsbus.StreamConfig{MaxAge: time.Minute, MinMaxAge: time.Hour}, jsbus.ErrInvalidConfig},
		{"replicas", jsbus.StreamConfig{Replicas: 7}, jsbus.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
