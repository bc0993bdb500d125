package schemas_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/schemas"
)

// commandSubjects lists every command subject of events/commands.go.
var commandSubjects = []string{
	events.SubjectLogin, events.SubjectRefresh, events.SubjectLogout,
	events.SubjectRevoke, events.SubjectSessions, events.SubjectJWKS,
}

var revocationReasons = []string{
	events.ReasonLogout, events.ReasonAdmin, events.ReasonRefreshReuse,
	events.ReasonIdleTimeout, events.ReasonAbsoluteTimeout,
	events.ReasonTokenRevocation, events.ReasonUserDisabled,
	events.ReasonKeyCompromised, events.ReasonPasswordChanged,
}

var failReasons = []string{events.FailBadCredentials, events.FailLocked, events.FailDisabled}

// readSchema returns the decoded schema file at path in schemas.FS.
func readSchema(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := schemas.FS.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func TestEverySchemaFileCompilesWithItsID(t *testing.T) {
	n := 0
	err := fs.WalkDir(schemas.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		n++
		s := readSchema(t, path)
		if s["$id"] != schemas.Base+path {
			t.Errorf("%s: $id = %v, want %s", path, s["$id"], schemas.Base+path)
		}
		if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %v", path, s["$schema"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 8+6+5+1 { // facts, requests, replies, the actor
		t.Errorf("%d schema files, want 20", n)
	}
	if schemas.Base != events.SchemaBase {
		t.Errorf("Base = %q, events.SchemaBase = %q", schemas.Base, events.SchemaBase)
	}
	// A validation that reaches the compiled set proves every file compiled.
	if err := schemas.ValidateErrorReply([]byte(`{"error":"x","code":400}`)); err != nil {
		t.Fatal(err)
	}
}

func TestEventTablesAgreeWithEvents(t *testing.T) {
	for _, typ := range events.Types() {
		path, ok := schemas.EventSchema(string(typ))
		if !ok {
			t.Errorf("%s: no schema", typ)
			continue
		}
		if path != events.SchemaFile(typ) {
			t.Errorf("%s: path %q, events.SchemaFile %q", typ, path, events.SchemaFile(typ))
		}
		if id := readSchema(t, path)["$id"]; id != typ.DataSchema() {
			t.Errorf("%s: $id %v, DataSchema %q", typ, id, typ.DataSchema())
		}
	}
	for _, bad := range []string{"", "io.sessionbus.session.created.v2", "session.created.v1"} {
		if _, ok := schemas.EventSchema(bad); ok {
			t.Errorf("EventSchema(%q) ok", bad)
		}
		if err := schemas.ValidateEvent(bad, []byte(`{}`)); !errors.Is(err, schemas.ErrUnknownSchema) {
			t.Errorf("ValidateEvent(%q) = %v, want ErrUnknownSchema", bad, err)
		}
	}
}

func TestCommandTablesAgreeWithEvents(t *testing.T) {
	for _, subj := range commandSubjects {
		req, reply, ok := schemas.CommandSchemas(subj)
		if !ok {
			t.Errorf("%s: no schemas", subj)
			continue
		}
		// The request schema is named after the request's CloudEvent type.
		typ := events.CommandType(subj)
		if want := "commands/" + strings.TrimPrefix(string(typ), "io.sessionbus.") + ".json"; req != want {
			t.Errorf("%s: request schema %q, want %q", subj, req, want)
		}
		for _, p := range []string{req, reply} {
			if _, err := fs.Stat(schemas.FS, p); err != nil {
				t.Errorf("%s: %v", subj, err)
			}
		}
	}
	for _, bad := range []string{"", "auth.cmd.nope", "auth.events.session.created.x"} {
		if _, _, ok := schemas.CommandSchemas(bad); ok {
			t.Errorf("CommandSchemas(%q) ok", bad)
		}
		if err := schemas.ValidateCommandRequest(bad, []byte(`{}`)); !errors.Is(err, schemas.ErrUnknownSchema) {
			t.Errorf("ValidateCommandRequest(%q) = %v", bad, err)
		}
		if err := schemas.ValidateCommandReply(bad, []byte(`{}`)); !errors.Is(err, schemas.ErrUnknownSchema) {
			t.Errorf("ValidateCommandReply(%q) = %v", bad, err)
		}
	}
}

// TestPropertiesMatchGoStructs compares each schema's properties and
// required list with the JSON names and omitempty tags of its Go struct.
func TestPropertiesMatchGoStructs(t *testing.T) {
	tests := []struct {
		name    string
		goType  any
		path    string
		pointer []string // to the object schema inside the file
	}{
		{"SessionCreated", events.SessionCreated{}, "session.created.v1.json", nil},
		{"SessionRefreshed", events.SessionRefreshed{}, "session.refreshed.v1.json", nil},
		{"SessionRevoked", events.SessionRevoked{}, "session.revoked.v1.json", nil},
		{"UserRevoked", events.UserRevoked{}, "user.revoked.v1.json", nil},
		{"TokenRevoked", events.TokenRevoked{}, "token.revoked.v1.json", nil},
		{"LoginFailed", events.LoginFailed{}, "login.failed.v1.json", nil},
		{"KeyRotated", events.KeyRotated{}, "key.rotated.v1.json", nil},
		{"KeyRevoked", events.KeyRevoked{}, "key.revoked.v1.json", nil},
		{"Actor", events.Actor{}, "actor.v1.json", nil},
		{"LoginRequest", events.LoginRequest{}, "commands/login.requested.v1.json", nil},
		{"RefreshRequest", events.RefreshRequest{}, "commands/refresh.requested.v1.json", nil},
		{"LogoutRequest", events.LogoutRequest{}, "commands/logout.requested.v1.json", nil},
		{"RevokeRequest", events.RevokeRequest{}, "commands/revoke.requested.v1.json", nil},
		{"SessionsRequest", events.SessionsRequest{}, "commands/sessions.requested.v1.json", nil},
		{"TokenReply", events.TokenReply{}, "commands/token.reply.v1.json", nil},
		{"SessionsReply", events.SessionsReply{}, "commands/sessions.reply.v1.json", nil},
		{"SessionInfo", events.SessionInfo{}, "commands/sessions.reply.v1.json", []string{"$defs", "session"}},
		{"ErrorData", events.ErrorData{}, "commands/error.reply.v1.json", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := readSchema(t, tc.path)
			for _, k := range tc.pointer {
				obj = obj[k].(map[string]any)
			}
			var wantProps, wantReq []string
			rt := reflect.TypeOf(tc.goType)
			for i := range rt.NumField() {
				name, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
				if name == "-" { // set by the manager, never on the wire
					continue
				}
				wantProps = append(wantProps, name)
				if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
					wantReq = append(wantReq, name)
				}
			}
			var gotProps, gotReq []string
			for k := range obj["properties"].(map[string]any) {
				gotProps = append(gotProps, k)
			}
			if r, ok := obj["required"].([]any); ok {
				for _, k := range r {
					gotReq = append(gotReq, k.(string))
				}
			}
			slices.Sort(wantProps)
			slices.Sort(gotProps)
			slices.Sort(wantReq)
			slices.Sort(gotReq)
			if !slices.Equal(gotProps, wantProps) {
				t.Errorf("properties %v, Go fields %v", gotProps, wantProps)
			}
			if !slices.Equal(gotReq, wantReq) {
				t.Errorf("required %v, Go fields without omitempty %v", gotReq, wantReq)
			}
		})
	}
}

