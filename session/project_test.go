package session_test

import (
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

var p0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNewSession(t *testing.T) {
	d := &events.SessionCreated{
		SessionID: "S1", UserID: "U1", AccountKey: "A", ClientID: "c", IP: "192.0.2.1", UserAgent: "ua",
		RefreshDigest: "d1", Generation: 1, AccessJTI: "J1", AccessExpiresAt: p0.Add(5 * time.Minute), KeyID: "K1",
		CreatedAt: p0, IdleExpiresAt: p0.Add(time.Hour), ExpiresAt: p0.Add(24 * time.Hour),
	}
	got := session.NewSession(d, 7)
	want := session.Session{
		ID: "S1", UserID: "U1", AccountKey: "A", ClientID: "c", IP: "192.0.2.1", UserAgent: "ua",
		Generation: 1, RefreshDigest: "d1", CreatedAt: p0, IdleExpiresAt: p0.Add(time.Hour),
		ExpiresAt: p0.Add(24 * time.Hour), MaxAccessExp: p0.Add(5 * time.Minute), LastSeq: 7,
	}
	if got != want {
		t.Errorf("NewSession =\n%+v, want\n%+v", got, want)
	}
}

func TestSeenAt(t *testing.T) {
	for _, c := range []struct {
		name      string
		last, seq uint64
		want      uint64
	}{
		{"later fact", 3, 5, 5},
		{"same fact again", 5, 5, 5},
		{"older fact", 5, 3, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := session.SeenAt(session.Session{LastSeq: c.last}, c.seq).LastSeq; got != c.want {
				t.Errorf("LastSeq = %d, want %d", got, c.want)
			}
		})
	}
}

func TestApplyRefreshed(t *testing.T) {
	cur := session.Session{
		ID: "S1", Generation: 2, RefreshDigest: "d2", PreviousDigest: "d1", RotatedAt: p0,
		IdleExpiresAt: p0.Add(time.Hour), MaxAccessExp: p0.Add(10 * time.Minute), LastSeq: 9,
	}
	refreshed := func(gen uint64, accessExp time.Time) *events.SessionRefreshed {
		return &events.SessionRefreshed{
			SessionID: "S1", Generation: gen, PreviousRefreshDigest: "d2", RefreshDigest: "d3",
			AccessExpiresAt: accessExp, RefreshedAt: p0.Add(time.Minute), IdleExpiresAt: p0.Add(2 * time.Hour),
		}
	}
	stored := p0.Add(2 * time.Minute)
	for _, c := range []struct {
		name     string
		d        *events.SessionRefreshed
		storedAt time.Time
		rotated  bool
		want     session.Session
	}{
		{"same generation", refreshed(2, p0.Add(time.Hour)), stored, false, cur},
		{"older generation", refreshed(1, p0.Add(time.Hour)), stored, false, cur},
		{"next generation", refreshed(3, p0.Add(time.Hour)), stored, true, session.Session{
			ID: "S1", Generation: 3, RefreshDigest: "d3", PreviousDigest: "d2", RotatedAt: stored,
			LastRefreshedAt: p0.Add(time.Minute), IdleExpiresAt: p0.Add(2 * time.Hour),
			MaxAccessExp: p0.Add(time.Hour), LastSeq: 9,
		}},
		{"stream time unknown: the fact's time", refreshed(3, p0.Add(time.Hour)), time.Time{}, true, session.Session{
			ID: "S1", Generation: 3, RefreshDigest: "d3", PreviousDigest: "d2", RotatedAt: p0.Add(time.Minute),
			LastRefreshedAt: p0.Add(time.Minute), IdleExpiresAt: p0.Add(2 * time.Hour),
			MaxAccessExp: p0.Add(time.Hour), LastSeq: 9,
		}},
		{"earlier access expiry: the latest stays", refreshed(3, p0.Add(time.Minute)), stored, true, session.Session{
			ID: "S1", Generation: 3, RefreshDigest: "d3", PreviousDigest: "d2", RotatedAt: stored,
			LastRefreshedAt: p0.Add(time.Minute), IdleExpiresAt: p0.Add(2 * time.Hour),
			MaxAccessExp: p0.Add(10 * time.Minute), LastSeq: 9,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, rotated := session.ApplyRefreshed(cur, c.d, c.storedAt)
			if rotated != c.rotated || got != c.want {
				t.Errorf("ApplyRefreshed = %v,\n%+v, want %v,\n%+v", rotated, got, c.rotated, c.want)
			}
		})
	}
}

