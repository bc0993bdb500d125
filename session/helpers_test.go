package session_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/internal/poll"
	"github.com/sessionbus/sessionbus/schemas"
	"github.com/sessionbus/sessionbus/session"
)

var bg = context.Background()

// stored is a raw stream message and its decoding.
type stored struct {
	raw *jetstream.RawStreamMsg
	events.Stored
}

// streamAll reads every message of AUTH_EVENTS.
func streamAll(t testing.TB, nc *nats.Conn) []stored {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(bg, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(bg)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(bg, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		e, err := events.FromMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		out = append(out, stored{raw: m, Stored: events.Stored{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Event: e, Err: err}})
	}
	return out
}

// ofType returns the decoded data of every event of type typ.
func ofType[T any](t testing.TB, msgs []stored, typ events.Type) []*T {
	t.Helper()
	var out []*T
	for _, m := range msgs {
		if m.Err == nil && m.Event.Type == typ {
			d, err := m.Event.DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d.(*T))
		}
	}
	return out
}

// checkStream asserts that every stored message is a valid CloudEvent of
// a known type on its own subject, that its data matches its JSON Schema,
// and that no secret appears anywhere in it (headers or body).
func checkStream(t testing.TB, nc *nats.Conn, secrets ...string) []stored {
	t.Helper()
	msgs := streamAll(t, nc)
	for _, m := range msgs {
		if m.Err != nil {
			t.Errorf("seq %d unreadable: %v", m.Seq, m.Err)
			continue
		}
		if !m.Event.Type.Known() || m.Event.NATSSubject() != m.Subject {
			t.Errorf("seq %d: type %s on subject %s", m.Seq, m.Event.Type, m.Subject)
		}
		if m.raw.Header.Get("Nats-Msg-Id") != m.Event.ID {
			t.Errorf("seq %d: Nats-Msg-Id is not the event id", m.Seq)
		}
		if err := schemas.ValidateEvent(string(m.Event.Type), m.Event.Data); err != nil {
			t.Errorf("seq %d (%s) breaks its schema: %v", m.Seq, m.Event.Type, err)
		}
		var all bytes.Buffer
		for k, vs := range m.raw.Header {
			all.WriteString(k)
			for _, v := range vs {
				all.WriteString(v)
			}
		}
		all.Write(m.raw.Data)
		for _, s := range secrets {
			if s != "" && bytes.Contains(all.Bytes(), []byte(s)) {
				t.Errorf("seq %d (%s) contains a secret (%d bytes)", m.Seq, m.Event.Type, len(s))
			}
		}
		for _, marker := range []string{"$argon2id$", "PRIVATE KEY", "private_key", "password_hash", session.RefreshTokenPrefix, "eyJ"} {
			if bytes.Contains(all.Bytes(), []byte(marker)) {
				t.Errorf("seq %d (%s) contains %q", m.Seq, m.Event.Type, marker)
			}
		}
	}
	return msgs
}

func start(t testing.TB, opts ...nodetest.Option) (*natstest.Server, *nodetest.Manager) {
	t.Helper()
	srv := natstest.Start(t)
	return srv, nodetest.Start(t, srv, opts...)
}

func withSession(f func(*session.Config)) nodetest.Option {
	return func(c *node.Config) { f(&c.Session) }
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, what, cond)
}

func jsTestStream(t testing.TB, m *nodetest.Manager) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(m.NC)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