func TestReasonsMatchConstants(t *testing.T) {
	// Revocation reasons are open (operators give their own) but every
	// reason sessionbus uses is listed and matches the pattern; failed-login
	// reasons are a closed enum.
	tests := []struct {
		path    string
		pointer []string
		key     string
		want    []string
	}{
		{"session.revoked.v1.json", []string{"properties", "reason"}, "examples", revocationReasons},
		{"user.revoked.v1.json", []string{"properties", "reason"}, "examples", revocationReasons},
		{"token.revoked.v1.json", []string{"properties", "reason"}, "examples", revocationReasons},
		{"key.revoked.v1.json", []string{"properties", "reason"}, "examples", revocationReasons},
		{"login.failed.v1.json", []string{"properties", "reason"}, "enum", failReasons},
		{"commands/revoke.requested.v1.json", []string{"properties", "reason"}, "examples", revocationReasons},
		{"commands/sessions.reply.v1.json", []string{"$defs", "session", "properties", "revoke_reason"}, "examples", revocationReasons},
	}
	for _, tc := range tests {
		obj := readSchema(t, tc.path)
		for _, k := range tc.pointer {
			obj = obj[k].(map[string]any)
		}
		var got []string
		for _, v := range obj[tc.key].([]any) {
			got = append(got, v.(string))
		}
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s %v: %s %v lacks %q", tc.path, tc.pointer, tc.key, got, w)
			}
			if tc.key == "examples" && !events.ValidReason(w) {
				t.Errorf("%q is not a valid reason", w)
			}
		}
	}
	for _, bad := range []string{"", "Logout", "a b", "x.y", strings.Repeat("a", 65)} {
		data := fmt.Sprintf(`{"session_id":"S1","user_id":"U1","reason":%q,"revoked_at":"2026-11-28T10:00:00Z","deny_until":"2026-11-28T10:05:00Z"}`, bad)
		if err := schemas.ValidateEvent(string(events.TypeSessionRevoked), []byte(data)); !errors.Is(err, schemas.ErrInvalid) {
			t.Errorf("reason %q accepted: %v", bad, err)
		}
	}
}

