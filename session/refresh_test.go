package session_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

// 50 concurrent duplicates of one refresh, round after round, on one
// manager and on two sharing the server, with the default settings: no
// session is revoked, each round adds exactly one generation, and every
// caller ends with the same working token (the next round refreshes it
// 50 times again) and an access token that is active.
func TestConcurrentDuplicateRefreshes(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	for _, n := range []int{1, 2} {
		t.Run(map[int]string{1: "one manager", 2: "two managers"}[n], func(t *testing.T) {
			srv, a := start(t)
			ms := []*nodetest.Manager{a}
			if n == 2 {
				ms = append(ms, nodetest.Start(t, srv))
			}
			a.AddUser(t, "alice", pw)
			tok := login(t, a, "alice")
			for round := 1; round <= rounds; round++ {
				replies := make([]events.TokenReply, 50)
				errs := make([]error, 50)
				var wg sync.WaitGroup
				gate := make(chan struct{})
				for i := range replies {
					m := ms[i%len(ms)]
					wg.Go(func() {
						<-gate
						replies[i], errs[i] = m.Manager().Refresh(bg, tok.RefreshToken)
					})
				}
				close(gate)
				wg.Wait()
				jtis := map[string]bool{}
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d: caller %d: %v", round, i, err)
					}
					r := replies[i]
					if r.RefreshToken != replies[0].RefreshToken {
						t.Fatalf("round %d: caller %d got another successor", round, i)
					}
					if r.RefreshToken == tok.RefreshToken {
						t.Fatalf("round %d: not rotated", round)
					}
					in, err := ms[(i+1)%len(ms)].Manager().Introspect(bg, r.AccessToken)
					if err != nil || !in.Active {
						t.Fatalf("round %d: caller %d's access token: %+v %v", round, i, in, err)
					}
					jtis[in.JTI] = true
				}
				if len(jtis) != 1 {
					t.Fatalf("round %d: %d access tokens issued, want 1", round, len(jtis))
				}
				msgs := streamAll(t, a.NC)
				if revoked := ofType[events.SessionRevoked](t, msgs, events.TypeSessionRevoked); len(revoked) != 0 {
					t.Fatalf("round %d: session revoked (%s)", round, revoked[0].Reason)
				}
				refreshed := ofType[events.SessionRefreshed](t, msgs, events.TypeSessionRefreshed)
				if len(refreshed) != round {
					t.Fatalf("round %d: %d generations on the stream, want %d", round, len(refreshed), round)
				}
				if last := refreshed[len(refreshed)-1]; last.RefreshDigest != session.Digest(replies[0].RefreshToken) {
					t.Fatalf("round %d: the live successor is not the one the callers hold", round)
				}
				tok = replies[0]
			}
			// The last round's token works too, on every manager.
			for _, m := range ms {
				if !active(t, m, tok.AccessToken) {
					t.Fatal("last access token inactive")
				}
			}
			if _, err := ms[len(ms)-1].Manager().Refresh(bg, tok.RefreshToken); err != nil {
				t.Fatalf("refresh after the last round: %v", err)
			}
		})
	}
}

// A refresh whose reply is lost (sent over NATS with a reply subject
// nobody reads) and then retried, after the manager that may have served
// it stopped: the session lives, the retry gets the successor the lost
// reply carried, and that token and its access token work.
func TestRefreshRetryAfterLostReply(t *testing.T) {
	srv, a := start(t)
	b := nodetest.Start(t, srv)
	a.AddUser(t, "alice", pw)
	r := login(t, a, "alice")

	client := srv.ConnectService() // a client of the bus: managers may not send commands
	msg, err := events.NewCommand(events.SubjectRefresh, "test", events.RefreshRequest{RefreshToken: r.RefreshToken})
	if err != nil {
		t.Fatal(err)
	}
	msg.Reply = nats.NewInbox() // nobody subscribes: the reply is dropped
	if err := client.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	var lost *events.SessionRefreshed
	waitFor(t, "the lost refresh on the stream", func() bool {
		if f := ofType[events.SessionRefreshed](t, streamAll(t, a.NC), events.TypeSessionRefreshed); len(f) == 1 {
			lost = f[0]
			return true
		}
		return false
	})
	// The manager that served it may be gone: a retry lands on b.
	if err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	var retry events.TokenReply
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := events.Request(ctx, client, events.SubjectRefresh, "test", events.RefreshRequest{RefreshToken: r.RefreshToken}, &retry); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if session.Digest(retry.RefreshToken) != lost.RefreshDigest {
		t.Fatal("the retry got another successor than the lost reply's")
	}
	in := claims(t, b, retry.AccessToken)
	if in.JTI != lost.AccessJTI {
		t.Fatalf("the retry's access token is %s, the generation's is %s", in.JTI, lost.AccessJTI)
	}
	next, err := b.Manager().Refresh(bg, retry.RefreshToken)
	if err != nil {
		t.Fatalf("the retry's refresh token: %v", err)
	}
	if !active(t, b, next.AccessToken) {
		t.Fatal("session did not survive")
	}
	msgs := streamAll(t, b.NC)
	if n := len(ofType[events.SessionRevoked](t, msgs, events.TypeSessionRevoked)); n != 0 {
		t.Fatalf("%d revocations", n)
	}
	if n := len(ofType[events.SessionRefreshed](t, msgs, events.TypeSessionRefreshed)); n != 2 {
		t.Fatalf("%d generations, want 2 (the lost one, then the retry's refresh)", n)
	}
}

