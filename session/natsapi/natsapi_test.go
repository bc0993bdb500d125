package natsapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

const (
	alicePassword = "correct horse battery staple"
	clientSource  = "/test/natsapi"
)

// fixture is a running manager with the user alice, logged in once, and
// a client connection of its own.
type fixture struct {
	m      *nodetest.Manager
	nc     *nats.Conn
	stream jetstream.Stream
	uid    string
	login  events.TokenReply // alice's first session
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv)
	// Commands go from an operator's identity, as from the CLI; the
	// stream is read on the manager's.
	nc := srv.ConnectIdentity(natsauth.RoleOperator)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("stream %s: %v", events.StreamName, err)
	}
	f := &fixture{m: m, nc: nc, stream: stream}
	f.uid = m.AddUser(t, "alice", alicePassword)
	f.login = f.mustLogin(t, "alice", alicePassword)
	return f
}

// mustLogin logs in over NATS and returns the reply.
func (f *fixture) mustLogin(t testing.TB, user, password string) events.TokenReply {
	t.Helper()
	var rep events.TokenReply
	if err := events.Request(context.Background(), f.nc, events.SubjectLogin, clientSource,
		events.LoginRequest{Username: user, Password: password}, &rep); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	if rep.AccessToken == "" || !session.IsRefreshToken(rep.RefreshToken) || rep.SessionID == "" {
		t.Fatalf("login %s: reply %+v", user, rep)
	}
	return rep
}

// secrets are the values no error reply may echo.
func (f *fixture) secrets() []string {
	return []string{alicePassword, f.login.AccessToken, f.login.RefreshToken}
}

type state = nodetest.State

func (f *fixture) lastSeq(t testing.TB) uint64 { return f.m.LastSeq(t) }

func (f *fixture) sessions(t testing.TB, uid string) []events.SessionInfo {
	t.Helper()
	ss, err := f.m.Manager().Sessions(context.Background(), uid)
	if err != nil {
		t.Fatalf("sessions of %s: %v", uid, err)
	}
	return ss
}

func (f *fixture) session(t testing.TB, uid, sid string) events.SessionInfo {
	t.Helper()
	for _, s := range f.sessions(t, uid) {
		if s.SessionID == sid {
			return s
		}
	}
	t.Fatalf("session %s of %s not listed", sid, uid)
	return events.SessionInfo{}
}

func (f *fixture) state(t testing.TB) state { return f.m.State(t, f.uid) }

// unchanged fails unless nothing was published and alice's sessions are
// as they were.
func (f *fixture) unchanged(t testing.TB, before state) {
	t.Helper()
	f.m.Unchanged(t, f.uid, before)
}

// published returns the events stored after seq.
func (f *fixture) published(t testing.TB, after uint64) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*jetstream.RawStreamMsg
	for seq := after + 1; seq <= f.lastSeq(t); seq++ {
		m, err := f.stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func (f *fixture) request(t testing.TB, m *nats.Msg) *nats.Msg {
	t.Helper()
	resp, err := f.nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", m.Subject, err)
	}
	return resp
}

// wantError checks an error reply: the micro error headers with code,
// a non-empty message, the same code and message in the JSON body, and
// none of the secrets anywhere in it.
func wantError(t testing.TB, resp *nats.Msg, code int, secrets ...string) *events.CommandError {
	t.Helper()
	err := events.ReplyError(resp)
	if got := events.ErrorCode(err); got != code {
		t.Fatalf("code %d (headers %v, body %s), want %d", got, resp.Header, resp.Data, code)
	}
	var ce *events.CommandError
	errors.As(err, &ce)
	if ce.Message == "" {
		t.Errorf("empty %s header", events.HeaderServiceError)
	}
	var body events.ErrorData
	if err := json.Unmarshal(resp.Data, &body); err != nil {
		t.Errorf("error body %q is not JSON: %v", resp.Data, err)
	}
	// NATS header values are trimmed and have CR and LF replaced by
	// spaces; compare the body's message the same way (see
	// TestErrorMessageOneLine for the untrimmed body).
	if body.Code != code || headerValue(body.Error) != ce.Message {
		t.Errorf("error body %+v does not match the headers (%d %q)", body, code, ce.Message)
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(string(resp.Data), s) {
			t.Errorf("error body echoes a secret: %s", resp.Data)
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					t.Errorf("error header %s echoes a secret: %s", k, v)
				}
			}
		}
	}
	return ce
}

func headerValue(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(strings.TrimSpace(s))
}