var (
	at       = time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
	sid      = events.NewID()
	uid      = "01JDA0000000000000000000US"
	jti      = events.NewID()
	kid      = "Yx3qK9lS8m2W-ZpQ_T0vNw"
	digest   = hexDigest("refresh-1")
	digest2  = hexDigest("refresh-2")
	acctKey  = accountKey("alice")
	userAgnt = "Mozilla/5.0 (X11; Linux x86_64) sessionbus-test/1.0"
)

func hexDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// accountKey is made the way the manager makes it: unpadded base64url of
// an HMAC-SHA-256.
func accountKey(name string) string {
	mac := hmac.New(sha256.New, []byte("manager secret"))
	mac.Write([]byte(name))
	return b64(mac.Sum(nil))
}

func ptr[T any](v T) *T { return &v }

// dataCase is a realistic value of a Go data struct and the same with its
// omitempty fields empty.
type dataCase struct {
	name    string
	key     string // event type or command subject
	full    any
	minimal any
}

func eventCases() []dataCase {
	return []dataCase{
		{"SessionCreated", string(events.TypeSessionCreated),
			events.SessionCreated{SessionID: sid, UserID: uid, AccountKey: acctKey, ClientID: "cli", IP: "2001:db8::1", UserAgent: userAgnt,
				RefreshDigest: digest, Generation: 1, AccessJTI: jti, AccessExpiresAt: at.Add(5 * time.Minute), KeyID: kid,
				CreatedAt: at, IdleExpiresAt: at.Add(24 * time.Hour), ExpiresAt: at.Add(30 * 24 * time.Hour),
				Actor: events.Actor{Kind: events.ActorUser, Name: uid, Via: "gw-1"}},
			events.SessionCreated{SessionID: sid, UserID: uid, AccountKey: acctKey,
				RefreshDigest: digest, Generation: 1, AccessJTI: jti, AccessExpiresAt: at.Add(5 * time.Minute), KeyID: kid,
				CreatedAt: at, IdleExpiresAt: at.Add(24 * time.Hour), ExpiresAt: at.Add(30 * 24 * time.Hour)}},
		{"SessionRefreshed", string(events.TypeSessionRefreshed),
			events.SessionRefreshed{SessionID: sid, UserID: uid, Generation: 2, PreviousRefreshDigest: digest, RefreshDigest: digest2,
				AccessJTI: jti, AccessExpiresAt: at.Add(5 * time.Minute), KeyID: kid, RefreshedAt: at,
				IdleExpiresAt: at.In(time.FixedZone("CEST", 2*3600)).Add(time.Hour)},
			nil},
		{"SessionRevoked", string(events.TypeSessionRevoked),
			events.SessionRevoked{SessionID: sid, UserID: uid, Reason: events.ReasonLogout, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute),
				Actor: events.Actor{Kind: events.ActorUser, Name: uid, Via: "web-1"}},
			events.SessionRevoked{SessionID: sid, UserID: uid, Reason: events.ReasonRefreshReuse, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute)}},
		{"UserRevoked", string(events.TypeUserRevoked),
			events.UserRevoked{UserID: uid, Reason: events.ReasonUserDisabled, RevokedBefore: at, DenyUntil: at.Add(5 * time.Minute),
				Actor: events.Actor{Kind: events.ActorAdmin, Name: "admin-token"}},
			events.UserRevoked{UserID: uid, Reason: events.ReasonUserDisabled, RevokedBefore: at, DenyUntil: at.Add(5 * time.Minute)}},
		{"TokenRevoked", string(events.TypeTokenRevoked),
			events.TokenRevoked{JTI: jti, SessionID: sid, UserID: uid, Reason: events.ReasonTokenRevocation, RevokedAt: at, DenyUntil: at.Add(4 * time.Minute),
				Actor: events.Actor{Kind: events.ActorUser, Name: uid}},
			events.TokenRevoked{JTI: jti, Reason: events.ReasonAdmin, RevokedAt: at, DenyUntil: at.Add(4 * time.Minute)}},
		{"LoginFailed", string(events.TypeLoginFailed),
			events.LoginFailed{UserID: uid, AccountKey: acctKey, Reason: events.FailLocked, ClientID: "cli", IP: "192.0.2.7", UserAgent: userAgnt,
				FailedAt: at, ThrottledUntil: ptr(at.Add(time.Minute))},
			events.LoginFailed{AccountKey: acctKey, Reason: events.FailBadCredentials, FailedAt: at}},
		{"KeyRotated", string(events.TypeKeyRotated),
			events.KeyRotated{KeyID: kid, Algorithm: "ES256", ActivatedAt: at, PreviousKeyID: "old-key_1", PreviousRetiresAt: ptr(at.Add(10 * time.Minute)),
				Actor: events.System},
			events.KeyRotated{KeyID: kid, Algorithm: "EdDSA", ActivatedAt: at}},
		{"KeyRevoked", string(events.TypeKeyRevoked),
			events.KeyRevoked{KeyID: kid, Reason: events.ReasonKeyCompromised, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute),
				Actor: events.Actor{Kind: events.ActorIdentity, Name: "local-operator", Role: "operator"}},
			events.KeyRevoked{KeyID: kid, Reason: "laptop_stolen", RevokedAt: at, DenyUntil: at.Add(5 * time.Minute)}},
	}
}

