package denylist_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/fakeclock"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/promtest"
)

func TestReplaysRevocationsInForceBeforeReady(t *testing.T) {
	e := newEnv(t)
	past := time.Now().Add(-time.Second).UTC()
	e.revokeSession("S1", time.Minute)
	e.revokeToken("J1", time.Minute)
	e.revokeUser("U1", past, 5*time.Minute)
	e.revokeKey("K1", time.Minute)
	// Already over: not stored, but counted.
	e.revokeSession("SOLD", -2*time.Hour)
	// Facts that are not revocations are not even delivered.
	e.publish(events.TypeSessionCreated, "S9", events.SessionCreated{SessionID: "S9", UserID: "U9"})

	l, reg, _ := e.start(denylist.Config{})
	waitReady(t, l)
	if err := l.Check(); err != nil {
		t.Fatalf("Check after ready: %v", err)
	}
	old := past.Add(-time.Minute)
	tests := []struct {
		name string
		tok  denylist.Token
		want denylist.Kind
	}{
		{"session", denylist.Token{SessionID: "S1", Subject: "U2", IssuedAt: past, AuthTime: past}, denylist.KindSession},
		{"token", denylist.Token{ID: "J1", SessionID: "S2", IssuedAt: past, AuthTime: past}, denylist.KindToken},
		{"user", denylist.Token{Subject: "U1", SessionID: "S2", IssuedAt: old, AuthTime: old}, denylist.KindUser},
		{"key", denylist.Token{KeyID: "K1", SessionID: "S2", IssuedAt: past, AuthTime: past}, denylist.KindKey},
		{"expired revocation", denylist.Token{SessionID: "SOLD", IssuedAt: past, AuthTime: past}, denylist.KindNone},
		{"other", denylist.Token{SessionID: "S2", ID: "J2", Subject: "U2", KeyID: "K2", IssuedAt: past, AuthTime: past}, denylist.KindNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := denied(l, tc.tok); got != tc.want {
				t.Fatalf("Denied = %v, want %v", got, tc.want)
			}
		})
	}
	for _, k := range denylist.Kinds() {
		if got := l.Len(k); got != 1 {
			t.Errorf("Len(%v) = %d, want 1", k, got)
		}
		if got := promtest.Value(t, reg, "sessionbus_denylist_entries", k.String()); got != 1 {
			t.Errorf("entries{%v} = %v", k, got)
		}
		if got := promtest.Value(t, reg, "sessionbus_denylist_events_applied_total", k.String()); got != 1 {
			t.Errorf("applied{%v} = %v", k, got)
		}
	}
	if got := promtest.Value(t, reg, "sessionbus_denylist_events_skipped_total", "expired"); got != 1 {
		t.Errorf("skipped{expired} = %v", got)
	}
	if got := promtest.Value(t, reg, "sessionbus_denylist_ready", ""); got != 1 {
		t.Errorf("ready = %v", got)
	}
}

func TestUserRevocationCoversIssuedAndSessionStart(t *testing.T) {
	e := newEnv(t)
	l, _, _ := e.start(denylist.Config{})
	waitReady(t, l)
	rb := time.Now().Add(-10 * time.Second).UTC().Truncate(time.Second)
	e.revokeUser("U1", rb, 5*time.Minute)
	eventually(t, "user revocation", func() bool { return l.Len(denylist.KindUser) == 1 })
	before, after := rb.Add(-time.Second), rb.Add(time.Second)
	tests := []struct {
		name          string
		sub           string
		iat, authTime time.Time
		wantDenied    bool
	}{
		{"issued before, session before", "U1", before, before, true},
		{"refreshed after, session began before", "U1", after, before, true},
		{"issued after, session after", "U1", after, after, false},
		{"issued exactly at revoked_before", "U1", rb, rb, false},
		{"no auth_time", "U1", after, time.Time{}, true},
		{"no iat", "U1", time.Time{}, after, true},
		{"other user", "U2", before, before, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, k := l.Denied(denylist.Token{Subject: tc.sub, IssuedAt: tc.iat, AuthTime: tc.authTime})
			if ok != tc.wantDenied || (ok && k != denylist.KindUser) {
				t.Fatalf("Denied = %v %v, want %v", ok, k, tc.wantDenied)
			}
		})
	}
}