// wantOK checks a reply without the micro error headers and decodes it.
func wantOK(t testing.TB, resp *nats.Msg, v any) {
	t.Helper()
	for _, h := range []string{events.HeaderServiceError, events.HeaderServiceErrorCode} {
		if got := resp.Header.Get(h); got != "" {
			t.Fatalf("valid command answered with %s: %q (body %s)", h, got, resp.Data)
		}
	}
	if v != nil {
		if err := json.Unmarshal(resp.Data, v); err != nil {
			t.Fatalf("reply %q: %v", resp.Data, err)
		}
	}
}

// binaryMsg is a binary-mode CloudEvent command with data as its body.
func binaryMsg(subject string, typ events.Type, data []byte) *nats.Msg {
	h := nats.Header{}
	h[events.HeaderSpecVersion] = []string{events.SpecVersion}
	h[events.HeaderID] = []string{events.NewID()}
	h[events.HeaderType] = []string{string(typ)}
	h[events.HeaderSource] = []string{clientSource}
	h[events.HeaderTime] = []string{time.Now().UTC().Format(time.RFC3339Nano)}
	h[events.HeaderContentType] = []string{events.ContentTypeJSON}
	return &nats.Msg{Subject: subject, Header: h, Data: data}
}

// structuredEvent is a structured-mode CloudEvent with data.
func structuredEvent(typ events.Type, data json.RawMessage) map[string]any {
	return map[string]any{
		"specversion": events.SpecVersion, "id": events.NewID(), "source": clientSource,
		"type": string(typ), "datacontenttype": events.ContentTypeJSON, "data": data,
	}
}

func structuredMsg(t testing.TB, subject string, ev map[string]any) *nats.Msg {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return structuredRaw(subject, b)
}

func structuredRaw(subject string, body []byte) *nats.Msg {
	h := nats.Header{}
	h[events.HeaderContentType] = []string{events.ContentTypeCloudEvents}
	return &nats.Msg{Subject: subject, Header: h, Data: body}
}

func without(ev map[string]any, key string) map[string]any {
	out := make(map[string]any, len(ev))
	for k, v := range ev {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func with(ev map[string]any, key string, v any) map[string]any {
	out := without(ev, key)
	out[key] = v
	return out
}

// withField adds an unknown member to a JSON object.
func withField(obj json.RawMessage, field string) json.RawMessage {
	s := strings.TrimSpace(string(obj))
	if s == "{}" {
		return json.RawMessage(`{"` + field + `":1}`)
	}
	return json.RawMessage(strings.TrimSuffix(s, "}") + `,"` + field + `":1}`)
}

// withDuplicate repeats the first member of a JSON object at its end,
// under the name rename makes of it.
func withDuplicate(t testing.TB, obj json.RawMessage, rename func(string) string) json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	var val json.RawMessage
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	key, err := dec.Token()
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&val); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(obj))
	return json.RawMessage(strings.TrimSuffix(s, "}") + `,"` + rename(key.(string)) + `":` + string(val) + `}`)
}

// structuredWithMember is ev in structured mode with a further member
// name: value written first, even if ev has it already.
func structuredWithMember(t testing.TB, subject string, ev map[string]any, name string, value any) *nats.Msg {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	v, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	return structuredRaw(subject, append([]byte(`{"`+name+`":`+string(v)+`,`), b[1:]...))
}

// padded is obj followed by enough JSON whitespace to pass 64 KiB: still
// valid JSON of the same value, so size is the only fault.
func padded(obj json.RawMessage) []byte {
	return append(append([]byte{}, obj...), strings.Repeat(" ", events.MaxEventSize+1)...)
}

// command describes one command subject for the table tests.
type command struct {
	subject string
	typ     events.Type
	// valid is data that the command would accept (and, for the writing
	// commands, act on): every bad request below wraps it, so that a
	// request that slipped through would change the state.
	valid json.RawMessage
	// wrongTypes are data of the wrong JSON type for this command.
	wrongTypes []json.RawMessage
	// strictData is false for jwks, which reads no data.
	strictData bool
}

func (f *fixture) commands(t testing.TB) []command {
	t.Helper()
	js := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	generic := []json.RawMessage{json.RawMessage(`[]`), json.RawMessage(`"text"`), json.RawMessage(`42`), json.RawMessage(`true`)}
	return []command{
		{events.SubjectLogin, events.TypeLoginRequested,
			js(events.LoginRequest{Username: "alice", Password: alicePassword}),
			append(generic, json.RawMessage(`{"username":"alice","password":12345678}`), json.RawMessage(`{"username":["alice"],"password":"x"}`)), true},
		{events.SubjectRefresh, events.TypeRefreshRequested,
			js(events.RefreshRequest{RefreshToken: f.login.RefreshToken}),
			append(generic, js(map[string]any{"refresh_token": []string{f.login.RefreshToken}})), true},
		{events.SubjectLogout, events.TypeLogoutRequested,
			js(events.LogoutRequest{RefreshToken: f.login.RefreshToken}),
			append(generic, js(map[string]any{"refresh_token": map[string]string{"t": f.login.RefreshToken}})), true},
		{events.SubjectRevoke, events.TypeRevokeRequested,
			js(events.RevokeRequest{SessionID: f.login.SessionID}),
			append(generic, js(map[string]any{"session_id": 1}), js(map[string]any{"session_id": f.login.SessionID, "reason": 7})), true},
		{events.SubjectSessions, events.TypeSessionsRequested,
			js(events.SessionsRequest{UserID: f.uid}),
			append(generic, js(map[string]any{"user_id": false})), true},
		{events.SubjectJWKS, events.TypeJWKSRequested, json.RawMessage(`{}`), nil, false},
	}
}