// Theft is still detected: the attacker refreshes with a stolen token and
// uses the successor; the victim's refresh with the old token then
// revokes the session, on whichever manager it lands, and the attacker's
// tokens die with it. Until the successor is used, the old token gets
// that same successor (the window the retry needs).
func TestRefreshReuseAfterSuccessorUsed(t *testing.T) {
	srv, a := start(t)
	b := nodetest.Start(t, srv)
	a.AddUser(t, "alice", pw)
	victim := login(t, a, "alice")

	stolen := must(a.Manager().Refresh(bg, victim.RefreshToken))
	if same := must(b.Manager().Refresh(bg, victim.RefreshToken)); same.RefreshToken != stolen.RefreshToken {
		t.Fatal("before its successor is used, the old token must get that successor")
	}
	attacker := must(a.Manager().Refresh(bg, stolen.RefreshToken)) // the successor is used
	if _, err := b.Manager().Refresh(bg, victim.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("reuse: %v, want ErrInvalidToken", err)
	}
	var reasons []string
	for _, r := range ofType[events.SessionRevoked](t, streamAll(t, a.NC), events.TypeSessionRevoked) {
		reasons = append(reasons, r.Reason)
	}
	if len(reasons) != 1 || reasons[0] != events.ReasonRefreshReuse {
		t.Fatalf("revocations %v, want one refresh_reuse", reasons)
	}
	for _, m := range []*nodetest.Manager{a, b} {
		if active(t, m, attacker.AccessToken) {
			t.Fatal("the attacker's access token is still active")
		}
		if _, err := m.Manager().Refresh(bg, attacker.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
			t.Fatalf("the attacker's refresh token still works: %v", err)
		}
	}
}

// A retry that comes when the generation's access token is past half its
// lifetime gets the same refresh token with a new access token (a new
// generation on the stream), and the retried token keeps working until
// that refresh token is used.
func TestRefreshRetryReissuesStaleAccess(t *testing.T) {
	_, m := start(t, withSession(func(c *session.Config) { c.AccessTTL = 2 * time.Second }))
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	first := must(m.Manager().Refresh(bg, r.RefreshToken))
	in := claims(t, m, first.AccessToken)
	exp := time.Unix(in.ExpiresAt, 0)
	// exp is rounded down to the second: once it has passed, the token
	// is surely past half its 2s lifetime.
	waitFor(t, "the access token to pass half its lifetime", func() bool { return !time.Now().Before(exp) })
	retry := must(m.Manager().Refresh(bg, r.RefreshToken))
	if retry.RefreshToken != first.RefreshToken {
		t.Fatal("the retry got another refresh token")
	}
	if claims(t, m, retry.AccessToken).JTI == in.JTI {
		t.Fatal("the retry got the stale access token again")
	}
	if again := must(m.Manager().Refresh(bg, r.RefreshToken)); claims(t, m, again.AccessToken).JTI != claims(t, m, retry.AccessToken).JTI {
		t.Fatal("a second retry got yet another access token")
	}
	next := must(m.Manager().Refresh(bg, first.RefreshToken))
	if !active(t, m, next.AccessToken) {
		t.Fatal("successor does not work after the re-issue")
	}
	if n := len(ofType[events.SessionRevoked](t, streamAll(t, m.NC), events.TypeSessionRevoked)); n != 0 {
		t.Fatalf("%d revocations", n)
	}
}

// With rotation off, concurrent refreshes of the one token all succeed.
func TestRotationOffConcurrentRefreshes(t *testing.T) {
	_, m := start(t, withSession(func(c *session.Config) { c.RefreshRotation = false }))
	m.AddUser(t, "alice", pw)
	r := login(t, m, "alice")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	replies := make([]events.TokenReply, 20)
	for i := range errs {
		wg.Go(func() { replies[i], errs[i] = m.Manager().Refresh(bg, r.RefreshToken) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if replies[i].RefreshToken != r.RefreshToken || !active(t, m, replies[i].AccessToken) {
			t.Fatalf("caller %d: rotation off must keep the token and give an active access token", i)
		}
	}
}
