package tokenclient_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

// authServer stands in for the session manager's login, refresh and
// logout, over NATS (nats.go/micro, the manager's service name and queue
// group) and HTTP, with refresh-token rotation and reuse detection; and
// for a protected service that accepts its live access tokens.
type authServer struct {
	t   testing.TB
	ttl time.Duration

	mu        sync.Mutex
	users     map[string]string   // username → password
	sessions  map[string]*session // by id
	byRefresh map[string]string   // current refresh token → session id
	rotated   map[string]string   // refresh tokens already used → session id
	access    map[string]string   // access token → session id
	expires   map[string]time.Time

	logins, refreshes, logouts atomic.Int64
	down                       atomic.Bool                   // answer 503
	refreshGate                atomic.Pointer[chan struct{}] // refreshes wait until it is closed

	nc   *nats.Conn
	http *httptest.Server
}

type session struct {
	user    string
	revoked bool
}

func newAuthServer(t testing.TB, srv *natstest.Server, ttl time.Duration) *authServer {
	t.Helper()
	a := &authServer{
		t: t, ttl: ttl,
		users:    map[string]string{"svc-orders": "correct horse"},
		sessions: map[string]*session{}, byRefresh: map[string]string{}, rotated: map[string]string{},
		access: map[string]string{}, expires: map[string]time.Time{},
	}
	a.nc = srv.Connect(nats.Timeout(10 * time.Second))
	svc, err := micro.AddService(a.nc, micro.Config{Name: events.ServiceName, Version: "0.0.1", QueueGroup: events.QueueGroup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	for subject, h := range map[string]micro.HandlerFunc{
		events.SubjectLogin: a.natsLogin, events.SubjectRefresh: a.natsRefresh, events.SubjectLogout: a.natsLogout,
	} {
		if err := svc.AddEndpoint(strings.ReplaceAll(subject, ".", "-"), h, micro.WithEndpointSubject(subject)); err != nil {
			t.Fatal(err)
		}
	}
	// The server has the subscriptions before anyone sends a command.
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", a.httpLogin)
	mux.HandleFunc("POST /refresh", a.httpRefresh)
	mux.HandleFunc("POST /logout", a.httpLogout)
	mux.HandleFunc("/resource", a.resource)
	a.http = httptest.NewServer(mux)
	t.Cleanup(a.http.Close)
	return a
}

func secret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// issue is called with mu held.
func (a *authServer) issue(sid string) events.TokenReply {
	access, refresh := "at-"+secret(), "rt-"+secret()
	a.access[access] = sid
	a.expires[access] = time.Now().Add(a.ttl)
	a.byRefresh[refresh] = sid
	return events.TokenReply{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int(a.ttl / time.Second), SessionID: sid}
}

func (a *authServer) login(user, pass string) (events.TokenReply, int) {
	a.logins.Add(1)
	if a.down.Load() {
		return events.TokenReply{}, http.StatusServiceUnavailable
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.users[user]; !ok || p != pass {
		return events.TokenReply{}, http.StatusUnauthorized
	}
	sid := events.NewID()
	a.sessions[sid] = &session{user: user}
	return a.issue(sid), http.StatusOK
}

// holdRefreshes makes refreshes wait until release is called.
func (a *authServer) holdRefreshes() (release func()) {
	g := make(chan struct{})
	a.refreshGate.Store(&g)
	return func() { close(g) }
}

func (a *authServer) refresh(rt string) (events.TokenReply, int) {
	a.refreshes.Add(1)
	if g := a.refreshGate.Load(); g != nil {
		<-*g
	}
	if a.down.Load() {
		return events.TokenReply{}, http.StatusServiceUnavailable
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if sid, reused := a.rotated[rt]; reused {
		a.sessions[sid].revoked = true // refresh_reuse
		return events.TokenReply{}, http.StatusUnauthorized
	}
	sid, ok := a.byRefresh[rt]
	if !ok || a.sessions[sid].revoked {
		return events.TokenReply{}, http.StatusUnauthorized
	}
	delete(a.byRefresh, rt)
	a.rotated[rt] = sid
	return a.issue(sid), http.StatusOK
}

func (a *authServer) logout(rt string) int {
	a.logouts.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if sid, ok := a.byRefresh[rt]; ok {
		a.sessions[sid].revoked = true
	}
	return http.StatusNoContent
}

func (a *authServer) revoke(sid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions[sid].revoked = true
}

// valid returns the session of a live access token.
func (a *authServer) valid(access string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sid, ok := a.access[access]
	return sid, ok && !a.sessions[sid].revoked && time.Now().Before(a.expires[access])
}

// NATS side.

func natsData(r micro.Request, want events.Type, v any) bool {
	e, err := events.FromMsg(&nats.Msg{Header: nats.Header(r.Headers()), Data: r.Data()})
	if err != nil || e.Type != want || e.DataAs(v) != nil {
		_ = r.Error("400", "malformed request", nil)
		return false
	}
	return true
}

func natsReply(r micro.Request, reply any, code int) {
	if code/100 != 2 {
		body, _ := json.Marshal(events.ErrorData{Error: http.StatusText(code), Code: code, RetryAfterSeconds: retryAfter(code)})
		_ = r.Error(strconv.Itoa(code), http.StatusText(code), body)
		return
	}
	_ = r.RespondJSON(reply)
}

func retryAfter(code int) int {
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		return 1
	}
	return 0
}

func (a *authServer) natsLogin(r micro.Request) {
	var d events.LoginRequest
	if natsData(r, events.TypeLoginRequested, &d) {
		reply, code := a.login(d.Username, d.Password)
		natsReply(r, reply, code)
	}
}

func (a *authServer) natsRefresh(r micro.Request) {
	var d events.RefreshRequest
	if natsData(r, events.TypeRefreshRequested, &d) {
		reply, code := a.refresh(d.RefreshToken)
		natsReply(r, reply, code)
	}
}

func (a *authServer) natsLogout(r micro.Request) {
	var d events.LogoutRequest
	if natsData(r, events.TypeLogoutRequested, &d) {
		natsReply(r, struct{}{}, a.logout(d.RefreshToken))
	}
}

// HTTP side (the manager's HTTP contract).

type httpTokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	TokenType    string `json:"tokenType"`
	ExpiresIn    int    `json:"expiresIn"`
	SessionID    string `json:"sessionId"`
}

func httpReply(w http.ResponseWriter, r events.TokenReply, code int) {
	if code/100 != 2 {
		if s := retryAfter(code); s > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(s))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": http.StatusText(code)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(httpTokens{r.AccessToken, r.RefreshToken, r.TokenType, r.ExpiresIn, r.SessionID})
}

func (a *authServer) httpLogin(w http.ResponseWriter, r *http.Request) {
	var d struct{ Username, Password string }
	if json.NewDecoder(r.Body).Decode(&d) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	reply, code := a.login(d.Username, d.Password)
	httpReply(w, reply, code)
}

func (a *authServer) httpRefresh(w http.ResponseWriter, r *http.Request) {
	var d struct{ Token string }
	if json.NewDecoder(r.Body).Decode(&d) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	reply, code := a.refresh(d.Token)
	httpReply(w, reply, code)
}

func (a *authServer) httpLogout(w http.ResponseWriter, r *http.Request) {
	var d struct{ Token string }
	if json.NewDecoder(r.Body).Decode(&d) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.WriteHeader(a.logout(d.Token))
}

// resource is a protected service: 200 echoing the body with a live
// access token, 401 otherwise.
func (a *authServer) resource(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sid, ok := a.valid(tok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-Session", sid)
	body := make([]byte, 0, 64)
	buf := make([]byte, 512)
	for {
		n, err := r.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	_, _ = w.Write(body)
}