// otherType is the request type of the next command in the list: a type
// that does not fit subject.
func otherType(cmds []command, i int) events.Type { return cmds[(i+1)%len(cmds)].typ }

type badCase struct {
	name string
	msg  *nats.Msg
	// wantMsg, when set, must occur in the error message.
	wantMsg string
}

func (f *fixture) badCases(t testing.TB, cmds []command, i int) []badCase {
	t.Helper()
	c := cmds[i]
	ev := structuredEvent(c.typ, c.valid)
	cases := []badCase{
		{name: "body not JSON", msg: &nats.Msg{Subject: c.subject, Data: append([]byte("not json "), c.valid...)}},
		{name: "body truncated JSON", msg: &nats.Msg{Subject: c.subject, Data: []byte(`{"specversion":"1.0","id":`)}},
		{name: "body JSON array", msg: &nats.Msg{Subject: c.subject, Data: []byte(`[` + string(c.valid) + `]`)}},
		{name: "body JSON string", msg: &nats.Msg{Subject: c.subject, Data: []byte(`"` + c.subject + `"`)}},
		{name: "structured without id", msg: structuredMsg(t, c.subject, without(ev, "id"))},
		{name: "structured without source", msg: structuredMsg(t, c.subject, without(ev, "source"))},
		{name: "structured without type", msg: structuredMsg(t, c.subject, without(ev, "type"))},
		{name: "structured without specversion", msg: structuredMsg(t, c.subject, without(ev, "specversion"))},
		{name: "structured with specversion 0.3", msg: structuredMsg(t, c.subject, with(ev, "specversion", "0.3"))},
		{name: "structured with id a number", msg: structuredMsg(t, c.subject, with(ev, "id", 17))},
		{name: "structured with XML datacontenttype", msg: structuredMsg(t, c.subject, with(ev, "datacontenttype", "application/xml"))},
		{name: "structured without content-type header and without id", msg: func() *nats.Msg {
			m := structuredMsg(t, c.subject, without(ev, "id"))
			m.Header = nil
			return m
		}()},
		{name: "plain JSON data without ce- headers", msg: func() *nats.Msg {
			m := &nats.Msg{Subject: c.subject, Header: nats.Header{}, Data: c.valid}
			m.Header[events.HeaderContentType] = []string{events.ContentTypeJSON}
			return m
		}()},
		{name: "binary with ce-specversion 0.3", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			m.Header[events.HeaderSpecVersion] = []string{"0.3"}
			return m
		}()},
		{name: "binary with ce-specversion 2.0", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			m.Header[events.HeaderSpecVersion] = []string{"2.0"}
			return m
		}()},
		{name: "binary without ce-id", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			delete(m.Header, events.HeaderID)
			return m
		}()},
		{name: "binary without ce-source", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			delete(m.Header, events.HeaderSource)
			return m
		}()},
		{name: "binary without ce-type", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			delete(m.Header, events.HeaderType)
			return m
		}()},
		{name: "binary with ce-time not RFC 3339", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			m.Header[events.HeaderTime] = []string{"yesterday"}
			return m
		}()},
		{name: "binary with text/plain content-type", msg: func() *nats.Msg {
			m := binaryMsg(c.subject, c.typ, c.valid)
			m.Header[events.HeaderContentType] = []string{"text/plain"}
			return m
		}()},
		{name: "binary with data not JSON", msg: binaryMsg(c.subject, c.typ, append([]byte("{ "), c.valid...))},
		{name: "binary with trailing data", msg: binaryMsg(c.subject, c.typ, append(append([]byte{}, c.valid...), []byte(` {}`)...))},
		{name: "type of another command", msg: binaryMsg(c.subject, otherType(cmds, i), c.valid)},
		{name: "structured with type of another command", msg: structuredMsg(t, c.subject, with(ev, "type", string(otherType(cmds, i))))},
		{name: "unknown type version", msg: binaryMsg(c.subject, events.Type(strings.TrimSuffix(string(c.typ), ".v1")+".v2"), c.valid)},
		{name: "unknown type", msg: binaryMsg(c.subject, "com.example.unknown.v1", c.valid)},
		{name: "fact type", msg: binaryMsg(c.subject, events.TypeSessionCreated, c.valid)},
		{name: "binary over 64 KiB", msg: binaryMsg(c.subject, c.typ, padded(c.valid)), wantMsg: "too large"},
		{name: "structured over 64 KiB", msg: func() *nats.Msg {
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			return structuredRaw(c.subject, padded(b))
		}(), wantMsg: "too large"},
		{name: "structured with data twice", msg: structuredWithMember(t, c.subject, ev, "data", json.RawMessage(c.valid)), wantMsg: "duplicate key"},
		{name: "structured with type twice", msg: structuredWithMember(t, c.subject, ev, "type", c.typ), wantMsg: "duplicate key"},
		{name: "structured with TYPE and type", msg: structuredWithMember(t, c.subject, ev, "TYPE", c.typ), wantMsg: "duplicate key"},
	}
	if c.strictData {
		cases = append(cases,
			badCase{name: "binary without data", msg: binaryMsg(c.subject, c.typ, nil)},
			badCase{name: "data with unknown field", msg: binaryMsg(c.subject, c.typ, withField(c.valid, "admin"))},
			badCase{name: "structured data with unknown field", msg: structuredMsg(t, c.subject, with(ev, "data", withField(c.valid, "admin")))},
			badCase{name: "data with a key twice", msg: binaryMsg(c.subject, c.typ, withDuplicate(t, c.valid, strings.Clone)), wantMsg: "duplicate key"},
			badCase{name: "data with a key in two cases", msg: binaryMsg(c.subject, c.typ, withDuplicate(t, c.valid, strings.ToUpper)), wantMsg: "duplicate key"},
			badCase{name: "structured data with a key in two cases", msg: structuredMsg(t, c.subject, with(ev, "data", withDuplicate(t, c.valid, strings.ToUpper))), wantMsg: "duplicate key"},
		)
		for j, d := range c.wrongTypes {
			cases = append(cases, badCase{name: "data of wrong JSON type " + string(rune('a'+j)), msg: binaryMsg(c.subject, c.typ, d)})
		}
	}
	return cases
}

