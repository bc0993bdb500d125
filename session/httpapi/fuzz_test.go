package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session/httpapi"
)

// fuzzTarget is the public handler of one manager with the user alice,
// shared by every input of a fuzz target.
type fuzzTarget struct {
	h   http.Handler
	m   *nodetest.Manager
	uid string
}

func newFuzzTarget(f *testing.F) *fuzzTarget {
	f.Helper()
	m := nodetest.Start(f, natstest.Start(f))
	uid := m.AddUser(f, "alice", alicePassword)
	h := mustNew(f, m.Manager(), httpapi.Config{IntrospectTokens: []string{introspectToken}}).Public()
	return &fuzzTarget{h: h, m: m, uid: uid}
}

func (ft *fuzzTarget) serve(method, path, contentType string, body []byte) response {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+introspectToken)
	rec := httptest.NewRecorder()
	ft.h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// FuzzLoginHandler posts arbitrary bodies, with one of a few content
// types, to /login. It never panics, answers only documented statuses
// below 500, and every error is the JSON error shape.
func FuzzLoginHandler(f *testing.F) {
	ft := newFuzzTarget(f)
	f.Add([]byte(`{"username":"alice","password":"wrong password"}`), uint8(0))
	f.Add([]byte(`{"username":"alice","password":"x","clientId":"\u0000"}`), uint8(0))
	f.Add([]byte(`username=alice&password=x`), uint8(2))
	contentTypes := []string{ctJSON, "", ctForm, "application/json; charset=utf-8", "text/plain", "application/"}
	documented := map[int]bool{400: true, 401: true, 403: true, 413: true, 415: true, 429: true}
	f.Fuzz(func(t *testing.T, body []byte, ct uint8) {
		r := ft.serve("POST", "/login", contentTypes[int(ct)%len(contentTypes)], body)
		if r.status == http.StatusOK {
			if !bytes.Contains(body, []byte(alicePassword)) {
				t.Fatalf("login without alice's password succeeded: %s", r.body)
			}
			return
		}
		if !documented[r.status] {
			t.Fatalf("status %d (%s), want one of 400, 401, 403, 413, 415, 429", r.status, r.body)
		}
		checkErrorBody(t, r)
	})
}

// FuzzIntrospectHandler posts arbitrary tokens (form-encoded, or the raw
// body) to /introspect. It answers 200, 400 or 413; an active answer is
// only ever about alice's real session, whatever the token was mutated
// into, and an inactive one says nothing else.
func FuzzIntrospectHandler(f *testing.F) {
	ft := newFuzzTarget(f)
	r := ft.serve("POST", "/login", ctJSON, []byte(`{"username":"alice","password":"`+alicePassword+`"}`))
	var tk tokens
	if err := json.Unmarshal(r.body, &tk); r.status != http.StatusOK || err != nil {
		f.Fatalf("login: %d %s", r.status, r.body)
	}
	f.Add(tk.AccessToken, false)
	f.Add(tk.RefreshToken, false)
	f.Add("token="+tk.AccessToken+"&token=garbage", true)
	f.Fuzz(func(t *testing.T, token string, raw bool) {
		body := form(token)
		if raw {
			body = []byte(token)
		}
		r := ft.serve("POST", "/introspect", ctForm, body)
		switch r.status {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			checkErrorBody(t, r)
			return
		default:
			t.Fatalf("status %d (%s), want 200, 400 or 413", r.status, r.body)
		}
		var in map[string]any
		if err := json.Unmarshal(r.body, &in); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		switch in["active"] {
		case false:
			if len(in) != 1 {
				t.Fatalf("inactive answer says more: %s", r.body)
			}
		case true:
			if in["sub"] != ft.uid || in["sid"] != tk.SessionID {
				t.Fatalf("token %q is active for another subject or session: %s", token, r.body)
			}
		default:
			t.Fatalf("body %s has no boolean active", r.body)
		}
	})
}