func TestLiveRevocationIsAppliedQuickly(t *testing.T) {
	e := newEnv(t)
	l, _, _ := e.start(denylist.Config{})
	waitReady(t, l)
	tok := denylist.Token{SessionID: "S-LIVE", IssuedAt: time.Now(), AuthTime: time.Now()}
	if ok, _ := l.Denied(tok); ok {
		t.Fatal("denied before revocation")
	}
	seq := e.revokeSession("S-LIVE", time.Minute)
	eventually(t, "live revocation", func() bool { ok, _ := l.Denied(tok); return ok })
	// The stored copy is read within a heartbeat.
	eventually(t, "stored revocation read", func() bool { return l.LastSequence() == seq })
}

func TestMalformedAndUnknownEventsAreSkippedAndCounted(t *testing.T) {
	e := newEnv(t)
	l, reg, _ := e.start(denylist.Config{})
	waitReady(t, l)

	good := func(sid string) *nats.Msg {
		now := time.Now().UTC()
		ev, err := events.New(events.TypeSessionRevoked, events.Source("t"), sid, now,
			events.SessionRevoked{SessionID: sid, RevokedAt: now, DenyUntil: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		m, err := events.ToMsg(ev.NATSSubject(), ev)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	subj := "auth.events.session.revoked.BAD"
	bad := []struct {
		name   string
		msg    *nats.Msg
		reason string
	}{
		{"garbage body, no headers", &nats.Msg{Subject: subj, Data: []byte("{]")}, "malformed"},
		{"plain text", &nats.Msg{Subject: subj, Header: nats.Header{"content-type": {"text/plain"}}, Data: []byte("revoke S-BAD")}, "malformed"},
		{"bad spec version", func() *nats.Msg { m := good("S-BAD"); m.Header["ce-specversion"] = []string{"0.3"}; return m }(), "malformed"},
		{"data not JSON", func() *nats.Msg { m := good("S-BAD"); m.Data = []byte("nope"); return m }(), "malformed"},
		{"data wrong shape", func() *nats.Msg { m := good("S-BAD"); m.Data = []byte(`{"deny_until":"tomorrow"}`); return m }(), "malformed"},
		{"id not subject-safe", func() *nats.Msg {
			m := good("S-BAD")
			m.Data = []byte(`{"session_id":"a b","deny_until":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
			return m
		}(), "malformed"},
		{"unknown version", func() *nats.Msg {
			m := good("S-BAD")
			m.Header["ce-type"] = []string{"io.sessionbus.session.revoked.v9"}
			return m
		}(), "unknown_type"},
		{"unknown type", func() *nats.Msg { m := good("S-BAD"); m.Header["ce-type"] = []string{"com.example.whatever"}; return m }(), "unknown_type"},
		{"message id not its ce-id", func() *nats.Msg {
			m := good("S-BAD")
			m.Header[events.HeaderMsgID] = []string{events.NewID()}
			return m
		}(), "msgid_mismatch"},
		{"known non-revocation", func() *nats.Msg {
			m := good("S-BAD")
			m.Header["ce-type"] = []string{string(events.TypeSessionCreated)}
			return m
		}(), "not_revocation"},
	}
	want := map[string]float64{}
	for _, b := range bad {
		b.msg.Subject = subj
		e.publishRaw(b.msg)
		want[b.reason]++
	}
	// A good one after all the bad ones is applied.
	m := good("S-GOOD")
	e.publishRaw(m)
	eventually(t, "good revocation after bad ones", func() bool { ok, _ := l.Denied(denylist.Token{SessionID: "S-GOOD"}); return ok })
	for reason, n := range want {
		if got := promtest.Value(t, reg, "sessionbus_denylist_events_skipped_total", reason); got != n {
			t.Errorf("skipped{%s} = %v, want %v", reason, got, n)
		}
	}
	if got := l.Len(denylist.KindSession); got != 1 {
		t.Errorf("Len(session) = %d, want 1", got)
	}
	if ok, _ := l.Denied(denylist.Token{SessionID: "S-BAD", IssuedAt: time.Now(), AuthTime: time.Now()}); ok {
		t.Error("a skipped message denied its session")
	}
	if err := l.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestDuplicatesAndReorderingKeepTheStrongest(t *testing.T) {
	e := newEnv(t)
	l, reg, _ := e.start(denylist.Config{})
	waitReady(t, l)
	now := time.Now().UTC().Truncate(time.Second)
	newer, older := now.Add(-5*time.Second), now.Add(-50*time.Second)
	// The later user revocation arrives first, then an older one, then
	// the later one again (a duplicate that passed de-duplication).
	e.revokeUser("U1", newer, 5*time.Minute)
	e.revokeUser("U1", older, 5*time.Minute)
	e.revokeUser("U1", newer, 5*time.Minute)
	// A short and a long revocation of one session, the long one first.
	e.revokeSession("S1", time.Hour)
	e.revokeSession("S1", time.Second)
	eventually(t, "five revocations", func() bool {
		return promtest.Value(t, reg, "sessionbus_denylist_events_applied_total", "user") == 3 &&
			promtest.Value(t, reg, "sessionbus_denylist_events_applied_total", "session") == 2
	})
	between := newer.Add(-time.Second) // after older, before newer
	if ok, k := l.Denied(denylist.Token{Subject: "U1", IssuedAt: between, AuthTime: between}); !ok || k != denylist.KindUser {
		t.Fatalf("token between the two revoked_before: Denied = %v %v, want user", ok, k)
	}
	if got := l.Len(denylist.KindUser); got != 1 {
		t.Fatalf("Len(user) = %d", got)
	}
	if got := l.Len(denylist.KindSession); got != 1 {
		t.Fatalf("Len(session) = %d", got)
	}
}

func TestRestartedWhileRevocationsHappen(t *testing.T) {
	e := newEnv(t)
	l1, _, stop1 := e.start(denylist.Config{})
	waitReady(t, l1)
	e.revokeSession("BEFORE", time.Minute)
	eventually(t, "first list", func() bool { ok, _ := l1.Denied(denylist.Token{SessionID: "BEFORE"}); return ok })
	stop1()

	// While no list runs.
	var acked []string
	for i := range 20 {
		sid := id("DOWN", i)
		e.revokeSession(sid, time.Minute)
		acked = append(acked, sid)
	}
	// And while the new one starts.
	stopPub := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			default:
			}
			e.revokeSession(id("DURING", i), time.Minute)
		}
	}()
	t.Cleanup(func() { close(stopPub); wg.Wait() })

	l2, _, _ := e.start(denylist.Config{})
	if err := l2.Check(); !errors.Is(err, denylist.ErrNotReady) {
		t.Fatalf("Check before ready = %v, want ErrNotReady", err)
	}
	waitReady(t, l2)
	for _, sid := range append(acked, "BEFORE") {
		if ok, _ := l2.Denied(denylist.Token{SessionID: sid}); !ok {
			t.Errorf("%s not denied when ready", sid)
		}
	}
}

func TestFollowsNATSServerRestart(t *testing.T) {
	e := newEnv(t)
	l, _, _ := e.start(denylist.Config{Heartbeat: 500 * time.Millisecond, MaxStaleness: 5 * time.Second})
	waitReady(t, l)
	e.revokeSession("S-BEFORE", time.Minute)
	eventually(t, "revocation before restart", func() bool { return l.Len(denylist.KindSession) == 1 })

	e.srv.Restart()
	// Published as soon as the server is back: the publisher retries
	// until its connection has reconnected.
	e.revokeSession("S-AFTER-1", time.Minute)
	e.revokeToken("J-AFTER", time.Minute)
	eventually(t, "revocations right after the restart", func() bool {
		a, _ := l.Denied(denylist.Token{SessionID: "S-AFTER-1"})
		b, _ := l.Denied(denylist.Token{ID: "J-AFTER"})
		return a && b
	})
	e.revokeSession("S-AFTER-2", time.Minute)
	eventually(t, "a revocation later on", func() bool { ok, _ := l.Denied(denylist.Token{SessionID: "S-AFTER-2"}); return ok })
	if got := l.Len(denylist.KindSession); got != 3 {
		t.Errorf("Len(session) = %d, want 3", got)
	}
	eventually(t, "fresh again", func() bool { return l.Check() == nil })
}

func TestStalenessPolicy(t *testing.T) {
	const bound = 2 * time.Second
	for _, tc := range []struct {
		policy  denylist.StalePolicy
		wantErr error
	}{
		{denylist.FailClosed, denylist.ErrStale},
		{denylist.FailOpen, nil},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			clk := fakeclock.New(time.Now())
			l, reg, _ := e.start(denylist.Config{Heartbeat: 500 * time.Millisecond, MaxStaleness: bound, StalePolicy: tc.policy, Now: clk.Now})
			// Ready once a read finds the stream caught up as of a moment
			// after Run started: on this clock, once it has moved.
			eventually(t, "ready", func() bool {
				clk.Advance(100 * time.Millisecond)
				return !errors.Is(l.Check(), denylist.ErrNotReady)
			})
			// A quiet stream stays fresh thanks to the probes: longer than
			// the bound passes without a message, and the next probe (one
			// Heartbeat of real time) makes the list fresh again.
			clk.Advance(bound + 500*time.Millisecond)
			eventually(t, "a probe to freshen the quiet stream", func() bool { return l.Staleness() <= bound })
			if err := l.Check(); err != nil {
				t.Fatalf("quiet stream: Check = %v (staleness %s)", err, l.Staleness())
			}
			if s := promtest.Value(t, reg, "sessionbus_denylist_staleness_seconds", ""); s > bound.Seconds() {
				t.Fatalf("staleness_seconds = %v on a quiet stream", s)
			}
			e.srv.Shutdown()
			// No probe succeeds any more: time passes and the list ages.
			eventually(t, "staleness past the bound", func() bool {
				clk.Advance(100 * time.Millisecond)
				return l.Staleness() > bound
			})
			if err := l.Check(); !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Check while stale = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestServiceRoleSuffices(t *testing.T) {
	e := newEnv(t)
	e.revokeSession("S1", time.Minute)
	l, _, _ := e.start(denylist.Config{})
	waitReady(t, l)
	if ok, _ := l.Denied(denylist.Token{SessionID: "S1"}); !ok {
		t.Fatal("S1 not denied")
	}
	e.revokeSession("S2", time.Minute)
	eventually(t, "live revocation as service", func() bool { ok, _ := l.Denied(denylist.Token{SessionID: "S2"}); return ok })
}

func TestRunErrors(t *testing.T) {
	l, err := denylist.New(denylist.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Run(context.Background()); !errors.Is(err, denylist.ErrNoJetStream) {
		t.Fatalf("Run without JetStream = %v", err)
	}
	e := newEnv(t)
	l2, _, _ := e.start(denylist.Config{})
	waitReady(t, l2)
	if err := l2.Run(context.Background()); !errors.Is(err, denylist.ErrAlreadyRunning) {
		t.Fatalf("second Run = %v", err)
	}
}

func TestWaitsForTheStream(t *testing.T) {
	srv := natstest.Start(t)
	svc, err := jetstreamNew(srv)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, svc: svc}
	l, reg, _ := e.start(denylist.Config{})
	eventually(t, "a failed read", func() bool { return promtest.Value(t, reg, "sessionbus_denylist_consumer_errors_total", "") > 0 })
	if err := l.Check(); !errors.Is(err, denylist.ErrNotReady) {
		t.Fatalf("Check without stream = %v", err)
	}
	// The manager creates the stream later.
	js := srv.JetStream()
	e.js = js
	waitReady(t, l)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     denylist.Config
		wantErr error
	}{
		{"defaults", denylist.Config{}, nil},
		{"lookback shorter than ttl", denylist.Config{Lookback: time.Minute, MaxTokenTTL: 5 * time.Minute}, denylist.ErrInvalidConfig},
		{"long ttl long lookback", denylist.Config{Lookback: time.Hour, MaxTokenTTL: 30 * time.Minute}, nil},
		{"heartbeat too short", denylist.Config{Heartbeat: time.Millisecond}, denylist.ErrInvalidConfig},
		{"staleness below heartbeats", denylist.Config{Heartbeat: 10 * time.Second, MaxStaleness: 5 * time.Second}, denylist.ErrInvalidConfig},
		{"negative grace", denylist.Config{Grace: -time.Second}, denylist.ErrInvalidConfig},
		{"unknown policy", denylist.Config{StalePolicy: 7}, denylist.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tc.wantErr)
			}
			if _, err := denylist.New(tc.cfg); (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("New = %v", err)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	l, err := denylist.New(denylist.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	mk := func(typ events.Type, id string, data any) events.Event {
		ev, err := events.New(typ, events.Source("t"), id, now, data)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	tests := []struct {
		name    string
		ev      events.Event
		wantErr error
	}{
		{"ok", mk(events.TypeKeyRevoked, "K1", events.KeyRevoked{KeyID: "K1", DenyUntil: now.Add(time.Minute)}), nil},
		{"id from subject", mk(events.TypeTokenRevoked, "J1", events.TokenRevoked{DenyUntil: now.Add(time.Minute)}), nil},
		{"no deny_until: one lifetime", mk(events.TypeSessionRevoked, "S1", events.SessionRevoked{SessionID: "S1"}), nil},
		{"expired", mk(events.TypeSessionRevoked, "S2", events.SessionRevoked{SessionID: "S2", DenyUntil: now.Add(-time.Hour)}), denylist.ErrExpired},
		{"not a revocation", mk(events.TypeKeyRotated, "K2", events.KeyRotated{KeyID: "K2"}), denylist.ErrNotRevocation},
		{"unknown", events.Event{ID: "x", Type: "io.sessionbus.user.revoked.v2", Source: "/t", Data: []byte(`{}`)}, events.ErrUnknownType},
		{"bad data", events.Event{ID: "x", Type: events.TypeUserRevoked, Source: "/t", Subject: "U1", Data: []byte(`[]`)}, events.ErrMalformed},
		{"bad id", mk(events.TypeSessionRevoked, "S3", events.SessionRevoked{SessionID: "a.b", DenyUntil: now.Add(time.Minute)}), events.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := l.Apply(tc.ev)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Apply = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if ok, k := l.Denied(denylist.Token{ID: "J1"}); !ok || k != denylist.KindToken {
		t.Fatalf("J1: %v %v", ok, k)
	}
}

// Revocations with an actor (what managers write now) and without one
// (facts written before actors were recorded) deny alike, each kind.
func TestRevocationsWithAndWithoutActor(t *testing.T) {
	e := newEnv(t)
	l, _, _ := e.start(denylist.Config{})
	waitReady(t, l)
	now := time.Now().UTC()
	ops := events.Actor{Kind: events.ActorIdentity, Name: "ops-ann", Role: "operator"}
	var toks []denylist.Token
	for i, a := range []events.Actor{{}, ops} {
		sid, jti, uid, kid := id("SA", i), id("JA", i), id("UA", i), id("KA", i)
		e.publish(events.TypeSessionRevoked, sid, events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: "laptop_stolen", RevokedAt: now, DenyUntil: now.Add(time.Minute), Actor: a})
		e.publish(events.TypeTokenRevoked, jti, events.TokenRevoked{JTI: jti, Reason: events.ReasonAdmin, RevokedAt: now, DenyUntil: now.Add(time.Minute), Actor: a})
		e.publish(events.TypeUserRevoked, uid, events.UserRevoked{UserID: uid, Reason: events.ReasonAdmin, RevokedBefore: now, DenyUntil: now.Add(time.Minute), Actor: a})
		e.publish(events.TypeKeyRevoked, kid, events.KeyRevoked{KeyID: kid, Reason: events.ReasonKeyCompromised, RevokedAt: now, DenyUntil: now.Add(time.Minute), Actor: a})
		at := now.Add(-time.Second)
		toks = append(toks,
			denylist.Token{SessionID: sid, IssuedAt: at, AuthTime: at},
			denylist.Token{ID: jti, IssuedAt: at, AuthTime: at},
			denylist.Token{Subject: uid, IssuedAt: at, AuthTime: at},
			denylist.Token{KeyID: kid, IssuedAt: at, AuthTime: at})
	}
	for _, tok := range toks {
		eventually(t, fmt.Sprintf("%+v denied", tok), func() bool { ok, _ := l.Denied(tok); return ok })
	}
	for _, k := range denylist.Kinds() {
		if got := l.Len(k); got != 2 {
			t.Errorf("Len(%v) = %d, want 2", k, got)
		}
	}
}
