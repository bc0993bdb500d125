package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

// env is a test server with AUTH_EVENTS and a publisher.
type env struct {
	srv *natstest.Server
	js  jetstream.JetStream
	pub *jsbus.Publisher
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := natstest.Start(t)
	js := srv.JetStream()
	pub, err := jsbus.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, js: js, pub: pub}
}

var testAt = time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC)

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func accountKey(s string) string {
	sum := sha256.Sum256([]byte("k" + s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// fact returns the i-th test fact: the eight types in turn, with data
// their schemas accept.
func fact(t testing.TB, i int) events.Event {
	t.Helper()
	typ := events.Types()[i%len(events.Types())]
	id := fmt.Sprintf("01JDZ8Q4N7R2M0XK3E5V6T%04d", i%10000)
	uid := "01JDZ8Q4N7R2M0XK3E5V6TUSER"
	at := testAt.Add(time.Duration(i) * time.Millisecond)
	// Who asked: recorded on every other revocation and key fact, missing
	// from the rest as from facts written before actors were recorded.
	var actor events.Actor
	if i/len(events.Types())%2 == 0 {
		actor = events.Actor{Kind: events.ActorIdentity, Name: "ops-ann", Role: "operator"}
	}
	var data any
	switch typ {
	case events.TypeSessionCreated:
		data = events.SessionCreated{SessionID: id, UserID: uid, AccountKey: accountKey(uid), ClientID: "web", IP: "2001:db8::1",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) “quoted” \\ \u00e9", RefreshDigest: digest(id), Generation: 1,
			AccessJTI: id + "J", AccessExpiresAt: at.Add(5 * time.Minute), KeyID: "k1", CreatedAt: at,
			IdleExpiresAt: at.Add(time.Hour), ExpiresAt: at.Add(24 * time.Hour)}
	case events.TypeSessionRefreshed:
		data = events.SessionRefreshed{SessionID: id, UserID: uid, Generation: 2, PreviousRefreshDigest: digest(id),
			RefreshDigest: digest(id + "2"), AccessJTI: id + "K", AccessExpiresAt: at.Add(5 * time.Minute), KeyID: "k1",
			RefreshedAt: at, IdleExpiresAt: at.Add(time.Hour)}
	case events.TypeSessionRevoked:
		data = events.SessionRevoked{SessionID: id, UserID: uid, Reason: events.ReasonLogout, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute), Actor: actor}
	case events.TypeUserRevoked:
		data = events.UserRevoked{UserID: id, Reason: events.ReasonAdmin, RevokedBefore: at, DenyUntil: at.Add(5 * time.Minute), Actor: actor}
	case events.TypeTokenRevoked:
		data = events.TokenRevoked{JTI: id, SessionID: id, UserID: uid, Reason: events.ReasonTokenRevocation, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute), Actor: actor}
	case events.TypeLoginFailed:
		tu := at.Add(time.Minute)
		data = events.LoginFailed{UserID: uid, AccountKey: accountKey(uid), Reason: events.FailLocked, IP: "192.0.2.7", FailedAt: at, ThrottledUntil: &tu}
	case events.TypeKeyRotated:
		data = events.KeyRotated{KeyID: id, Algorithm: "ES256", ActivatedAt: at, Actor: actor}
	case events.TypeKeyRevoked:
		data = events.KeyRevoked{KeyID: id, Reason: events.ReasonKeyCompromised, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute), Actor: actor}
	}
	e, err := events.New(typ, events.Source("test"), id, at, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// publish publishes facts from..to-1 and waits for each ack.
func (e *env) publish(t testing.TB, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := from; i < to; i++ {
		if _, err := e.pub.Publish(ctx, fact(t, i), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// publishRaw stores a message as it is, bypassing the codec.
func (e *env) publishRaw(t testing.TB, subject string, h nats.Header, data []byte) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// publishOdd stores one foreign CloudEvent and three unreadable messages.
func (e *env) publishOdd(t testing.TB) {
	t.Helper()
	foreign := nats.Header{}
	for k, v := range map[string]string{
		"ce-specversion": "1.0", "ce-id": "F1", "ce-type": "com.example.thing.v1", "ce-source": "/elsewhere",
		"ce-traceparent": "00-abc-def-01", "content-type": "application/json",
	} {
		foreign[k] = []string{v}
	}
	e.publishRaw(t, "auth.events.thing.done.F1", foreign, []byte(`{"a": 1,
 "b": [true, null]}`))
	e.publishRaw(t, "auth.events.junk.plain.X1", nil, []byte("not a cloudevent \x00\xff"))
	bad := nats.Header{}
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "B1", "ce-type": "io.sessionbus.session.revoked.v1", "ce-source": "/x"} {
		bad[k] = []string{v}
	}
	e.publishRaw(t, "auth.events.session.revoked.B1", bad, []byte(`{"truncated":`))
	forged := nats.Header{}
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "G1", "ce-type": audit.TypeGap, "ce-source": "/x"} {
		forged[k] = []string{v}
	}
	e.publishRaw(t, "auth.events.audit.gap.G1", forged, []byte(`{"first_seq":1,"last_seq":99}`))
}

func (e *env) lastSeq(t testing.TB) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// replay copies the whole stream into a new file in dir and returns its path.
func replay(t testing.TB, js jetstream.JetStream, path string, cfg audit.ReplayConfig) audit.Stats {
	t.Helper()
	cfg.Out = path
	r, err := audit.NewReplayer(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func verify(t testing.TB, cfg audit.VerifyConfig, paths ...string) (*audit.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return audit.Verify(ctx, paths, cfg)
}