func requestCases() []dataCase {
	return []dataCase{
		{"LoginRequest", events.SubjectLogin,
			events.LoginRequest{Username: "alice@example.com", Password: "correct horse battery staple", ClientID: "cli", IP: "192.0.2.7", UserAgent: userAgnt},
			events.LoginRequest{Username: "alice", Password: "pw"}},
		{"RefreshRequest", events.SubjectRefresh, events.RefreshRequest{RefreshToken: strings.Repeat("r", 43)}, nil},
		{"LogoutRequest refresh", events.SubjectLogout, events.LogoutRequest{RefreshToken: "rt"}, nil},
		{"LogoutRequest access", events.SubjectLogout, events.LogoutRequest{AccessToken: "eyJ.a.b"}, nil},
		{"LogoutRequest both", events.SubjectLogout, events.LogoutRequest{RefreshToken: "rt", AccessToken: "eyJ.a.b"}, nil},
		{"RevokeRequest session", events.SubjectRevoke,
			events.RevokeRequest{SessionID: sid, Reason: events.ReasonAdmin}, events.RevokeRequest{SessionID: sid}},
		{"RevokeRequest user", events.SubjectRevoke, events.RevokeRequest{UserID: uid, Reason: events.ReasonUserDisabled}, nil},
		{"RevokeRequest jti", events.SubjectRevoke, events.RevokeRequest{JTI: jti}, nil},
		{"SessionsRequest", events.SubjectSessions, events.SessionsRequest{UserID: uid}, nil},
		{"JWKS request empty object", events.SubjectJWKS, struct{}{}, nil},
	}
}

