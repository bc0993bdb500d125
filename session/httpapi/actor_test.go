package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/poll"
	"github.com/sessionbus/sessionbus/schemas"
)

// clock is the manager's clock in these tests: it moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// fact is a stored fact's type and data, with its actor.
type fact struct {
	typ    events.Type
	id     string // the subject's last token
	reason string
	actor  events.Actor
	data   []byte
}

// factsAfter returns the facts stored after seq whose subject ends in
// one of ids (every fact when ids is empty).
func (f *fixture) factsAfter(t testing.TB, seq uint64, ids ...string) []fact {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []fact
	for s := seq + 1; s <= f.lastSeq(t); s++ {
		m, err := f.stream.GetMsg(ctx, s)
		if err != nil {
			t.Fatalf("get %d: %v", s, err)
		}
		e, err := events.FromMsg(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil {
			t.Fatalf("fact %d: %v", s, err)
		}
		_, _, id, _ := events.ParseSubject(m.Subject)
		if len(ids) > 0 && !contains(ids, id) {
			continue
		}
		var d struct {
			Reason string       `json:"reason"`
			Actor  events.Actor `json:"actor"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatalf("fact %d: %v", s, err)
		}
		out = append(out, fact{typ: e.Type, id: id, reason: d.Reason, actor: d.Actor, data: e.Data})
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// connectAs connects to the bus as a new identity of the given name and
// role.
func (f *fixture) connectAs(t testing.TB, name string, role natsauth.Role) *nats.Conn {
	t.Helper()
	opts, err := natsauth.Options(f.srv.Creds(name, role))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(f.srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func command(t testing.TB, nc *nats.Conn, subject string, req, reply any) {
	t.Helper()
	if err := events.Request(context.Background(), nc, subject, "/test/actor", req, reply); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
}

func (f *fixture) mustAdmin(t testing.TB, method, path string, body any, want int) {
	t.Helper()
	var b []byte
	ct := ""
	if body != nil {
		b, ct = mustJSON(t, body), ctJSON
	}
	if r := f.adminDo(t, method, path, ct, b); r.status != want {
		t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
	}
}

func (f *fixture) refresh(t testing.TB, token string) response {
	t.Helper()
	return do(t, "POST", f.public+"/refresh", ctJSON, mustJSON(t, map[string]string{"token": token}))
}

// Every fact the manager publishes on request names who asked for it
// (login.failed aside, which names its carrier in via): the bus identity
// the NATS server stated, the admin credential by its name, the
// session's own user (via the identity that carried its request), or the
// system for what the manager decides alone. Each is valid by its schema.
func TestEveryFactNamesItsActor(t *testing.T) {
	clk := &clock{now: time.Now()}
	f := newFixture(t, func(c *node.Config) {
		c.Now = clk.Now
		c.Session.IdleTimeout, c.Session.AbsoluteTimeout = time.Hour, 3*time.Hour
	})
	ops := f.connectAs(t, "ops-ann", natsauth.RoleOperator)
	web := f.connectAs(t, "web-1", natsauth.RoleService)
	gw := f.connectAs(t, "gw-7", natsauth.RoleGateway)
	opsActor := events.Actor{Kind: events.ActorIdentity, Name: "ops-ann", Role: "operator"}
	adminActor := events.Actor{Kind: events.ActorAdmin, Name: "ops-console"}
	user := func(via string) events.Actor { return events.Actor{Kind: events.ActorUser, Name: f.uid, Via: via} }
	kid := func() string {
		ks, err := f.m.Manager().ListKeys(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			if k.Status == "active" {
				return k.KID
			}
		}
		t.Fatal("no active key")
		return ""
	}

	type want struct {
		typ    events.Type
		reason string
		actor  events.Actor
	}
	tests := []struct {
		name string
		// do runs the flow and returns the ids of the facts to check.
		do   func(t *testing.T) []string
		want []want
	}{
		{"first signing key", func(t *testing.T) []string { return []string{kid()} },
			[]want{{events.TypeKeyRotated, "", events.System}}},
		{"login and refresh over HTTP", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			if r := f.refresh(t, s.RefreshToken); r.status != http.StatusOK {
				t.Fatalf("refresh: %d %s", r.status, r.body)
			}
			return []string{s.SessionID}
		}, []want{{events.TypeSessionCreated, "", user("")}, {events.TypeSessionRefreshed, "", user("")}}},
		{"login and refresh over NATS through a gateway and a service", func(t *testing.T) []string {
			var s events.TokenReply
			command(t, gw, events.SubjectLogin, events.LoginRequest{Username: "alice", Password: alicePassword, IP: "203.0.113.9"}, &s)
			command(t, web, events.SubjectRefresh, events.RefreshRequest{RefreshToken: s.RefreshToken}, &events.TokenReply{})
			return []string{s.SessionID}
		}, []want{{events.TypeSessionCreated, "", user("gw-7")}, {events.TypeSessionRefreshed, "", user("web-1")}}},
		{"admin revoke over NATS", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			command(t, ops, events.SubjectRevoke, events.RevokeRequest{SessionID: s.SessionID, Reason: "laptop_stolen"}, nil)
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRevoked, "laptop_stolen", opsActor}}},
		{"admin revoke of an access token over NATS", func(t *testing.T) []string {
			jti := claimsOf(t, f.mustLogin(t, "alice", alicePassword).AccessToken)["jti"].(string)
			command(t, ops, events.SubjectRevoke, events.RevokeRequest{JTI: jti}, nil)
			return []string{jti}
		}, []want{{events.TypeTokenRevoked, events.ReasonAdmin, opsActor}}},
		{"admin revoke over HTTP", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			f.mustAdmin(t, "POST", "/admin/revoke", events.RevokeRequest{SessionID: s.SessionID}, http.StatusOK)
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRevoked, events.ReasonAdmin, adminActor}}},
		{"admin revoke of a user over HTTP", func(t *testing.T) []string {
			f.mustAdmin(t, "POST", "/admin/revoke", events.RevokeRequest{UserID: f.uid, Reason: "offboarded"}, http.StatusOK)
			return []string{f.uid}
		}, []want{{events.TypeUserRevoked, "offboarded", adminActor}}},
		{"logout over NATS through a service", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			command(t, web, events.SubjectLogout, events.LogoutRequest{RefreshToken: s.RefreshToken}, nil)
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRevoked, events.ReasonLogout, user("web-1")}}},
		{"logout over HTTP", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			if r := do(t, "POST", f.public+"/logout", ctJSON, mustJSON(t, map[string]string{"token": s.AccessToken})); r.status != http.StatusNoContent {
				t.Fatalf("logout: %d %s", r.status, r.body)
			}
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRevoked, events.ReasonLogout, user("")}}},
		{"RFC 7009 revocation of an access token", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			if r := do(t, "POST", f.public+"/revoke", ctForm, form(s.AccessToken)); r.status != http.StatusOK {
				t.Fatalf("revoke: %d %s", r.status, r.body)
			}
			return []string{claimsOf(t, s.AccessToken)["jti"].(string)}
		}, []want{{events.TypeTokenRevoked, events.ReasonTokenRevocation, user("")}}},
		{"refresh-token reuse", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			var next tokens
			if err := json.Unmarshal(f.refresh(t, s.RefreshToken).body, &next); err != nil || next.RefreshToken == "" {
				t.Fatalf("refresh: %v", err)
			}
			if r := f.refresh(t, next.RefreshToken); r.status != http.StatusOK { // the successor is used
				t.Fatalf("refresh: %d %s", r.status, r.body)
			}
			if r := f.refresh(t, s.RefreshToken); r.status != http.StatusUnauthorized {
				t.Fatalf("reuse: %d %s", r.status, r.body)
			}
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRefreshed, "", user("")}, {events.TypeSessionRefreshed, "", user("")},
			{events.TypeSessionRevoked, events.ReasonRefreshReuse, events.System}}},
		{"user disabled over NATS", func(t *testing.T) []string {
			command(t, ops, events.SubjectUsersDisable, events.UserRequest{User: "alice"}, nil)
			command(t, ops, events.SubjectUsersEnable, events.UserRequest{User: "alice"}, nil) // no fact
			return []string{f.uid}
		}, []want{{events.TypeUserRevoked, events.ReasonUserDisabled, opsActor}}},
		{"password changed over HTTP", func(t *testing.T) []string {
			f.mustAdmin(t, "PUT", "/admin/users/alice/password", map[string]string{"password": alicePassword}, http.StatusNoContent)
			return []string{f.uid}
		}, []want{{events.TypeUserRevoked, events.ReasonPasswordChanged, adminActor}}},
		{"key rotated over NATS", func(t *testing.T) []string {
			old := kid()
			command(t, ops, events.SubjectKeysRotate, events.KeyRequest{}, nil)
			return []string{old, kid()}
		}, []want{{events.TypeKeyRotated, "", opsActor}}},
		{"active key revoked over HTTP with a reason", func(t *testing.T) []string {
			old := kid()
			f.mustAdmin(t, "POST", "/admin/keys/"+old+"/revoke", map[string]string{"reason": "hsm_breach"}, http.StatusOK)
			return []string{old, kid()}
		}, []want{{events.TypeKeyRotated, "", adminActor}, {events.TypeKeyRevoked, "hsm_breach", adminActor}}},
		{"key revoked over NATS", func(t *testing.T) []string {
			old := kid()
			command(t, ops, events.SubjectKeysRotate, events.KeyRequest{}, nil)
			seq := f.lastSeq(t)
			command(t, ops, events.SubjectKeysRevoke, events.KeyRequest{KID: old}, nil)
			if got := f.factsAfter(t, seq); len(got) != 1 {
				t.Fatalf("revoking a retired key published %d facts, want 1", len(got))
			}
			return []string{old}
		}, []want{{events.TypeKeyRevoked, events.ReasonKeyCompromised, opsActor}}},
		{"idle timeout", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			clk.Advance(time.Hour + time.Minute)
			f.waitRevoked(t, s.SessionID)
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRevoked, events.ReasonIdleTimeout, events.System}}},
		{"absolute timeout", func(t *testing.T) []string {
			s := f.mustLogin(t, "alice", alicePassword)
			for i := range 3 { // refreshed, it outlives the idle timeout…
				clk.Advance(50 * time.Minute)
				var next tokens
				r := f.refresh(t, s.RefreshToken)
				if err := json.Unmarshal(r.body, &next); err != nil || r.status != http.StatusOK {
					t.Fatalf("refresh %d: %d %s", i, r.status, r.body)
				}
				s.RefreshToken = next.RefreshToken
			}
			clk.Advance(time.Hour) // …but not its absolute one
			f.waitRevoked(t, s.SessionID)
			return []string{s.SessionID}
		}, []want{{events.TypeSessionRefreshed, "", user("")}, {events.TypeSessionRefreshed, "", user("")},
			{events.TypeSessionRefreshed, "", user("")}, {events.TypeSessionRevoked, events.ReasonAbsoluteTimeout, events.System}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seq := f.lastSeq(t)
			if tc.name == "first signing key" {
				seq = 0
			}
			ids := tc.do(t)
			var got []fact
			for _, g := range f.factsAfter(t, seq, ids...) {
				if g.typ != events.TypeSessionCreated || strings.HasPrefix(tc.name, "login") {
					got = append(got, g)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d facts %+v, want %+v", len(got), got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.typ != w.typ || g.reason != w.reason || g.actor != w.actor {
					t.Errorf("fact %d: %s reason %q actor %+v, want %s reason %q actor %+v", i, g.typ, g.reason, g.actor, w.typ, w.reason, w.actor)
				}
				if err := schemas.ValidateEvent(string(g.typ), g.data); err != nil {
					t.Errorf("fact %d: %v", i, err)
				}
				if !g.actor.Valid() {
					t.Errorf("fact %d (%s) has no valid actor: %s", i, g.typ, g.data)
				}
			}
		})
	}
}

// waitRevoked waits until the manager's view has sid revoked.
func (f *fixture) waitRevoked(t testing.TB, sid string) {
	t.Helper()
	poll.Until(t, "session "+sid+" revoked in the view", func() bool {
		s, err := f.m.View().Session(context.Background(), sid)
		return err == nil && !s.RevokedAt.IsZero()
	})
}

// The actor is what the transport proved, never what the request says.
// An attacker holding an operator's or a service's credential, or the
// admin one, cannot make a fact name someone else: a stated actor is
// refused as an unknown field, and a forged Nats-Request-Info header is
// replaced by the NATS server's own.
func TestActorCannotBeForged(t *testing.T) {
	f := newFixture(t)
	ops := f.connectAs(t, "ops-mallory", natsauth.RoleOperator)
	web := f.connectAs(t, "web-2", natsauth.RoleService)
	gw := f.connectAs(t, "gw-1", natsauth.RoleGateway)
	forged := `{"name_tag":"local-operator","tags":["` + natsauth.RoleTag + `operator"]}`
	lastFact := func(t *testing.T, id string) fact {
		t.Helper()
		got := f.factsAfter(t, 0, id)
		if len(got) == 0 {
			t.Fatalf("no fact about %s", id)
		}
		return got[len(got)-1]
	}
	// send sends a command with data as its body (raw JSON), adding
	// headers; it returns the command's error reply, or nil.
	send := func(t *testing.T, nc *nats.Conn, subject string, data []byte, headers ...string) error {
		t.Helper()
		m, err := events.NewCommand(subject, "/test/forge", json.RawMessage(data))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			m.Header.Set(headers[i], headers[i+1])
		}
		resp, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return events.ReplyError(resp)
	}

	t.Run("an actor in a NATS revoke", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		before := f.state(t)
		err := send(t, ops, events.SubjectRevoke, []byte(`{"session_id":"`+s.SessionID+`","actor":{"kind":"system"}}`))
		if events.ErrorCode(err) != http.StatusBadRequest {
			t.Fatalf("revoke with an actor: %v, want 400", err)
		}
		f.unchanged(t, before)
	})
	t.Run("a forged Nats-Request-Info on a revoke", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		if err := send(t, ops, events.SubjectRevoke, mustJSON(t, events.RevokeRequest{SessionID: s.SessionID}), "Nats-Request-Info", forged); err != nil {
			t.Fatal(err)
		}
		want := events.Actor{Kind: events.ActorIdentity, Name: "ops-mallory", Role: "operator"}
		if g := lastFact(t, s.SessionID); g.actor != want {
			t.Fatalf("actor %+v, want %+v", g.actor, want)
		}
	})
	t.Run("a service's forged Nats-Request-Info on a logout", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		if err := send(t, web, events.SubjectLogout, mustJSON(t, events.LogoutRequest{RefreshToken: s.RefreshToken}), "Nats-Request-Info", forged); err != nil {
			t.Fatal(err)
		}
		want := events.Actor{Kind: events.ActorUser, Name: f.uid, Via: "web-2"}
		if g := lastFact(t, s.SessionID); g.actor != want {
			t.Fatalf("actor %+v, want %+v", g.actor, want)
		}
	})
	t.Run("a gateway's stated address", func(t *testing.T) {
		var s events.TokenReply
		command(t, gw, events.SubjectLogin, events.LoginRequest{Username: "alice", Password: alicePassword, IP: "203.0.113.9", UserAgent: "local-operator"}, &s)
		command(t, gw, events.SubjectLogout, events.LogoutRequest{AccessToken: s.AccessToken}, nil)
		want := events.Actor{Kind: events.ActorUser, Name: f.uid, Via: "gw-1"}
		if g := lastFact(t, s.SessionID); g.actor != want {
			t.Fatalf("actor %+v, want %+v", g.actor, want)
		}
	})
	t.Run("an actor in an admin HTTP body", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		before := f.state(t)
		for _, path := range []string{"/admin/revoke", "/admin/keys/rotate"} {
			body := []byte(`{"session_id":"` + s.SessionID + `","actor":{"kind":"system"}}`)
			if path != "/admin/revoke" {
				body = []byte(`{"actor":{"kind":"system"}}`)
			}
			wantError(t, f.adminDo(t, "POST", path, ctJSON, body), http.StatusBadRequest)
		}
		f.unchanged(t, before)
	})
	t.Run("identity headers on an admin request", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		r := f.adminDo(t, "POST", "/admin/revoke", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: s.SessionID}),
			"X-Forwarded-User", "root", "X-Actor", "system", "Nats-Request-Info", forged)
		if r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		want := events.Actor{Kind: events.ActorAdmin, Name: "ops-console"}
		if g := lastFact(t, s.SessionID); g.actor != want {
			t.Fatalf("actor %+v, want %+v", g.actor, want)
		}
	})
	t.Run("no credential in a fact", func(t *testing.T) {
		for _, g := range f.factsAfter(t, 0) {
			if strings.Contains(string(g.data), adminToken) {
				t.Fatalf("the admin credential is in a fact: %s", g.data)
			}
		}
	})
}