func TestApplySessionRevoked(t *testing.T) {
	d := &events.SessionRevoked{SessionID: "S1", Reason: events.ReasonLogout, RevokedAt: p0.Add(time.Minute)}
	for _, c := range []struct {
		name string
		cur  session.Session
		want session.Session
	}{
		{"active", session.Session{ID: "S1"},
			session.Session{ID: "S1", RevokedAt: p0.Add(time.Minute), RevokeReason: events.ReasonLogout}},
		{"already revoked: the first stands", session.Session{ID: "S1", RevokedAt: p0, RevokeReason: events.ReasonAdmin},
			session.Session{ID: "S1", RevokedAt: p0, RevokeReason: events.ReasonAdmin}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := session.ApplySessionRevoked(c.cur, d); got != c.want {
				t.Errorf("ApplySessionRevoked = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestApplyUserRevoked(t *testing.T) {
	for _, c := range []struct {
		name        string
		cur, before time.Time
		want        time.Time
	}{
		{"first revocation", time.Time{}, p0, p0},
		{"later revocation", p0, p0.Add(time.Minute), p0.Add(time.Minute)},
		{"earlier revocation: no step back", p0, p0.Add(-time.Minute), p0},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := session.UserState{RevokedBefore: c.cur, MaxAccessExp: p0.Add(time.Hour)}
			got := session.ApplyUserRevoked(u, &events.UserRevoked{UserID: "U1", RevokedBefore: c.before})
			if !got.RevokedBefore.Equal(c.want) || !got.MaxAccessExp.Equal(p0.Add(time.Hour)) {
				t.Errorf("ApplyUserRevoked = %+v, want revoked_before %v", got, c.want)
			}
		})
	}
}

func TestApplyTokenRevoked(t *testing.T) {
	d := &events.TokenRevoked{JTI: "J1", SessionID: "S1", UserID: "U1", RevokedAt: p0, DenyUntil: p0.Add(time.Hour)}
	issued := session.TokenInfo{JTI: "J1", SessionID: "S1", UserID: "U1", KeyID: "K1", ExpiresAt: p0.Add(5 * time.Minute)}
	for _, c := range []struct {
		name  string
		cur   session.TokenInfo
		found bool
		want  session.TokenInfo
	}{
		{"unknown token: kept until deny_until", session.TokenInfo{}, false,
			session.TokenInfo{JTI: "J1", SessionID: "S1", UserID: "U1", ExpiresAt: p0.Add(time.Hour), RevokedAt: p0}},
		{"issued token", issued, true,
			session.TokenInfo{JTI: "J1", SessionID: "S1", UserID: "U1", KeyID: "K1", ExpiresAt: p0.Add(5 * time.Minute), RevokedAt: p0}},
		{"already revoked: the first stands", session.TokenInfo{JTI: "J1", RevokedAt: p0.Add(-time.Minute)}, true,
			session.TokenInfo{JTI: "J1", RevokedAt: p0.Add(-time.Minute)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := session.ApplyTokenRevoked(c.cur, c.found, d); got != c.want {
				t.Errorf("ApplyTokenRevoked = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestApplyKeyRevoked(t *testing.T) {
	d := &events.KeyRevoked{KeyID: "K1", RevokedAt: p0}
	for _, c := range []struct {
		name      string
		cur, want session.KeyState
	}{
		{"in use", session.KeyState{MaxAccessExp: p0.Add(time.Hour)}, session.KeyState{RevokedAt: p0, MaxAccessExp: p0.Add(time.Hour)}},
		{"already revoked: the first stands", session.KeyState{RevokedAt: p0.Add(-time.Minute)}, session.KeyState{RevokedAt: p0.Add(-time.Minute)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := session.ApplyKeyRevoked(c.cur, d); got != c.want {
				t.Errorf("ApplyKeyRevoked = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestIssuedToken(t *testing.T) {
	got := session.IssuedToken(session.Session{ID: "S1", UserID: "U1", Generation: 4}, "J1", "K1", p0)
	want := session.TokenInfo{JTI: "J1", SessionID: "S1", UserID: "U1", KeyID: "K1", ExpiresAt: p0}
	if got != want {
		t.Errorf("IssuedToken = %+v, want %+v", got, want)
	}
}

func TestRaiseAccessExp(t *testing.T) {
	for _, c := range []struct {
		name   string
		cur    time.Time
		exp    time.Time
		raised bool
		want   time.Time
	}{
		{"first token", time.Time{}, p0, true, p0.Add(session.MaxExpStep)},
		{"later token", p0, p0.Add(time.Second), true, p0.Add(time.Second + session.MaxExpStep)},
		{"token within the recorded bound", p0.Add(session.MaxExpStep), p0.Add(time.Second), false, p0.Add(session.MaxExpStep)},
		{"token at the recorded bound", p0, p0, false, p0},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, raised := session.RaiseUserAccessExp(session.UserState{MaxAccessExp: c.cur, RevokedBefore: p0}, c.exp)
			if raised != c.raised || !u.MaxAccessExp.Equal(c.want) || !u.RevokedBefore.Equal(p0) {
				t.Errorf("RaiseUserAccessExp = %v, %+v, want %v, max_access_exp %v", raised, u, c.raised, c.want)
			}
			k, raised := session.RaiseKeyAccessExp(session.KeyState{MaxAccessExp: c.cur, RevokedAt: p0}, c.exp)
			if raised != c.raised || !k.MaxAccessExp.Equal(c.want) || !k.RevokedAt.Equal(p0) {
				t.Errorf("RaiseKeyAccessExp = %v, %+v, want %v, max_access_exp %v", raised, k, c.raised, c.want)
			}
		})
	}
}