func replyCases(t testing.TB) []dataCase {
	full := events.SessionInfo{SessionID: sid, UserID: uid, ClientID: "cli", IP: "192.0.2.7", UserAgent: userAgnt, Status: "revoked",
		Generation: 3, CreatedAt: at, LastRefreshedAt: ptr(at.Add(time.Hour)), IdleExpiresAt: at.Add(25 * time.Hour),
		ExpiresAt: at.Add(720 * time.Hour), RevokedAt: ptr(at.Add(2 * time.Hour)), RevokeReason: events.ReasonLogout}
	minimal := events.SessionInfo{SessionID: sid, UserID: uid, Status: "active", Generation: 1, CreatedAt: at,
		IdleExpiresAt: at.Add(24 * time.Hour), ExpiresAt: at.Add(720 * time.Hour)}
	token := events.TokenReply{AccessToken: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.sig", RefreshToken: strings.Repeat("r", 43),
		TokenType: "Bearer", ExpiresIn: 300, SessionID: sid}
	return []dataCase{
		{"TokenReply login", events.SubjectLogin, token, nil},
		{"TokenReply refresh", events.SubjectRefresh, token, nil},
		{"empty reply logout", events.SubjectLogout, struct{}{}, nil},
		{"empty reply revoke", events.SubjectRevoke, struct{}{}, nil},
		{"SessionsReply", events.SubjectSessions,
			events.SessionsReply{Sessions: []events.SessionInfo{full, minimal}},
			events.SessionsReply{Sessions: []events.SessionInfo{}}},
		{"JWKS", events.SubjectJWKS, jwks(t), nil},
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks returns a JWK Set of one real public key per algorithm, as
// decoded JSON objects so that tests can add members.
func jwks(t testing.TB) map[string]any {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := ec.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"keys": []any{
		map[string]any{"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(pt[1:33]), "y": b64(pt[33:])},
		map[string]any{"kty": "OKP", "kid": "ed-1", "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": b64(ed)},
		map[string]any{"kty": "RSA", "kid": "rs-1", "alg": "RS256", "use": "sig", "key_ops": []any{"verify"},
			"n": b64(rs.N.Bytes()), "e": b64(big.NewInt(int64(rs.E)).Bytes())},
	}}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRealisticDataValidates(t *testing.T) {
	type check struct {
		kind     string
		validate func(key string, data []byte) error
		cases    []dataCase
	}
	for _, c := range []check{
		{"event", schemas.ValidateEvent, eventCases()},
		{"request", schemas.ValidateCommandRequest, requestCases()},
		{"reply", schemas.ValidateCommandReply, replyCases(t)},
	} {
		for _, tc := range c.cases {
			t.Run(c.kind+"/"+tc.name, func(t *testing.T) {
				if err := c.validate(tc.key, mustJSON(t, tc.full)); err != nil {
					t.Errorf("full: %v", err)
				}
				if tc.minimal != nil {
					if err := c.validate(tc.key, mustJSON(t, tc.minimal)); err != nil {
						t.Errorf("omitempty fields empty: %v", err)
					}
				}
			})
		}
	}
	t.Run("every event type covered", func(t *testing.T) {
		seen := map[string]bool{}
		for _, tc := range eventCases() {
			seen[tc.key] = true
		}
		for _, typ := range events.Types() {
			if !seen[string(typ)] {
				t.Errorf("%s: no realistic value", typ)
			}
		}
	})
	t.Run("jwks request without data", func(t *testing.T) {
		for _, data := range []string{"", " ", "null"} {
			if err := schemas.ValidateCommandRequest(events.SubjectJWKS, []byte(data)); err != nil {
				t.Errorf("%q: %v", data, err)
			}
		}
	})
	t.Run("error reply", func(t *testing.T) {
		for _, d := range []events.ErrorData{{Error: "bad credentials", Code: 401}, {Error: "throttled", Code: 429, RetryAfterSeconds: 30}} {
			if err := schemas.ValidateErrorReply(mustJSON(t, d)); err != nil {
				t.Errorf("%+v: %v", d, err)
			}
		}
	})
	t.Run("fact with an added optional field", func(t *testing.T) {
		// Forward compatibility: a newer v1 writer may add fields.
		d := withField(t, eventCases()[2].full, "revoked_by", "ops")
		if err := schemas.ValidateEvent(string(events.TypeSessionRevoked), d); err != nil {
			t.Error(err)
		}
	})
}

// withField returns v as a JSON object with key set to value.
func withField(t testing.TB, v any, key string, value any) []byte {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(mustJSON(t, v), &m); err != nil {
		t.Fatal(err)
	}
	if value == nil {
		delete(m, key)
	} else {
		m[key] = value
	}
	return mustJSON(t, m)
}

func TestInvalidDataIsRejected(t *testing.T) {
	created := eventCases()[0].full
	failed := eventCases()[5].full
	login := requestCases()[0].full
	session := replyCases(t)[4].full.(events.SessionsReply).Sessions[0]
	keys := jwks(t)
	ecKey := keys["keys"].([]any)[0].(map[string]any)
	withKey := func(k map[string]any) map[string]any { return map[string]any{"keys": []any{k}} }
	// plus returns a copy of m with k set to v, or deleted when v is nil.
	plus := func(m map[string]any, k string, v any) map[string]any {
		c := maps.Clone(m)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	ev, req, rep := schemas.ValidateEvent, schemas.ValidateCommandRequest, schemas.ValidateCommandReply
	errReply := func(_ string, data []byte) error { return schemas.ValidateErrorReply(data) }
	sc, lf, sr := string(events.TypeSessionCreated), string(events.TypeLoginFailed), string(events.TypeSessionRevoked)
	revoked := eventCases()[2].full
	tests := []struct {
		name     string
		validate func(string, []byte) error
		key      string
		data     []byte
	}{
		{"missing required field", ev, sc, withField(t, created, "refresh_digest", nil)},
		{"wrong type", ev, sc, withField(t, created, "generation", "1")},
		{"negative generation", ev, sc, withField(t, created, "generation", -1)},
		{"bad date-time", ev, sc, withField(t, created, "created_at", "2026-11-28 10:00")},
		{"date-time without zone", ev, sc, withField(t, created, "expires_at", "2026-11-28T10:00:00")},
		{"digest not hex", ev, sc, withField(t, created, "refresh_digest", strings.Repeat("g", 64))},
		{"digest upper case", ev, sc, withField(t, created, "refresh_digest", strings.ToUpper(digest))},
		{"digest too short", ev, sc, withField(t, created, "refresh_digest", digest[:63])},
		{"account key not a digest", ev, lf, withField(t, failed, "account_key", "alice")},
		{"account key too long", ev, sc, withField(t, created, "account_key", acctKey+"A")},
		{"id not subject-safe", ev, sc, withField(t, created, "session_id", "a.b")},
		{"id too long", ev, sc, withField(t, created, "user_id", strings.Repeat("u", 129))},
		{"secret-named field in a fact", ev, sc, withField(t, created, "refresh_token", "rt")},
		{"password in a fact", ev, lf, withField(t, failed, "password", "pw")},
		{"bad revocation reason", ev, string(events.TypeSessionRevoked), withField(t, eventCases()[2].full, "reason", "Bored Now")},
		{"reason with a dot", ev, string(events.TypeKeyRevoked), withField(t, eventCases()[7].full, "reason", "key.lost")},
		{"bad fail reason", ev, lf, withField(t, failed, "reason", events.ReasonLogout)},
		{"actor of an unknown kind", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "root"})},
		{"actor without kind", ev, sr, withField(t, revoked, "actor", map[string]any{"name": "ops"})},
		{"actor not an object", ev, sr, withField(t, revoked, "actor", "admin")},
		{"identity actor without name", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "identity", "role": "operator"})},
		{"system actor with a name", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "system", "name": "admin"})},
		{"admin actor with a role", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "admin", "name": "a", "role": "operator"})},
		{"identity actor with via", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "identity", "name": "a", "role": "service", "via": "b"})},
		{"actor name with a space", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "admin", "name": "ops team"})},
		{"actor name with a control character", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "admin", "name": "ops\x1b[2J"})},
		{"actor name too long", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "admin", "name": strings.Repeat("a", 129)})},
		{"actor with an unknown member", ev, sr, withField(t, revoked, "actor", map[string]any{"kind": "admin", "name": "a", "token": "t"})},
		{"bad alg", ev, string(events.TypeKeyRotated), withField(t, eventCases()[6].full, "alg", "none")},
		{"not an object", ev, sc, []byte(`[]`)},
		{"no data", ev, sc, nil},
		{"not JSON", ev, sc, []byte(`{"session_id":`)},
		{"trailing garbage", ev, sc, append(mustJSON(t, created), " {}"...)},

		{"unknown field in a request", req, events.SubjectLogin, withField(t, login, "admin", true)},
		{"password too long", req, events.SubjectLogin, withField(t, login, "password", strings.Repeat("p", 1025))},
		{"username too long", req, events.SubjectLogin, withField(t, login, "username", strings.Repeat("u", 257))},
		{"empty password", req, events.SubjectLogin, withField(t, login, "password", "")},
		{"missing password", req, events.SubjectLogin, withField(t, login, "password", nil)},
		{"login without data", req, events.SubjectLogin, nil},
		{"refresh token too long", req, events.SubjectRefresh, mustJSON(t, events.RefreshRequest{RefreshToken: strings.Repeat("r", 4097)})},
		{"logout without token", req, events.SubjectLogout, []byte(`{}`)},
		{"revoke without target", req, events.SubjectRevoke, []byte(`{"reason":"admin"}`)},
		{"revoke two targets", req, events.SubjectRevoke, mustJSON(t, events.RevokeRequest{SessionID: sid, UserID: uid})},
		{"revoke bad reason", req, events.SubjectRevoke, mustJSON(t, events.RevokeRequest{JTI: jti, Reason: "why not"})},
		{"sessions bad user id", req, events.SubjectSessions, mustJSON(t, events.SessionsRequest{UserID: "alice@example.com"})},
		{"jwks request with a field", req, events.SubjectJWKS, []byte(`{"kid":"x"}`)},

		{"token reply not Bearer", rep, events.SubjectLogin, withField(t, replyCases(t)[0].full, "token_type", "MAC")},
		{"token reply without session", rep, events.SubjectRefresh, withField(t, replyCases(t)[0].full, "session_id", nil)},
		{"sessions null", rep, events.SubjectSessions, []byte(`{"sessions":null}`)},
		{"session bad status", rep, events.SubjectSessions, []byte(`{"sessions":[` + string(withField(t, session, "status", "zombie")) + `]}`)},
		{"session with a secret", rep, events.SubjectSessions, []byte(`{"sessions":[` + string(withField(t, session, "refresh_token", "rt")) + `]}`)},
		{"jwks key with d", rep, events.SubjectJWKS, mustJSON(t, withKey(plus(ecKey, "d", "c2VjcmV0")))},
		{"jwks key with p", rep, events.SubjectJWKS, mustJSON(t, withKey(plus(ecKey, "p", "c2VjcmV0")))},
		{"jwks symmetric key", rep, events.SubjectJWKS, mustJSON(t, withKey(map[string]any{"kty": "oct", "kid": "h", "alg": "HS256", "use": "sig", "k": "c2VjcmV0"}))},
		{"jwks alg none", rep, events.SubjectJWKS, mustJSON(t, withKey(plus(ecKey, "alg", "none")))},
		{"jwks alg does not fit kty", rep, events.SubjectJWKS, mustJSON(t, withKey(plus(ecKey, "alg", "RS256")))},
		{"jwks key for encryption", rep, events.SubjectJWKS, mustJSON(t, withKey(plus(ecKey, "use", "enc")))},
		{"jwks key without kid", rep, events.SubjectJWKS, mustJSON(t, withKey(plus(ecKey, "kid", nil)))},
		{"jwks small RSA key", rep, events.SubjectJWKS, mustJSON(t, withKey(map[string]any{"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig", "n": strings.Repeat("A", 171), "e": "AQAB"}))},
		{"jwks without keys", rep, events.SubjectJWKS, []byte(`{}`)},

		{"error reply code 200", errReply, "", []byte(`{"error":"ok","code":200}`)},
		{"error reply without message", errReply, "", []byte(`{"code":500}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.validate(tc.key, tc.data)
			if !errors.Is(err, schemas.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestErrorsDoNotEchoSecrets(t *testing.T) {
	pw := "hunter2-" + strings.Repeat("x", 1100)
	tests := []struct {
		name string
		data any
	}{
		{"long password", events.LoginRequest{Username: "alice", Password: pw}},
		{"password of the wrong type", map[string]any{"username": "alice", "password": map[string]any{"hunter2": pw}}},
		{"unknown field", map[string]any{"username": "alice", "password": "hunter2", "pin": "hunter2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := schemas.ValidateCommandRequest(events.SubjectLogin, mustJSON(t, tc.data))
			if !errors.Is(err, schemas.ErrInvalid) {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
}

// TestActorRulesAgree holds events.Actor.Valid, which the manager
// checks, to what actor.v1.json accepts, actor by actor.
func TestActorRulesAgree(t *testing.T) {
	for _, a := range []events.Actor{
		events.System,
		{Kind: events.ActorLocal},
		{Kind: events.ActorIdentity, Name: "local-operator", Role: "operator"},
		{Kind: events.ActorIdentity, Name: "anonymous"},
		{Kind: events.ActorAdmin, Name: "admin-token"},
		{Kind: events.ActorUser, Name: uid},
		{Kind: events.ActorUser, Name: uid, Via: "web-1"},
		{},
		{Kind: "root"},
		{Kind: events.ActorSystem, Name: "x"},
		{Kind: events.ActorLocal, Name: "x"},
		{Kind: events.ActorIdentity},
		{Kind: events.ActorIdentity, Name: "a", Via: "b"},
		{Kind: events.ActorAdmin},
		{Kind: events.ActorAdmin, Name: "a", Role: "operator"},
		{Kind: events.ActorUser, Name: uid, Role: "service"},
		{Kind: events.ActorUser},
		{Kind: events.ActorAdmin, Name: "a b"},
		{Kind: events.ActorAdmin, Name: "-a"},
		{Kind: events.ActorAdmin, Name: "a\n"},
		{Kind: events.ActorAdmin, Name: strings.Repeat("a", 129)},
		{Kind: events.ActorIdentity, Name: "a", Role: "op\u00e9rateur"},
	} {
		data := withField(t, eventCases()[2].minimal, "actor", a)
		err := schemas.ValidateEvent(string(events.TypeSessionRevoked), data)
		if a.Valid() != (err == nil) {
			t.Errorf("%+v: Valid() = %v, schema: %v", a, a.Valid(), err)
		}
	}
}
