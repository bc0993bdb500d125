package audit

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// sampleMsgs returns stored messages of realistic facts.
func sampleMsgs(tb testing.TB) []stored {
	tb.Helper()
	at := time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
	var out []stored
	for i, typ := range events.Types() {
		id := fmt.Sprintf("01JDZ8Q4N7R2M0XK3E5V6T%04d", i)
		data := map[string]any{"session_id": id, "user_id": "01JDZ8Q4N7R2M0XK3E5V6TUSER", "reason": "logout",
			"account_key": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ", "refresh_digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			"user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "ip": "203.0.113.9", "generation": 3,
			"access_expires_at": at, "created_at": at, "idle_expires_at": at, "expires_at": at, "kid": "k1", "access_jti": id}
		e, err := events.New(typ, events.Source("vm"), id, at, data)
		if err != nil {
			tb.Fatal(err)
		}
		m, err := events.ToMsg(e.NATSSubject(), e)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, stored{Seq: uint64(i + 1), Time: at, Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}

// BenchmarkEncodeLine measures the per-event work of replay once the
// message has arrived: decode, encode, hash; with the package's encoder
// (its fast path, JSON validator and string encoder) and with the same
// lines written by encoding/json and events.FromMsg alone, side by side.
// (The replay rate against the raw ordered read is measured on a real
// stream in internal/integration/audit: BenchmarkReplay.)
func BenchmarkEncodeLine(b *testing.B) {
	for _, tc := range []struct {
		name string
		enc  func() bodyEncoder
	}{
		{"encoder=hand", func() bodyEncoder { return newEncoder(events.StreamName) }},
		{"encoder=encoding-json", func() bodyEncoder { return newStdEncoder(events.StreamName) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			msgs := sampleMsgs(b)
			enc := tc.enc()
			var body, line, hash []byte
			var prev [64]byte
			copy(prev[:], Genesis)
			i := 0
			for b.Loop() {
				m := &msgs[i%len(msgs)]
				i++
				body, _, _ = enc.appendBody(body[:0], m)
				line, hash = completeLine(line[:0], body, events.StreamName, nil, "from=1", prev[:])
				copy(prev[:], hash)
			}
			b.SetBytes(int64(len(line)))
		})
	}
}

func BenchmarkDecodeFast(b *testing.B) {
	msgs := sampleMsgs(b)
	enc := newEncoder(events.StreamName)
	for _, m := range msgs {
		enc.appendBody(nil, &m)
	}
	i := 0
	for b.Loop() {
		m := &msgs[i%len(msgs)]
		i++
		if _, ok := enc.decodeFast(m.Header, m.Data); !ok {
			b.Fatal("slow path")
		}
	}
}

func BenchmarkFromMsg(b *testing.B) {
	msgs := sampleMsgs(b)
	i := 0
	for b.Loop() {
		m := &msgs[i%len(msgs)]
		i++
		if _, err := events.FromMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodeMsgIDMismatch: the fast path never accepts a message whose
// Nats-Msg-Id is not its ce-id, under any name case; the line is then
// unreadable, of its own kind.
func TestEncodeMsgIDMismatch(t *testing.T) {
	m := sampleMsgs(t)[0]
	enc := newEncoder(events.StreamName)
	enc.appendBody(nil, &m) // the source and dataschema are known good now
	if _, ok := enc.decodeFast(m.Header, m.Data); !ok {
		t.Fatal("the fast path refuses a message as published")
	}
	for name, edit := range map[string]func(nats.Header){
		"another value":  func(h nats.Header) { h[events.HeaderMsgID] = []string{"other"} },
		"a second value": func(h nats.Header) { h[events.HeaderMsgID] = append(h[events.HeaderMsgID], "other") },
		"another case":   func(h nats.Header) { h["nats-msg-id"] = []string{"other"} },
	} {
		h := nats.Header{}
		for k, v := range m.Header {
			h[k] = append([]string(nil), v...)
		}
		edit(h)
		if _, ok := enc.decodeFast(h, m.Data); ok {
			t.Errorf("%s: the fast path accepts it", name)
		}
		fm := m
		fm.Header = h
		if _, k, typ := enc.appendBody(nil, &fm); k != kindMsgIDMismatch || typ != TypeUnreadable {
			t.Errorf("%s: kind %v, type %s", name, k, typ)
		}
	}
}