// TestMalformedCommands sends malformed JSON and CloudEvents, wrong and
// unknown types, bad data and oversized bodies to every command subject:
// each gets 400 and changes nothing.
func TestMalformedCommands(t *testing.T) {
	f := newFixture(t)
	cmds := f.commands(t)
	for i, c := range cmds {
		t.Run(c.subject, func(t *testing.T) {
			for _, bc := range f.badCases(t, cmds, i) {
				t.Run(bc.name, func(t *testing.T) {
					before := f.state(t)
					ce := wantError(t, f.request(t, bc.msg), 400, f.secrets()...)
					if bc.wantMsg != "" && !strings.Contains(ce.Message, bc.wantMsg) {
						t.Errorf("message %q does not say %q", ce.Message, bc.wantMsg)
					}
					f.unchanged(t, before)
				})
			}
		})
	}
	// The valid data of the table is accepted when well wrapped, so the
	// 400s above came from the wrapping. (The writing commands are checked
	// by the other tests; these two change nothing.)
	for _, c := range cmds {
		if c.subject != events.SubjectSessions && c.subject != events.SubjectJWKS {
			continue
		}
		for name, m := range map[string]*nats.Msg{
			"binary":     binaryMsg(c.subject, c.typ, c.valid),
			"structured": structuredMsg(t, c.subject, structuredEvent(c.typ, c.valid)),
		} {
			t.Run(c.subject+"/valid "+name, func(t *testing.T) {
				before := f.state(t)
				wantOK(t, f.request(t, m), nil)
				f.unchanged(t, before)
			})
		}
	}
}

// TestErrorMessageOneLine: the body's message is the header's message,
// one clean line.
func TestErrorMessageOneLine(t *testing.T) {
	f := newFixture(t)
	ev := without(structuredEvent(events.TypeJWKSRequested, json.RawMessage(`{}`)), "specversion")
	resp := f.request(t, structuredMsg(t, events.SubjectJWKS, ev))
	ce := wantError(t, resp, 400)
	var body events.ErrorData
	if err := json.Unmarshal(resp.Data, &body); err != nil {
		t.Fatal(err)
	}
	if body.Error != ce.Message || strings.ContainsAny(body.Error, "\r\n") {
		t.Errorf("body message %q, header message %q", body.Error, ce.Message)
	}
}

