package session_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/kvstore"
)

// A login whose hash is running when the account is disabled never leaves
// a working session behind, whatever the interleaving.
func TestLoginRacingDisable(t *testing.T) {
	_, m := start(t)
	mgr := m.Manager()
	for i := range 6 {
		name := "racer" + string(rune('a'+i))
		m.AddUser(t, name, pw)
		var rep events.TokenReply
		var lerr error
		var wg sync.WaitGroup
		wg.Go(func() { rep, lerr = mgr.Login(bg, session.LoginRequest{Username: name, Password: pw}) })
		time.Sleep(time.Duration(i*4) * time.Millisecond) // staggers the interleaving: not a wait for something
		if _, err := mgr.SetDisabled(bg, name, true); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if lerr != nil {
			continue // refused: fine
		}
		if active(t, m, rep.AccessToken) {
			t.Fatalf("round %d: a session of a disabled user is active", i)
		}
		if _, err := mgr.Refresh(bg, rep.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
			t.Fatalf("round %d: a disabled user's session refreshes: %v", i, err)
		}
	}
}

// A burst of concurrent wrong passwords from one address gets no more
// password checks than the throttle allows.
func TestConcurrentFailuresAreThrottled(t *testing.T) {
	// A wait for a hash slot long enough that a slow machine's hashes
	// never turn an attempt into "overloaded": the outcome is what counts.
	_, m := start(t, withSession(func(c *session.Config) { c.HashWait = 5 * time.Minute }))
	m.AddUser(t, "alice", pw)
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			err := tryLogin(m, "alice", "wrong password", "203.0.113.5")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, session.ErrBadCredentials):
				counts["checked"]++
			case errors.Is(err, session.ErrThrottled):
				counts["throttled"]++
			default:
				counts["other"]++
			}
		})
	}
	wg.Wait()
	if counts["checked"] > session.DefaultThrottleConfig().PerAddress || counts["throttled"] == 0 || counts["other"] > 0 {
		t.Fatalf("%v: at most %d password checks may run before delays start", counts, session.DefaultThrottleConfig().PerAddress)
	}
}

// A fact the view cannot read on a session's subject (a newer manager's
// v2, say) does not make the session impossible to refresh or revoke.
func TestUnreadableFactDoesNotWedgeASession(t *testing.T) {
	_, m := start(t)
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	e, err := events.New(events.TypeSessionRefreshed, events.Source("future"), r.SessionID, time.Now(), map[string]any{"session_id": r.SessionID})
	if err != nil {
		t.Fatal(err)
	}
	subject := e.NATSSubject()
	e.Type = "io.sessionbus.session.refreshed.v2"
	msg, err := events.ToMsg(subject, e)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := jsTestStream(t, m).PublishMsg(bg, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.View().WaitApplied(bg, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	n, err := m.Manager().Refresh(bg, r.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after an unreadable fact: %v", err)
	}
	if err := m.Manager().Revoke(bg, session.RevokeRequest{SessionID: r.SessionID}); err != nil {
		t.Fatalf("revoke after an unreadable fact: %v", err)
	}
	if active(t, m, n.AccessToken) {
		t.Fatal("revoked session active")
	}
}

// Refresh tokens, their successors and access tokens appear in no fact
// and no log line, whether the refresh rotates, is retried, races its
// duplicates or is reused.
func TestNoTokenInFactsOrLogs(t *testing.T) {
	var logs lockedBuffer
	_, m := start(t, func(c *node.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	secrets := []string{r.RefreshToken, r.AccessToken}
	n := must(m.Manager().Refresh(bg, r.RefreshToken))
	again := must(m.Manager().Refresh(bg, r.RefreshToken))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if r, err := m.Manager().Refresh(bg, n.RefreshToken); err == nil {
				logs.keep(r.RefreshToken, r.AccessToken)
			}
		})
	}
	wg.Wait()
	if _, err := m.Manager().Refresh(bg, r.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("reuse: %v", err)
	}
	secrets = append(secrets, n.RefreshToken, n.AccessToken, again.AccessToken)
	secrets = append(secrets, logs.kept()...)
	checkStream(t, m.NC, secrets...)
	out := logs.String()
	if !strings.Contains(out, "refresh token reuse") {
		t.Fatalf("the reuse was not logged:\n%s", out)
	}
	for _, s := range append(secrets, session.RefreshTokenPrefix, "eyJ") {
		if strings.Contains(out, s) {
			t.Fatalf("a log line holds a token (%d bytes)", len(s))
		}
	}
}

// lockedBuffer is a log destination that goroutines may share, and a
// place to keep the tokens they were given.
type lockedBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	tokens []string
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) keep(tokens ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = append(b.tokens, tokens...)
}

func (b *lockedBuffer) kept() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.tokens...)
}

// Two changes to one user cannot undo each other: the second writer with
// a stale revision is refused.
func TestUserUpdatesAreCompareAndSet(t *testing.T) {
	_, m := start(t)
	id := m.AddUser(t, "alice", pw)
	kv, err := kvstore.Open(bg, jsTestStream(t, m))
	if err != nil {
		t.Fatal(err)
	}
	stale, err := kv.ByID(bg, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Manager().SetDisabled(bg, "alice", true); err != nil {
		t.Fatal(err)
	}
	stale.PasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	if err := kv.Update(bg, stale); !errors.Is(err, session.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	u, _ := kv.ByID(bg, id)
	if !u.Disabled {
		t.Fatal("the disable was undone")
	}
}

// Concurrent right passwords for one account from one address all get in:
// they take turns rather than count as failures. The wait for a turn is
// set far beyond what eight hashes take on any machine, so the test shows
// the outcome, not the machine's speed.
func TestConcurrentLoginsOfOneAccountTakeTurns(t *testing.T) {
	_, m := start(t, withSession(func(c *session.Config) { c.HashWait = 5 * time.Minute }))
	uid := m.AddUser(t, "svc", pw)
	before := m.LastSeq(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- tryLogin(m, "svc", pw, "203.0.113.9") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent login: %v", err)
		}
	}
	// Eight sessions and nothing else: no attempt counted as a failure.
	if got := m.LastSeq(t) - before; got != 8 {
		t.Errorf("%d facts for 8 logins", got)
	}
	ss, err := m.Manager().Sessions(bg, uid)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 8 {
		t.Errorf("%d sessions for 8 logins", len(ss))
	}
}
