package jsbus_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

// wire sits between a client connection and the server. While held, what
// the server sends is kept from the client (the acks are lost as far as
// the client can tell); sent is told, in order, each time the client
// sends a message with the watched Nats-Msg-Id.
type wire struct {
	mu      sync.Mutex
	release chan struct{} // nil: not held
	marker  []byte
	tail    []byte
	count   int
	sent    func(n int)
}

func (w *wire) hold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.release == nil {
		w.release = make(chan struct{})
	}
}

func (w *wire) unhold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.release != nil {
		close(w.release)
		w.release = nil
	}
}

// watch reports every message sent with Nats-Msg-Id id to sent.
func (w *wire) watch(id string, sent func(n int)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.marker, w.tail, w.count, w.sent = []byte("Nats-Msg-Id: "+id+"\r\n"), nil, 0, sent
}

func (w *wire) wait() {
	w.mu.Lock()
	ch := w.release
	w.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (w *wire) wrote(p []byte) {
	w.mu.Lock()
	if len(w.marker) == 0 {
		w.mu.Unlock()
		return
	}
	data := append(w.tail, p...)
	n := bytes.Count(data, w.marker)
	if keep := len(w.marker) - 1; len(data) > keep {
		data = data[len(data)-keep:]
	}
	w.tail = append([]byte(nil), data...)
	first := w.count + 1
	w.count += n
	last, sent := w.count, w.sent
	w.mu.Unlock()
	for i := first; i <= last; i++ {
		sent(i)
	}
}

func (w *wire) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c, w: w}, nil
}

type wireConn struct {
	net.Conn
	w *wire
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.w.wait() // what arrived is kept until the wire is let go
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.wrote(p[:n])
	return n, err
}

// lossyPublisher is a publisher whose connection runs through a wire.
func lossyPublisher(t *testing.T, opts ...jsbus.PublisherOption) (*wire, *jsbus.Publisher, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t)
	srv.JetStream() // creates the stream
	w := &wire{}    // the manager publishes facts
	js, err := jetstream.New(srv.Connect(nats.SetCustomDialer(w)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsbus.NewPublisher(js, opts...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	// One publish first, so the connection's reply subscription exists.
	if _, err := p.Publish(context.Background(), revoked(t, "warm"), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.unhold)
	return w, p, s
}

// storedWithID returns the sequences of the messages with Nats-Msg-Id id.
func storedWithID(t *testing.T, s jetstream.Stream, id string) []uint64 {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) == id {
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// The caller's context ends right after the message went out and before
// its ack came back: the message was stored, and Publish says so (with
// its sequence) instead of reporting the context's end.
func TestPublishSettlesLostAck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		expect bool
	}{{"unconditional", false}, {"conditional", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w, p, s := lossyPublisher(t)
			e := revoked(t, "S1")
			var expect *events.Expect
			if tc.expect {
				expect = &events.Expect{Subject: events.SessionSubjects("S1")}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w.hold()
			w.watch(e.ID, func(n int) {
				switch n {
				case 1:
					cancel() // the caller gives up as soon as the attempt is out
				case 2:
					w.unhold() // the settling attempt: let the answers through
				}
			})
			seq, err := p.Publish(ctx, e, expect)
			if err != nil {
				t.Fatalf("publish whose ack was lost: %v, want its sequence", err)
			}
			if got := storedWithID(t, s, e.ID); len(got) != 1 || got[0] != seq {
				t.Fatalf("stored at %v, publish said %d", got, seq)
			}
		})
	}
}

// When the stream does not answer within the settle timeout, Publish
// says the outcome is unknown: neither success nor the context's end.
func TestPublishUnsettled(t *testing.T) {
	w, p, s := lossyPublisher(t, jsbus.WithSettleTimeout(300*time.Millisecond), jsbus.WithAttemptTimeout(100*time.Millisecond))
	e := revoked(t, "S1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.hold()
	w.watch(e.ID, func(n int) {
		if n == 1 {
			cancel()
		}
	})
	_, err := p.Publish(ctx, e, nil)
	if !errors.Is(err, jsbus.ErrUnsettled) || errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrUnsettled", err)
	}
	w.unhold()
	// It was in fact stored, once, and a retry of the same event finds it.
	seq, err := p.Publish(context.Background(), e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := storedWithID(t, s, e.ID); len(got) != 1 || got[0] != seq {
		t.Fatalf("stored at %v, retry said %d", got, seq)
	}
}

// A context that ended before anything was sent needs no settling: the
// caller hears the context's end at once, and nothing is stored.
func TestPublishNotSentNotSettled(t *testing.T) {
	_, p, s := lossyPublisher(t)
	e := revoked(t, "S1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Publish(ctx, e, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := storedWithID(t, s, e.ID); len(got) != 0 {
		t.Fatalf("stored at %v", got)
	}
}