// TestLoginBadInput: malformed credentials are 400 before any hashing
// and publish no login.failed.
func TestLoginBadInput(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("p", 2000)
	for _, tc := range []struct {
		name string
		req  events.LoginRequest
	}{
		{"empty username", events.LoginRequest{Password: alicePassword}},
		{"300-byte username", events.LoginRequest{Username: strings.Repeat("a", 300), Password: alicePassword}},
		{"username with NUL", events.LoginRequest{Username: "ali\x00ce", Password: alicePassword}},
		{"username of spaces", events.LoginRequest{Username: "   ", Password: alicePassword}},
		{"empty password", events.LoginRequest{Username: "alice"}},
		{"2000-byte password", events.LoginRequest{Username: "alice", Password: long}},
		{"client_id too long", events.LoginRequest{Username: "alice", Password: alicePassword, ClientID: strings.Repeat("c", 129)}},
		{"user_agent with control character", events.LoginRequest{Username: "alice", Password: alicePassword, UserAgent: "curl\x07"}},
		{"ip not an address", events.LoginRequest{Username: "alice", Password: alicePassword, IP: "999.1.1.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := events.NewCommand(events.SubjectLogin, clientSource, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			before := f.state(t)
			wantError(t, f.request(t, m), 400, append(f.secrets(), long)...)
			f.unchanged(t, before)
		})
	}
}

// TestLoginCredentials: a wrong password and an unknown user get the same
// 401 and message and publish exactly one login.failed each; a disabled
// user with the right password gets 403.
func TestLoginCredentials(t *testing.T) {
	f := newFixture(t)
	login := func(user, password string) *nats.Msg {
		m, err := events.NewCommand(events.SubjectLogin, clientSource, events.LoginRequest{Username: user, Password: password})
		if err != nil {
			t.Fatal(err)
		}
		return f.request(t, m)
	}
	// failed checks one login.failed fact on the subject of uid.
	failed := func(t *testing.T, before state, uid, password string) {
		t.Helper()
		msgs := f.published(t, before.Seq)
		if len(msgs) != 1 {
			t.Fatalf("%d events published, want exactly one login.failed", len(msgs))
		}
		m := msgs[0]
		if want := "auth.events.login.failed." + uid; m.Subject != want {
			t.Errorf("subject %s, want %s", m.Subject, want)
		}
		if got := m.Header.Get(events.HeaderType); got != string(events.TypeLoginFailed) {
			t.Errorf("ce-type %q, want %s", got, events.TypeLoginFailed)
		}
		if strings.Contains(string(m.Data), password) {
			t.Errorf("login.failed stores the password: %s", m.Data)
		}
		var after []byte
		after, _ = json.Marshal(f.sessions(t, f.uid))
		if string(after) != before.Sessions {
			t.Errorf("sessions changed:\nbefore %s\nafter  %s", before.Sessions, after)
		}
	}

	const wrong = "not the password at all"
	before := f.state(t)
	wrongPw := wantError(t, login("alice", wrong), 401, wrong, alicePassword)
	if wrongPw.Message != "invalid username or password" {
		t.Errorf("wrong password: message %q", wrongPw.Message)
	}
	failed(t, before, f.uid, wrong)

	before = f.state(t)
	resp := login("mallory", wrong)
	unknown := wantError(t, resp, 401, wrong)
	if unknown.Message != wrongPw.Message {
		t.Errorf("unknown user: message %q, wrong password: %q: they must not differ", unknown.Message, wrongPw.Message)
	}
	if strings.Contains(string(resp.Data), "mallory") {
		t.Errorf("reply names the user: %s", resp.Data)
	}
	failed(t, before, events.UnknownUser, wrong)

	const bobPassword = "bobs own secret password"
	bob := f.m.AddUser(t, "bob", bobPassword)
	if _, err := f.m.Manager().SetDisabled(context.Background(), "bob", true); err != nil {
		t.Fatal(err)
	}
	before = f.state(t)
	disabled := wantError(t, login("bob", bobPassword), 403, bobPassword)
	if disabled.Message == wrongPw.Message {
		t.Errorf("disabled: message %q is the bad-credentials one", disabled.Message)
	}
	failed(t, before, bob, bobPassword)
	if ss := f.sessions(t, bob); len(ss) != 0 {
		t.Errorf("disabled user got sessions: %+v", ss)
	}
}

