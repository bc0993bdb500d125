package session_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

// The benchmarks run a real manager on the embedded JetStream with fsync
// before every ack (the default), as in production.
//
//	go test -run '^$' -bench . -benchtime 5s ./session/

// BenchmarkArgon2id is the bare hash at the default parameters: the
// ceiling of BenchmarkLogin.
func BenchmarkArgon2id(b *testing.B) {
	p := session.DefaultPasswordParams()
	h, err := session.HashPassword([]byte(pw), p)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, _ := session.VerifyPassword([]byte(pw), h); !ok {
				b.Error("no match")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "hashes/s")
}

// BenchmarkLogin: credential check, token issue, session.created fact.
// Each client logs in from its own address, as in a real login storm
// (attempts for one account from one address take turns).
func BenchmarkLogin(b *testing.B) {
	_, m := start(b, withSession(func(c *session.Config) { c.HashWait = time.Minute }))
	m.AddUser(b, "alice", pw)
	var client atomic.Int64
	b.ResetTimer()
	b.SetParallelism(4) // more clients than hash slots, to keep the slots busy
	b.RunParallel(func(pb *testing.PB) {
		ip := fmt.Sprintf("198.18.0.%d", client.Add(1))
		for pb.Next() {
			if _, err := m.Manager().Login(bg, session.LoginRequest{Username: "alice", Password: pw, IP: ip}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
}

// BenchmarkRefresh: each goroutine rotates its own session's refresh
// token: read the view, sign, publish conditionally, wait for the view.
func BenchmarkRefresh(b *testing.B) {
	_, m := start(b)
	_, toks := createSessions(b, m, 64)
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := toks[next.Add(1)-1]
		for pb.Next() {
			r, err := m.Manager().Refresh(bg, tok)
			if err != nil {
				b.Error(err)
				return
			}
			tok = r.RefreshToken
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
}

// BenchmarkRefreshRetry: each goroutine presents a token that was just
// rotated, again and again, as a client retrying after lost replies does:
// read the view, derive the successor, sign the access token again; no
// publish.
func BenchmarkRefreshRetry(b *testing.B) {
	_, m := start(b)
	_, toks := createSessions(b, m, 64)
	for _, tok := range toks {
		if _, err := m.Manager().Refresh(bg, tok); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		tok := toks[next.Add(1)-1]
		for pb.Next() {
			if _, err := m.Manager().Refresh(bg, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "retries/s")
}

// BenchmarkRevokeSession: admin revocation of distinct sessions (created
// beforehand by publishing session.created facts directly, so that the
// setup does not pay a password hash per session).
func BenchmarkRevokeSession(b *testing.B) {
	_, m := start(b)
	ids, _ := createSessions(b, m, b.N)
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)-1]
			if err := m.Manager().Revoke(bg, session.RevokeRequest{SessionID: id}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "revokes/s")
}

// BenchmarkRevokeUser: user revocations of a few existing users, over
// and over (each one a user.revoked fact).
func BenchmarkRevokeUser(b *testing.B) {
	_, m := start(b)
	var users []string
	for i := range 8 {
		users = append(users, m.AddUser(b, fmt.Sprintf("user%d", i), pw))
	}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			uid := users[next.Add(1)%int64(len(users))]
			if err := m.Manager().Revoke(bg, session.RevokeRequest{UserID: uid}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "revokes/s")
}

// createSessions starts n sessions by publishing their session.created
// facts directly, and returns their ids and refresh tokens.
func createSessions(b *testing.B, m *nodetest.Manager, n int) ([]string, []string) {
	return createSessionsT(b, m, n)
}

func createSessionsT(b testing.TB, m *nodetest.Manager, n int) ([]string, []string) {
	b.Helper()
	js := jsTestStream(b, m)
	p, err := jsbus.NewPublisher(js)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	ids, toks := make([]string, n), make([]string, n)
	var last uint64
	for i := range ids {
		ids[i] = events.NewID()
		toks[i] = fmt.Sprintf("%s%043d", session.RefreshTokenPrefix, i)
		e, err := events.New(events.TypeSessionCreated, events.Source("bench"), ids[i], now, events.SessionCreated{
			SessionID: ids[i], UserID: "U1", AccountKey: "k", RefreshDigest: session.Digest(toks[i]), Generation: 1,
			AccessJTI: events.NewID(), AccessExpiresAt: now.Add(5 * time.Minute), CreatedAt: now,
			IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
		if last, err = p.Publish(bg, e, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := m.View().WaitApplied(bg, last); err != nil {
		b.Fatal(err)
	}
	return ids, toks
}
