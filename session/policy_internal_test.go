package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestThrottleRules(t *testing.T) {
	c := DefaultThrottleConfig()
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var th Throttle
	for i := 1; i <= 4; i++ {
		if _, starts := c.StartsThrottle(th, at); starts {
			t.Fatalf("failure %d starts a throttle", i)
		}
		th = ApplyFailure(th, at)
	}
	until, starts := c.StartsThrottle(th, at)
	if !starts || until != at.Add(time.Second) {
		t.Fatalf("5th failure: %v %s", starts, until)
	}
	th = ApplyFailure(th, at)
	if w := c.RetryAfter(th, at); w != time.Second {
		t.Fatalf("wait %s", w)
	}
	for range 20 {
		th = ApplyFailure(th, at)
	}
	if w := c.RetryAfter(th, at); w != c.MaxDelay {
		t.Fatalf("delay not capped: %s", w)
	}
	// A quiet day forgets the failures; a success forgets them at once.
	if w := c.RetryAfter(th, at.Add(FailureMemory+time.Second)); w != 0 {
		t.Fatalf("wait after a quiet day: %s", w)
	}
	ok := ApplySuccess(th, at)
	if ok.Failures != 0 || c.RetryAfter(ok, at) != 0 {
		t.Fatalf("success did not reset: %+v", ok)
	}
	// Account-wide: a known address is exempt, an unknown one waits.
	var acct Throttle
	for range c.PerAccount {
		acct = ApplyFailure(Throttle{AccountFailures: acct.AccountFailures}, at)
	}
	unknown := Throttle{AccountFailures: acct.AccountFailures}
	known := Throttle{AccountFailures: acct.AccountFailures, KnownAt: at.Add(-time.Hour)}
	if c.RetryAfter(unknown, at) != c.Window || c.RetryAfter(known, at) != 0 {
		t.Fatalf("account rule: unknown %s known %s", c.RetryAfter(unknown, at), c.RetryAfter(known, at))
	}
	if got := appendRecent(nil, at); len(got) != 1 {
		t.Fatal(got)
	}
}