// TestRefreshAndLogoutTokens: wrong, foreign, swapped and ended tokens are
// refused with 401 and publish nothing; a refresh token acts on its own
// session only.
func TestRefreshAndLogoutTokens(t *testing.T) {
	f := newFixture(t)
	a := f.login
	b := f.mustLogin(t, "alice", alicePassword)
	req := func(subject string, data any) *nats.Msg {
		m, err := events.NewCommand(subject, clientSource, data)
		if err != nil {
			t.Fatal(err)
		}
		return f.request(t, m)
	}
	secrets := []string{alicePassword, a.AccessToken, a.RefreshToken, b.AccessToken, b.RefreshToken}

	unknownRefresh := session.RefreshTokenPrefix + strings.Repeat("A", 43)
	for _, tc := range []struct {
		name    string
		subject string
		data    any
		code    int
	}{
		{"refresh: garbage", events.SubjectRefresh, events.RefreshRequest{RefreshToken: "garbage"}, 401},
		{"refresh: unknown token of the right shape", events.SubjectRefresh, events.RefreshRequest{RefreshToken: unknownRefresh}, 401},
		{"refresh: access token as refresh token", events.SubjectRefresh, events.RefreshRequest{RefreshToken: a.AccessToken}, 401},
		{"refresh: refresh token with a trailing character", events.SubjectRefresh, events.RefreshRequest{RefreshToken: a.RefreshToken + "A"}, 401},
		{"logout: garbage refresh token", events.SubjectLogout, events.LogoutRequest{RefreshToken: "garbage"}, 401},
		{"logout: unknown refresh token", events.SubjectLogout, events.LogoutRequest{RefreshToken: unknownRefresh}, 401},
		{"logout: access token as refresh token", events.SubjectLogout, events.LogoutRequest{RefreshToken: a.AccessToken}, 401},
		{"logout: refresh token as access token", events.SubjectLogout, events.LogoutRequest{AccessToken: a.RefreshToken}, 401},
		{"logout: alg none access token", events.SubjectLogout, events.LogoutRequest{AccessToken: algNone(t, a.AccessToken)}, 401},
		{"logout: access token with tampered payload", events.SubjectLogout, events.LogoutRequest{AccessToken: tamperSID(t, a.AccessToken, b.SessionID)}, 401},
		{"logout: both tokens", events.SubjectLogout, events.LogoutRequest{RefreshToken: a.RefreshToken, AccessToken: a.AccessToken}, 400},
		{"logout: no token", events.SubjectLogout, events.LogoutRequest{}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			ce := wantError(t, req(tc.subject, tc.data), tc.code, secrets...)
			if tc.code == 401 && ce.Message != "invalid token" {
				t.Errorf("message %q, want %q", ce.Message, "invalid token")
			}
			f.unchanged(t, before)
		})
	}

	t.Run("refresh token of A acts on A only", func(t *testing.T) {
		bBefore := f.session(t, f.uid, b.SessionID)
		var a2 events.TokenReply
		wantOK(t, req(events.SubjectRefresh, events.RefreshRequest{RefreshToken: a.RefreshToken}), &a2)
		if a2.SessionID != a.SessionID || a2.RefreshToken == a.RefreshToken {
			t.Fatalf("refresh of A: %+v", a2)
		}
		if got := f.session(t, f.uid, b.SessionID); !sameSession(got, bBefore) {
			t.Errorf("refreshing A changed B:\nbefore %+v\nafter  %+v", bBefore, got)
		}
		// Once its successor was used, reusing A's rotated token revokes
		// A, and only A.
		wantOK(t, req(events.SubjectRefresh, events.RefreshRequest{RefreshToken: a2.RefreshToken}), &a2)
		if ce := wantError(t, req(events.SubjectRefresh, events.RefreshRequest{RefreshToken: a.RefreshToken}), 401, secrets...); ce.Message != session.RefreshReuseMessage {
			t.Errorf("reuse answered %q, want %q", ce.Message, session.RefreshReuseMessage)
		}
		if got := f.session(t, f.uid, a.SessionID); got.Status != session.StatusRevoked || got.RevokeReason != events.ReasonRefreshReuse {
			t.Errorf("A after reuse: status %s reason %q", got.Status, got.RevokeReason)
		}
		if got := f.session(t, f.uid, b.SessionID); !sameSession(got, bBefore) {
			t.Errorf("reuse of A's token changed B:\nbefore %+v\nafter  %+v", bBefore, got)
		}
		// A's newest token now belongs to a revoked session.
		before := f.state(t)
		wantError(t, req(events.SubjectRefresh, events.RefreshRequest{RefreshToken: a2.RefreshToken}), 401, a2.RefreshToken)
		f.unchanged(t, before)
	})

	t.Run("logged-out session", func(t *testing.T) {
		wantOK(t, req(events.SubjectLogout, events.LogoutRequest{RefreshToken: b.RefreshToken}), nil)
		if got := f.session(t, f.uid, b.SessionID); got.Status != session.StatusRevoked || got.RevokeReason != events.ReasonLogout {
			t.Fatalf("B after logout: %+v", got)
		}
		before := f.state(t)
		ce := wantError(t, req(events.SubjectRefresh, events.RefreshRequest{RefreshToken: b.RefreshToken}), 401, b.RefreshToken)
		if ce.Message != "invalid token" {
			t.Errorf("message %q", ce.Message)
		}
		f.unchanged(t, before)
		// Logging out again is idempotent and publishes nothing.
		wantOK(t, req(events.SubjectLogout, events.LogoutRequest{RefreshToken: b.RefreshToken}), nil)
		wantOK(t, req(events.SubjectLogout, events.LogoutRequest{AccessToken: b.AccessToken}), nil)
		f.unchanged(t, before)
	})
}

