package session_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

const pw = "correct horse battery"

func login(t testing.TB, m *nodetest.Manager, user string) events.TokenReply {
	t.Helper()
	rep, err := m.Manager().Login(bg, session.LoginRequest{Username: user, Password: pw, IP: "192.0.2.1"})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return rep
}

func active(t testing.TB, m *nodetest.Manager, token string) bool {
	t.Helper()
	in, err := m.Manager().Introspect(bg, token)
	if err != nil {
		t.Fatal(err)
	}
	return in.Active
}

// Every flow end to end, the facts each publishes, schema-valid and free
// of every secret used.
func TestEveryFlowPublishesItsFacts(t *testing.T) {
	_, m := start(t)
	mgr := m.Manager()
	uid := m.AddUser(t, "Alice", pw)
	bobID := m.AddUser(t, "bob", pw)
	var secrets []string
	keep := func(r events.TokenReply) events.TokenReply {
		secrets = append(secrets, r.AccessToken, r.RefreshToken, r.AccessToken[strings.LastIndexByte(r.AccessToken, '.')+1:])
		return r
	}
	secrets = append(secrets, pw, "wrong password!")

	// Login (name is case-insensitive), refresh with rotation.
	a := keep(login(t, m, "ALICE"))
	a2 := keep(must(mgr.Refresh(bg, a.RefreshToken)))
	if a2.RefreshToken == a.RefreshToken || !active(t, m, a2.AccessToken) {
		t.Fatal("refresh did not rotate")
	}
	// Failed logins: wrong password and unknown user look the same.
	_, err1 := mgr.Login(bg, session.LoginRequest{Username: "alice", Password: "wrong password!"})
	_, err2 := mgr.Login(bg, session.LoginRequest{Username: "nobody", Password: "wrong password!"})
	if !errors.Is(err1, session.ErrBadCredentials) || !errors.Is(err2, session.ErrBadCredentials) || err1.Error() != err2.Error() {
		t.Fatalf("failed logins differ: %v / %v", err1, err2)
	}
	// A retry of that refresh gets the same answer again.
	if again := keep(must(mgr.Refresh(bg, a.RefreshToken))); again.RefreshToken != a2.RefreshToken {
		t.Fatal("retried refresh got another successor")
	}
	// Reuse of a rotated refresh token, once its successor was used,
	// revokes the session.
	a3 := keep(must(mgr.Refresh(bg, a2.RefreshToken)))
	if _, err := mgr.Refresh(bg, a.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := mgr.Refresh(bg, a3.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("successor survived reuse: %v", err)
	}
	if active(t, m, a3.AccessToken) {
		t.Fatal("access token of a reused session still active")
	}
	// Logout by refresh token and by access token.
	b := keep(login(t, m, "alice"))
	if err := mgr.Logout(bg, session.LogoutRequest{RefreshToken: b.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Logout(bg, session.LogoutRequest{RefreshToken: b.RefreshToken}); err != nil {
		t.Fatalf("second logout: %v", err)
	}
	c := keep(login(t, m, "alice"))
	if err := mgr.Logout(bg, session.LogoutRequest{AccessToken: c.AccessToken}); err != nil {
		t.Fatal(err)
	}
	// Admin: by session, by jti, by user.
	d := keep(login(t, m, "bob"))
	if err := mgr.Revoke(bg, session.RevokeRequest{SessionID: d.SessionID, Reason: "suspicious"}); err != nil {
		t.Fatal(err)
	}
	e := keep(login(t, m, "bob"))
	e2 := keep(must(mgr.Refresh(bg, e.RefreshToken)))
	jti := claims(t, m, e.AccessToken).JTI
	if err := mgr.Revoke(bg, session.RevokeRequest{JTI: jti}); err != nil {
		t.Fatal(err)
	}
	if active(t, m, e.AccessToken) || !active(t, m, e2.AccessToken) {
		t.Fatal("jti revocation must deny exactly that token")
	}
	if err := mgr.Revoke(bg, session.RevokeRequest{UserID: bobID}); err != nil {
		t.Fatal(err)
	}
	if active(t, m, e2.AccessToken) {
		t.Fatal("user revocation left a token active")
	}
	if _, err := mgr.Refresh(bg, e2.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("refresh after user revocation: %v", err)
	}
	f := keep(login(t, m, "bob")) // a new login after the revocation works
	if !active(t, m, f.AccessToken) {
		t.Fatal("login after user revocation is not active")
	}
	// RFC 7009 by the holder: access token alone, then refresh token.
	if err := mgr.RevokeToken(bg, f.AccessToken, "access_token"); err != nil {
		t.Fatal(err)
	}
	if active(t, m, f.AccessToken) {
		t.Fatal("RFC 7009 access token revocation")
	}
	if err := mgr.RevokeToken(bg, f.RefreshToken, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Refresh(bg, f.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatal("RFC 7009 refresh token revocation")
	}
	// Keys: rotate keeps old tokens valid; revoke denies them.
	g := keep(login(t, m, "alice"))
	oldKID := kidOf(t, g.AccessToken)
	if _, err := mgr.RotateKey(bg, session.AlgEdDSA); err != nil {
		t.Fatal(err)
	}
	h := keep(must(mgr.Refresh(bg, g.RefreshToken)))
	if kidOf(t, h.AccessToken) == oldKID || !active(t, m, g.AccessToken) {
		t.Fatal("rotation: new tokens must use the new key and old ones stay valid")
	}
	if !strings.Contains(string(mgr.JWKS()), oldKID) {
		t.Fatal("retired key left the JWKS too early")
	}
	if err := mgr.RevokeKey(bg, oldKID, ""); err != nil {
		t.Fatal(err)
	}
	if active(t, m, g.AccessToken) || strings.Contains(string(mgr.JWKS()), oldKID) {
		t.Fatal("revoked key still trusted")
	}
	// Disabling a user revokes its sessions and refuses logins.
	if _, err := mgr.SetDisabled(bg, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Login(bg, session.LoginRequest{Username: "alice", Password: pw}); !errors.Is(err, session.ErrDisabled) {
		t.Fatalf("disabled login: %v", err)
	}
	if active(t, m, h.AccessToken) {
		t.Fatal("disabled user's token active")
	}

	msgs := checkStream(t, m.NC, secrets...)
	count := map[events.Type]int{}
	for _, s := range msgs {
		count[s.Event.Type]++
	}
	for _, typ := range events.Types() {
		if count[typ] == 0 {
			t.Errorf("no %s on the stream", typ)
		}
	}
	reasons := map[string]bool{}
	for _, r := range ofType[events.SessionRevoked](t, msgs, events.TypeSessionRevoked) {
		reasons[r.Reason] = true
		if !r.DenyUntil.After(r.RevokedAt) {
			t.Errorf("deny_until %s not after revoked_at %s", r.DenyUntil, r.RevokedAt)
		}
	}
	for _, want := range []string{events.ReasonRefreshReuse, events.ReasonLogout, "suspicious", events.ReasonTokenRevocation} {
		if !reasons[want] {
			t.Errorf("no session.revoked with reason %s (have %v)", want, reasons)
		}
	}
	fails := ofType[events.LoginFailed](t, msgs, events.TypeLoginFailed)
	var unknown, known int
	for _, f := range fails {
		if f.UserID == "" {
			unknown++
		} else if f.UserID == uid {
			known++
		}
	}
	if unknown != 1 || known < 1 {
		t.Errorf("login.failed: %d unknown, %d alice", unknown, known)
	}
	users := ofType[events.UserRevoked](t, msgs, events.TypeUserRevoked)
	if len(users) != 2 || users[0].UserID != bobID || users[1].Reason != events.ReasonUserDisabled {
		t.Errorf("user.revoked facts: %+v", users)
	}
}

func must(r events.TokenReply, err error) events.TokenReply {
	if err != nil {
		panic(err)
	}
	return r
}

func claims(t testing.TB, m *nodetest.Manager, token string) session.Introspection {
	t.Helper()
	in, err := m.Manager().Introspect(bg, token)
	if err != nil || !in.Active {
		t.Fatalf("introspect: %+v %v", in, err)
	}
	return in
}

// A restart keeps every session; deleting the view and restarting rebuilds
// the same state.
func TestRestartAndRebuild(t *testing.T) {
	srv, m := start(t)
	mgr := m.Manager()
	m.AddUser(t, "alice", pw)
	var live []events.TokenReply
	for i := range 4 {
		r := login(t, m, "alice")
		if i%2 == 0 {
			r = must(mgr.Refresh(bg, r.RefreshToken))
		}
		live = append(live, r)
	}
	dead := login(t, m, "alice")
	if err := mgr.Logout(bg, session.LogoutRequest{RefreshToken: dead.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	_, _ = mgr.Login(bg, session.LoginRequest{Username: "alice", Password: "nope", IP: "198.51.100.7"})
	before, err := m.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	viewDir := m.Cfg.ViewDir
	if err := m.Close(bg); err != nil {
		t.Fatal(err)
	}

	// Restart on the same view: it resumes from its sequence.
	cfg := nodetest.Config(t)
	cfg.ViewDir = viewDir
	m2 := nodetest.StartConfig(t, srv, cfg)
	after, err := m2.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	compareDumps(t, "restart", before, after)
	if err := m2.Close(bg); err != nil {
		t.Fatal(err)
	}

	// Rebuild: the view is deleted and replayed from the stream.
	cfg.RebuildView = true
	m3 := nodetest.StartConfig(t, srv, cfg)
	rebuilt, err := m3.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	compareDumps(t, "rebuild", before, rebuilt)
	// And a brand-new view in another directory, as a second manager would.
	m4 := nodetest.Start(t, srv)
	fresh, err := m4.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	compareDumps(t, "fresh view", before, fresh)

	for _, r := range live {
		if !active(t, m3, r.AccessToken) {
			t.Fatal("session lost over restart")
		}
		if _, err := m3.Manager().Refresh(bg, r.RefreshToken); err != nil {
			t.Fatalf("refresh after rebuild: %v", err)
		}
	}
	if _, err := m3.Manager().Refresh(bg, dead.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("logged-out session came back: %v", err)
	}
}

func compareDumps(t testing.TB, what string, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: key %q = %q, want %q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: extra key %q", what, k)
		}
	}
}

func kidOf(t testing.TB, token string) string {
	t.Helper()
	h, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}