func TestPasswordHashes(t *testing.T) {
	p := DefaultPasswordParams()
	h, err := HashPassword([]byte("s3cret-pass"), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %s", h)
	}
	ok, got, err := VerifyPassword([]byte("s3cret-pass"), h)
	if !ok || err != nil || got != p {
		t.Fatalf("verify: %v %+v %v", ok, got, err)
	}
	if ok, _, _ := VerifyPassword([]byte("s3cret-pasS"), h); ok {
		t.Fatal("wrong password accepted")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2$c2FsdA$aGFzaA", "$argon2id$v=19$m=19456,t=2,p=1$!!$!!"} {
		if _, _, err := VerifyPassword([]byte("x"), bad); !errors.Is(err, errBadHash) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := (PasswordParams{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}).Validate(); err == nil {
		t.Fatal("weak parameters accepted")
	}
}

func TestHashLimiter(t *testing.T) {
	l := newHashLimiter(1, 1, 50*time.Millisecond)
	release, err := l.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.acquire(context.Background()); !errors.Is(err, ErrOverloaded) || time.Since(start) < 40*time.Millisecond {
		t.Fatalf("second acquire: %v after %s", err, time.Since(start))
	}
	release()
	r2, err := l.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r2()
}

func TestConfigValidateReportsEverything(t *testing.T) {
	c := DefaultConfig()
	c.Instance = ""
	c.AccessTTL = 0
	c.SigningAlg = "HS256"
	c.Throttle.PerAccount = 1000
	err := c.Validate()
	for _, want := range []string{"instance", "access TTL", "HS256", "per-account"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// Concurrent misses share reads of the stream's last sequence, but never
// one that started before they arrived.
func TestBarrierSharesOnlyLaterReads(t *testing.T) {
	var b barrier
	var mu sync.Mutex
	var reads int
	var seq uint64
	read := func(context.Context) (uint64, error) {
		mu.Lock()
		reads++
		seq++
		s := seq
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a read that takes a while: simulated work, not a wait
		return s, nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			mu.Lock()
			before := seq // reads started before this call
			mu.Unlock()
			got, err := b.lastSeq(context.Background(), read)
			if err != nil || got <= before {
				t.Errorf("got read %d, but %d had started before the call", got, before)
			}
		})
	}
	wg.Wait()
	if reads > 10 {
		t.Fatalf("%d reads for 50 concurrent calls", reads)
	}
}

// An address failing on many accounts waits for accounts it is not known
// for (credential stuffing), and not for one it is known for.
func TestThrottlePerAddressOverAllAccounts(t *testing.T) {
	c := DefaultThrottleConfig()
	c.PerAddressAll = 3
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var th Throttle
	for range 3 {
		th = ApplyFailure(Throttle{AddressFailures: th.AddressFailures}, at)
	}
	other := Throttle{AddressFailures: th.AddressFailures}
	if c.RetryAfter(other, at) != c.Window {
		t.Fatalf("stuffing address not delayed: %s", c.RetryAfter(other, at))
	}
	other.KnownAt = at.Add(-time.Hour)
	if c.RetryAfter(other, at) != 0 {
		t.Fatal("known address delayed")
	}
}

// What a presented refresh token gets (RFC 9700 §4.14.2, with the
// previous token valid until its successor is first used).
func TestRedeem(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	// Generation 3 was issued for token "t2" (issued at generation 2); its
	// refresh token is "t3".
	s := Session{Generation: 3, PreviousDigest: "t2", RefreshDigest: "t3", RotatedAt: at}
	off := Session{Generation: 3, PreviousDigest: "t", RefreshDigest: "t", RotatedAt: at}
	tests := []struct {
		name      string
		s         Session
		gen       uint64
		digest    string
		successor string
		raced     bool
		grace     time.Duration
		now       time.Time
		want      redemption
	}{
		{"current token rotates", s, 3, "t3", "t4", false, 0, at, redeemRotate},
		{"current token that lost a write rotates again", s, 3, "t3", "t4", true, 0, at, redeemRotate},
		{"rotated token whose successor is unused replays", s, 2, "t2", "t3", false, 0, at, redeemReplay},
		{"a day later, still unused: replays", s, 2, "t2", "t3", false, 0, at.Add(24 * time.Hour), redeemReplay},
		{"successor used: reuse", s, 1, "t1", "t2", false, 0, at, redeemReuse},
		{"successor used, within the grace: answered as the successor", s, 1, "t1", "t2", false, time.Second, at.Add(time.Second), redeemSuccessor},
		{"successor used, after the grace: reuse", s, 1, "t1", "t2", false, time.Second, at.Add(time.Second + 1), redeemReuse},
		{"older still, within the grace: reuse", s, 0, "t0", "t1", false, time.Minute, at, redeemReuse},
		{"rotation off: the token rotates", off, 3, "t", "t", false, 0, at, redeemRotate},
		{"rotation off, lost the write to the same token: replays", off, 3, "t", "t", true, 0, at, redeemReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := redeem(tc.s, tc.gen, tc.digest, tc.successor, tc.raced, tc.grace, tc.now); got != tc.want {
				t.Fatalf("redeem = %d, want %d", got, tc.want)
			}
		})
	}
}

// Successors and jtis are functions of the token (and generation) and
// the secret only, distinct for distinct inputs, and shaped like what
// they stand for.
func TestDerivation(t *testing.T) {
	d1, err := newDerivation([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := newDerivation([]byte("another secret of thirty-two b.."))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := newRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	next := d1.successor(tok)
	if !IsRefreshToken(next) || next == tok || d1.successor(tok) != next || d2.successor(tok) == next || d1.successor(next) == next {
		t.Fatal("successor is not a deterministic, keyed refresh token")
	}
	j := d1.accessJTI(tok, 2)
	if len(j) != 22 || strings.ContainsAny(j, "+/=") || d1.accessJTI(tok, 2) != j || d1.accessJTI(tok, 3) == j || d1.accessJTI(next, 2) == j || d2.accessJTI(tok, 2) == j {
		t.Fatal("jti is not a deterministic, keyed id per token and generation")
	}
}