func sameSession(a, b events.SessionInfo) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// algNone re-heads a real token with alg none and drops the signature.
func algNone(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	return h + "." + parts[1] + "."
}

// tamperSID rewrites the sid claim of a real token, keeping its signature.
func tamperSID(t testing.TB, token, sid string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sid"] = sid
	raw, err = json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
}

// TestRevokeBadInput: admin revocations without exactly one
// subject-safe id are 400, unknown targets 404; nothing is published.
func TestRevokeBadInput(t *testing.T) {
	f := newFixture(t)
	sid := f.login.SessionID
	for _, tc := range []struct {
		name string
		req  events.RevokeRequest
		code int
	}{
		{"no target", events.RevokeRequest{}, 400},
		{"only a reason", events.RevokeRequest{Reason: "admin"}, 400},
		{"session and user", events.RevokeRequest{SessionID: sid, UserID: f.uid}, 400},
		{"session and jti", events.RevokeRequest{SessionID: sid, JTI: events.NewID()}, 400},
		{"all three", events.RevokeRequest{SessionID: sid, UserID: f.uid, JTI: events.NewID()}, 400},
		{"session id with a dot", events.RevokeRequest{SessionID: sid + ".x"}, 400},
		{"session id with >", events.RevokeRequest{SessionID: ">"}, 400},
		{"session id a wildcard subject", events.RevokeRequest{SessionID: "auth.events.>"}, 400},
		{"user id with *", events.RevokeRequest{UserID: "*"}, 400},
		{"user id with a dot", events.RevokeRequest{UserID: f.uid + ".>"}, 400},
		{"jti with a space", events.RevokeRequest{JTI: "a b"}, 400},
		{"id of 129 characters", events.RevokeRequest{SessionID: strings.Repeat("A", 129)}, 400},
		{"reason with upper case and spaces", events.RevokeRequest{SessionID: sid, Reason: "Because I Said So"}, 400},
		{"reason of 65 characters", events.RevokeRequest{SessionID: sid, Reason: strings.Repeat("r", 65)}, 400},
		{"reason with a control character", events.RevokeRequest{SessionID: sid, Reason: "admin\n"}, 400},
		{"unknown session", events.RevokeRequest{SessionID: events.NewID()}, 404},
		{"unknown jti", events.RevokeRequest{JTI: events.NewID()}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := events.NewCommand(events.SubjectRevoke, clientSource, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			before := f.state(t)
			wantError(t, f.request(t, m), tc.code, f.secrets()...)
			f.unchanged(t, before)
		})
	}
	t.Run("unknown user", func(t *testing.T) {
		m, err := events.NewCommand(events.SubjectRevoke, clientSource, events.RevokeRequest{UserID: events.NewID()})
		if err != nil {
			t.Fatal(err)
		}
		before := f.state(t)
		wantError(t, f.request(t, m), 404)
		f.unchanged(t, before)
	})
	t.Run("valid revoke", func(t *testing.T) {
		m, err := events.NewCommand(events.SubjectRevoke, clientSource, events.RevokeRequest{SessionID: sid, Reason: "test_reason"})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, f.request(t, m), nil)
		if got := f.session(t, f.uid, sid); got.Status != session.StatusRevoked || got.RevokeReason != "test_reason" {
			t.Errorf("after revoke: %+v", got)
		}
	})
}

// TestReadCommands covers the commands that change nothing, on one
// manager: sessions, jwks and the micro service's discovery.
func TestReadCommands(t *testing.T) {
	f := newFixture(t)
	t.Run("sessions", func(t *testing.T) { testSessionsBadInput(t, f) })
	t.Run("jwks", func(t *testing.T) { testJWKS(t, f) })
	t.Run("discovery", func(t *testing.T) { testServiceDiscovery(t, f) })
}

