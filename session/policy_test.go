package session_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/fakeclock"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

func tryLogin(m *nodetest.Manager, user, password, ip string) error {
	_, err := m.Manager().Login(bg, session.LoginRequest{Username: user, Password: password, IP: ip})
	return err
}

// Failed logins slow down one address for one account, the same way for
// names that exist and names that do not, without locking the real user
// out from another address.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	_, m := start(t, withSession(func(c *session.Config) {
		c.Throttle.PerAddress = 3
		c.Throttle.PerAccount = 5
		c.Throttle.BaseDelay = 2 * time.Second
	}))
	m.AddUser(t, "alice", pw)
	const attacker, home, elsewhere = "203.0.113.9", "192.0.2.1", "198.51.100.1"
	if err := tryLogin(m, "alice", pw, home); err != nil { // home becomes known
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "ghost"} {
		for i := range 3 {
			if err := tryLogin(m, name, "wrong-"+name, attacker); !errors.Is(err, session.ErrBadCredentials) {
				t.Fatalf("%s failure %d: %v", name, i, err)
			}
		}
		// The address is now delayed, even with the right password, and
		// before any hashing: same answer for a real and an unknown name.
		err := tryLogin(m, name, pw, attacker)
		if !errors.Is(err, session.ErrThrottled) || session.RetryAfter(err) < time.Second {
			t.Fatalf("%s after 3 failures: %v (retry after %s)", name, err, session.RetryAfter(err))
		}
	}
	// The real user at home is not affected.
	if err := tryLogin(m, "alice", pw, home); err != nil {
		t.Fatalf("home login: %v", err)
	}
	// Failures from many addresses reach the per-account bound: unknown
	// addresses wait, the known home address does not.
	for i := range 2 {
		ip := "198.51.100." + string(rune('2'+i))
		if err := tryLogin(m, "alice", "wrong", ip); !errors.Is(err, session.ErrBadCredentials) {
			t.Fatalf("spread failure %d: %v", i, err)
		}
	}
	if err := tryLogin(m, "alice", pw, elsewhere); !errors.Is(err, session.ErrThrottled) {
		t.Fatalf("new address during a spread attack: %v", err)
	}
	if err := tryLogin(m, "alice", pw, home); err != nil {
		t.Fatalf("known address during a spread attack: %v", err)
	}
	// The third failure from the attacker was published as "locked" with
	// its end; throttled attempts were not published at all.
	msgs := checkStream(t, m.NC, pw)
	var locked int
	for _, f := range ofType[events.LoginFailed](t, msgs, events.TypeLoginFailed) {
		if f.Reason == events.FailLocked {
			locked++
			if f.ThrottledUntil == nil || !f.ThrottledUntil.After(f.FailedAt) {
				t.Errorf("locked without throttled_until: %+v", f)
			}
		}
	}
	if locked != 2 {
		t.Errorf("%d locked facts, want 2 (alice and ghost)", locked)
	}
	if n := len(ofType[events.LoginFailed](t, msgs, events.TypeLoginFailed)); n != 8 {
		t.Errorf("%d login.failed facts, want 8", n)
	}
}

// Past the bound of concurrent hashes a login is refused at once with a
// retry time, and publishes nothing.
func TestLoginStormIsBounded(t *testing.T) {
	t.Parallel()
	_, m := start(t, withSession(func(c *session.Config) {
		c.MaxConcurrentHashes = 1
		c.HashQueue = 0
	}))
	m.AddUser(t, "alice", pw)
	before := m.LastSeq(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, overloaded int
	for i := range 8 {
		wg.Go(func() {
			// A storm is many clients: each at its own address (one
			// address's attempts on one account take turns instead).
			err := tryLogin(m, "alice", pw, fmt.Sprintf("198.18.0.%d", i+1))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, session.ErrOverloaded) && session.RetryAfter(err) >= time.Second:
				overloaded++
			default:
				t.Errorf("login: %v", err)
			}
		})
	}
	wg.Wait()
	if ok == 0 || overloaded == 0 {
		t.Fatalf("ok %d, overloaded %d: want both", ok, overloaded)
	}
	if got := m.LastSeq(t) - before; got != uint64(ok) {
		t.Fatalf("%d facts for %d successful logins", got, ok)
	}
}