// testSessionsBadInput: a user id that is not subject-safe is 400.
func testSessionsBadInput(t *testing.T, f *fixture) {
	for _, id := range []string{"", "a.b", ">", "*", strings.Repeat("u", 129)} {
		m, err := events.NewCommand(events.SubjectSessions, clientSource, events.SessionsRequest{UserID: id})
		if err != nil {
			t.Fatal(err)
		}
		before := f.state(t)
		wantError(t, f.request(t, m), 400)
		f.unchanged(t, before)
	}
	m, err := events.NewCommand(events.SubjectSessions, clientSource, events.SessionsRequest{UserID: f.uid})
	if err != nil {
		t.Fatal(err)
	}
	var rep events.SessionsReply
	wantOK(t, f.request(t, m), &rep)
	if len(rep.Sessions) != 1 || rep.Sessions[0].SessionID != f.login.SessionID {
		t.Fatalf("sessions %+v", rep)
	}
	for _, s := range f.secrets() {
		if b, _ := json.Marshal(rep); strings.Contains(string(b), s) {
			t.Errorf("sessions reply holds a secret: %s", b)
		}
	}
}

// testJWKS: an empty request and a jwks.requested CloudEvent get the key
// set; another type gets 400.
func testJWKS(t *testing.T, f *fixture) {
	type jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	for name, m := range map[string]*nats.Msg{
		"empty body": {Subject: events.SubjectJWKS},
		"binary":     binaryMsg(events.SubjectJWKS, events.TypeJWKSRequested, nil),
		"structured": structuredMsg(t, events.SubjectJWKS, structuredEvent(events.TypeJWKSRequested, json.RawMessage(`{}`))),
	} {
		t.Run(name, func(t *testing.T) {
			var set jwks
			wantOK(t, f.request(t, m), &set)
			if len(set.Keys) == 0 {
				t.Fatal("no keys")
			}
			for _, k := range set.Keys {
				if k["kid"] == "" || k["d"] != nil {
					t.Errorf("key %v: no kid, or a private member", k)
				}
			}
		})
	}
	for _, typ := range []events.Type{events.TypeLoginRequested, "io.sessionbus.jwks.requested.v2", events.TypeKeyRotated} {
		t.Run("type "+string(typ), func(t *testing.T) {
			before := f.state(t)
			wantError(t, f.request(t, binaryMsg(events.SubjectJWKS, typ, nil)), 400)
			f.unchanged(t, before)
		})
	}
}

// testServiceDiscovery: the micro service answers $SRV.PING and
// $SRV.INFO under its contract name with every command endpoint, and a
// subject that is not a command has no responder.
func testServiceDiscovery(t *testing.T, f *fixture) {
	ping, err := micro.ControlSubject(micro.PingVerb, events.ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.nc.Request(ping, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", ping, err)
	}
	var p micro.Ping
	if err := json.Unmarshal(resp.Data, &p); err != nil || p.Name != "sessionbus" || p.ID == "" {
		t.Fatalf("ping reply %s: %v", resp.Data, err)
	}
	// $SRV.PING without a name finds it too.
	if resp, err = f.nc.Request("$SRV.PING", nil, 5*time.Second); err != nil || !strings.Contains(string(resp.Data), `"sessionbus"`) {
		t.Fatalf("$SRV.PING: %v %s", err, resp.Data)
	}

	infoSubj, err := micro.ControlSubject(micro.InfoVerb, events.ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	if resp, err = f.nc.Request(infoSubj, nil, 5*time.Second); err != nil {
		t.Fatalf("%s: %v", infoSubj, err)
	}
	var info micro.Info
	if err := json.Unmarshal(resp.Data, &info); err != nil {
		t.Fatalf("info %s: %v", resp.Data, err)
	}
	got := map[string]string{}
	for _, ep := range info.Endpoints {
		got[ep.Subject] = ep.QueueGroup
	}
	for _, s := range []string{events.SubjectLogin, events.SubjectRefresh, events.SubjectLogout, events.SubjectRevoke, events.SubjectSessions, events.SubjectJWKS} {
		if qg, ok := got[s]; !ok || qg != events.QueueGroup {
			t.Errorf("endpoint %s: listed %v, queue group %q (want %q)", s, ok, qg, events.QueueGroup)
		}
	}

	if _, err := f.nc.Request("auth.cmd.bogus", []byte(`{}`), 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("auth.cmd.bogus: %v, want no responders", err)
	}
	// A valid login (the fixture's) has no error header either.
	m, err := events.NewCommand(events.SubjectLogin, clientSource, events.LoginRequest{Username: "alice", Password: alicePassword})
	if err != nil {
		t.Fatal(err)
	}
	var rep events.TokenReply
	wantOK(t, f.request(t, m), &rep)
	if rep.TokenType != "Bearer" || rep.ExpiresIn <= 0 || rep.SessionID == "" {
		t.Errorf("login reply %+v", rep)
	}
}