// Idle and absolute timeouts end sessions with a session.revoked fact.
// The manager's clock is the test's, so the outcome does not depend on
// how fast the machine refreshes.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Now())
	_, m := start(t, withSession(func(c *session.Config) {
		c.AccessTTL = time.Second
		c.IdleTimeout = 1500 * time.Millisecond
		c.AbsoluteTimeout = 3 * time.Second
	}), func(c *node.Config) { c.Now = clock.Now })
	m.AddUser(t, "alice", pw)
	idle := login(t, m, "alice")
	busy := login(t, m, "alice")
	tok := busy.RefreshToken
	var refreshes int
	for i := range 20 {
		clock.Advance(400 * time.Millisecond)
		if i == 3 {
			// 1.6 s: the idle session is past its idle timeout and not
			// yet past its absolute one; the sweeper ends it now.
			waitFor(t, "the idle session's end", func() bool {
				s, err := m.View().Session(bg, idle.SessionID)
				return err == nil && !s.RevokedAt.IsZero()
			})
		}
		r, err := m.Manager().Refresh(bg, tok)
		if err != nil {
			if !errors.Is(err, session.ErrInvalidToken) {
				t.Fatal(err)
			}
			break
		}
		tok = r.RefreshToken
		refreshes++
	}
	// Refreshed every 0.4 s, the busy session lives to its absolute
	// timeout: 7 refreshes (at 0.4 … 2.8 s), and the one at 3.2 s fails.
	if refreshes != 7 {
		t.Fatalf("busy session ended after %d refreshes, want 7: the idle timeout must not hit a refreshed session, the absolute one must", refreshes)
	}
	reasons := map[string]string{}
	waitFor(t, "two timeout revocations", func() bool {
		for _, r := range ofType[events.SessionRevoked](t, streamAll(t, m.NC), events.TypeSessionRevoked) {
			reasons[r.SessionID] = r.Reason
		}
		return len(reasons) == 2
	})
	if reasons[idle.SessionID] != events.ReasonIdleTimeout || reasons[busy.SessionID] != events.ReasonAbsoluteTimeout {
		t.Fatalf("reasons %v", reasons)
	}
	if n := len(ofType[events.SessionRevoked](t, streamAll(t, m.NC), events.TypeSessionRevoked)); n != 2 {
		t.Fatalf("%d revocations, want exactly 2 (no duplicates from sweeps)", n)
	}
}

// With --refresh-grace, a token whose successor was just used still gets
// the session's current token (a second tab that read the old one);
// after the grace it is reuse.
func TestRefreshGrace(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	_, m := start(t, withSession(func(c *session.Config) { c.RefreshGrace = grace }))
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	a := must(m.Manager().Refresh(bg, r.RefreshToken))
	b := must(m.Manager().Refresh(bg, a.RefreshToken)) // a's successor is used
	late := must(m.Manager().Refresh(bg, r.RefreshToken))
	if late.RefreshToken != b.RefreshToken || !active(t, m, late.AccessToken) {
		t.Fatal("within the grace the old token must get the current one")
	}
	s, err := m.View().Session(bg, r.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grace to pass", func() bool { return time.Since(s.RotatedAt) > grace })
	if _, err := m.Manager().Refresh(bg, r.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("reuse after grace: %v", err)
	}
	if _, err := m.Manager().Refresh(bg, b.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatal("session survived reuse after grace")
	}
}

// With rotation off the client keeps its first refresh token.
func TestRotationOff(t *testing.T) {
	t.Parallel()
	_, m := start(t, withSession(func(c *session.Config) { c.RefreshRotation = false }))
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	for range 3 {
		n := must(m.Manager().Refresh(bg, r.RefreshToken))
		if n.RefreshToken != r.RefreshToken || n.AccessToken == r.AccessToken {
			t.Fatal("rotation off must keep the refresh token and issue a new access token")
		}
	}
	if err := m.Manager().Logout(bg, session.LogoutRequest{RefreshToken: r.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Manager().Refresh(bg, r.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatal("refresh after logout")
	}
}

// A NATS restart under a running manager loses nothing: it reconnects,
// its view resumes, and the next commands work.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	srv, m := start(t)
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	srv.Restart()
	var n events.TokenReply
	waitFor(t, "refresh after restart", func() bool {
		var err error
		n, err = m.Manager().Refresh(bg, r.RefreshToken)
		return err == nil
	})
	if !active(t, m, n.AccessToken) {
		t.Fatal("token after restart not active")
	}
	login(t, m, "alice")
	checkStream(t, m.NC, pw, r.RefreshToken, n.RefreshToken)
}
