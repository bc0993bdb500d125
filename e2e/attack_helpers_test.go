package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

// The identities an attacker may hold: none (an anonymous connection,
// which any process on the host can try), and one credential of each role
// that is handed out to programs other than the manager.
var attackerKinds = []string{"none", "service", "audit", "gateway", "operator"}

// bus is the embedded server, its manager and a log of every fact
// published on it, shared by the attacks so that the last one can check
// that the stream still holds everything.
type bus struct {
	t     *testing.T // the test that owns the bus: what it starts lives as long
	srv   *natstest.Server
	m     *nodetest.Manager // the running manager (replaced by restartManager)
	facts *factLog
	names atomic.Int64
}

func newBus(t *testing.T) *bus {
	t.Helper()
	b := &bus{t: t, srv: natstest.Start(t)}
	// Listening before the manager publishes its first fact.
	b.facts = watchFacts(t, b.srv)
	b.m = nodetest.Start(t, b.srv, func(c *node.Config) {
		c.HTTPAddr = "127.0.0.1:0"
		// A throttled address stays throttled for the whole test, so a
		// failure that was counted shows as 429, however slow the host.
		c.Session.Throttle.BaseDelay = time.Hour
		c.Session.Throttle.MaxDelay = time.Hour
	})
	return b
}

// name returns a fresh identity or consumer name.
func (b *bus) name(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, b.names.Add(1))
}

// restartManager closes the manager and starts it again on the same view
// and configuration, as a restarted `serve` does. The new manager lives
// as long as the bus.
func (b *bus) restartManager(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := b.m.Close(ctx); err != nil {
		t.Fatalf("close manager: %v", err)
	}
	cfg := b.m.Cfg
	cfg.Registry = nil
	b.m = nodetest.StartConfig(b.t, b.srv, cfg)
}

// consumerNames lists the consumers of a stream, as the setup role sees
// them.
func consumerNames(t *testing.T, js jetstream.JetStream, stream string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	l := s.ConsumerNames(ctx)
	var names []string
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("consumers of %s: %v", stream, err)
	}
	slices.Sort(names)
	return names
}

// deleteConsumers deletes, as the setup role, the consumers of a stream
// that match.
func deleteConsumers(t *testing.T, js jetstream.JetStream, stream string, match func(*jetstream.ConsumerInfo) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	l := s.ListConsumers(ctx)
	var del []string
	for c := range l.Info() {
		if match(c) {
			del = append(del, c.Name)
		}
	}
	if err := l.Err(); err != nil {
		t.Fatalf("consumers of %s: %v", stream, err)
	}
	for _, n := range del {
		if err := s.DeleteConsumer(ctx, n); err != nil {
			t.Fatalf("delete consumer %s: %v", n, err)
		}
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream, stream string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info %s: %v", stream, err)
	}
	return info
}

// configOf is what of a stream's configuration an attack must not change.
func configOf(t *testing.T, info *jetstream.StreamInfo) string {
	t.Helper()
	b, err := json.Marshal(info.Config)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// factLog records every fact published on the bus, as an operator
// identity (which may read the whole stream) receives them live.
type factLog struct {
	mu  sync.Mutex
	ids map[string]bool // ce-id of each fact (a retried publish is stored once)
	rev map[string]bool // those AUTH_REVOCATIONS sources
}

func watchFacts(t *testing.T, srv *natstest.Server) *factLog {
	t.Helper()
	f := &factLog{ids: map[string]bool{}, rev: map[string]bool{}}
	nc := srv.ConnectIdentity(natsauth.RoleOperator)
	sub, err := nc.Subscribe(events.SubjectAll, func(m *nats.Msg) {
		f.mu.Lock()
		defer f.mu.Unlock()
		id := m.Header.Get(events.HeaderMsgID)
		f.ids[id] = true
		if matches(events.SubjectRevocations, m.Subject) || matches(events.SubjectKeys, m.Subject) {
			f.rev[id] = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *factLog) counts() (all, revocations int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ids), len(f.rev)
}

// matches reports whether a NATS subject matches a pattern with * and >.
func matches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// attacker is a connection of one identity, used to do what that
// identity should not be able to do.
type attacker struct {
	kind  string
	role  natsauth.Role
	nc    *nats.Conn
	inbox string // the identity's own inbox prefix
	pub   string // its public key
	errs  atomic.Int64
}

// connectAttacker connects as an identity of kind. For "none" it checks
// that the server refuses an anonymous connection, and returns nil: that
// attacker gets no further.
func connectAttacker(t *testing.T, b *bus, kind string) *attacker {
	t.Helper()
	if kind == "none" {
		nc, err := nats.Connect(b.srv.ClientURL(), nats.NoReconnect(), nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
			t.Fatal("the server accepted an anonymous connection")
		}
		return nil
	}
	role, err := natsauth.ParseRole(kind)
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{kind: kind, role: role}
	a.nc, a.pub = connectCreds(t, b.srv.ClientURL(), b.srv.Creds(b.name("attacker-"+kind), role),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) { a.errs.Add(1) }))
	a.inbox = natsauth.InboxPrefix(a.pub)
	return a
}

// connectCreds connects with a .creds file as a program given
// --nats-creds does; it returns the connection and the identity's public
// key.
func connectCreds(t *testing.T, url, path string, opts ...nats.Option) (*nats.Conn, string) {
	t.Helper()
	co, err := natsauth.Options(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := natsauth.CredsKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	all := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, co...)
	nc, err := nats.Connect(url, append(all, opts...)...)
	if err != nil {
		t.Fatalf("connect with %s: %v", path, err)
	}
	t.Cleanup(nc.Close)
	return nc, pub
}

// capture subscribes to each pattern and counts what arrives; a pattern
// the identity may not subscribe to is refused by the server and
// receives nothing.
type capture struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (a *attacker) capture(t *testing.T, patterns ...string) *capture {
	t.Helper()
	c := &capture{}
	for _, p := range patterns {
		sub, err := a.nc.Subscribe(p, func(m *nats.Msg) {
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		})
		if err != nil {
			continue // refused by the client library already
		}
		_ = sub.SetPendingLimits(-1, -1)
	}
	_ = a.nc.Flush()
	return c
}

func (c *capture) got() []*nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// probe is one request an attacker sends.
type probe struct {
	subject string
	body    any // marshalled to JSON; nil sends an empty body
	// own marks a probe that acts only on what the attacker made itself
	// (a consumer of its own): succeeding is within its role.
	own bool
}

func (p probe) String() string { return p.subject }

// volley is a batch of probes sent by one attacker and the replies that
// came back, by probe. A message of a stream delivered to the volley's
// subscription carries its own subject, not the reply subject it was sent
// to: it is kept in facts.
type volley struct {
	a        *attacker
	prefix   string
	n        int
	sub      *nats.Subscription
	start    time.Time
	sentinel chan struct{}

	mu      sync.Mutex
	replies [][]*nats.Msg
	facts   []*nats.Msg
}

// send sends every probe with a reply subject under the attacker's own
// inbox, as fast as it can, and then a request the identity may send (the
// sentinel). The subscription for the replies lasts until the test ends.
func (a *attacker) send(t *testing.T, probes []probe) *volley {
	t.Helper()
	v := &volley{a: a, n: len(probes), prefix: a.inbox + ".atk" + fmt.Sprint(time.Now().UnixNano()),
		sentinel: make(chan struct{}), replies: make([][]*nats.Msg, len(probes))}
	var once sync.Once
	var err error
	v.sub, err = a.nc.Subscribe(v.prefix+".*", func(m *nats.Msg) {
		v.mu.Lock()
		defer v.mu.Unlock()
		var i int
		if !strings.HasPrefix(m.Subject, v.prefix+".") {
			v.facts = append(v.facts, m)
			return
		}
		if _, err := fmt.Sscanf(m.Subject[len(v.prefix)+1:], "%d", &i); err != nil || i < 0 || i > v.n {
			return
		}
		if i == v.n {
			once.Do(func() { close(v.sentinel) })
			return
		}
		v.replies[i] = append(v.replies[i], m)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.sub.Unsubscribe() })
	_ = v.sub.SetPendingLimits(-1, -1)
	v.start = time.Now()
	for i, p := range probes {
		var data []byte
		if p.body != nil {
			if data, err = json.Marshal(p.body); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.nc.PublishRequest(p.subject, fmt.Sprintf("%s.%d", v.prefix, i), data); err != nil {
			t.Fatalf("publish %s: %v", p.subject, err)
		}
	}
	if err := a.nc.PublishRequest(a.sentinelSubject(), fmt.Sprintf("%s.%d", v.prefix, v.n), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return v
}

// wait waits until the sentinel is answered (the server has come to the
// end of the volley), and at least settle after the volley was sent (an
// observation window for replies still on their way), at most 10s.
func (v *volley) wait(t *testing.T, settle time.Duration) {
	t.Helper()
	select {
	case <-v.sentinel:
	case <-time.After(10 * time.Second):
		t.Errorf("%s: the sentinel request %s was not answered", v.a.kind, v.a.sentinelSubject())
	}
	if rest := settle - time.Since(v.start); rest > 0 {
		time.Sleep(rest) // an observation window: replies are collected meanwhile
	}
	_ = v.a.nc.Flush()
}

// got returns the replies so far, by probe, and the stream messages.
func (v *volley) got() ([][]*nats.Msg, []*nats.Msg) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([][]*nats.Msg, v.n)
	for i := range out {
		out[i] = slices.Clone(v.replies[i])
	}
	return out, slices.Clone(v.facts)
}

// fire sends the probes, waits for the answers and returns them by
// probe. A stream message delivered to the attacker fails the test.
func (a *attacker) fire(t *testing.T, probes []probe, settle time.Duration) [][]*nats.Msg {
	t.Helper()
	v := a.send(t, probes)
	v.wait(t, settle)
	replies, facts := v.got()
	for _, m := range facts {
		t.Errorf("%s received a fact: %s", a.kind, m.Subject)
	}
	return replies
}

// sentinelSubject is a request the identity may send and that is
// answered.
func (a *attacker) sentinelSubject() string {
	if a.role.Account() == natsauth.AccountAuth {
		return "$JS.API.INFO"
	}
	return natsauth.RevocationsInfoSubject
}

// apiSuccess reports whether a reply is a JetStream API success (a body
// without "error"), or a message of a stream (a fact delivered by a pull).
func apiSuccess(m *nats.Msg) bool {
	if isFact(m) {
		return true
	}
	if m.Header.Get("Status") != "" { // 503 no responders, 404, 408 ...
		return false
	}
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return false
	}
	return len(r.Error) == 0
}

// isFact reports whether a message is a stored fact: delivered by a
// consumer (with an ack subject) or carrying CloudEvent attributes.
func isFact(m *nats.Msg) bool {
	return strings.HasPrefix(m.Reply, "$JS.ACK.") || m.Header.Get(events.HeaderType) != "" ||
		strings.HasPrefix(m.Subject, "auth.events.") || m.Header.Get("Nats-Sequence") != ""
}

// victim is a protected service built as example-service is: its own
// service identity, the deny-list and key set on it, the httpauth
// middleware, and a /readyz that says ready once the deny-list has caught
// up and the keys are known.
type victim struct {
	url    string
	list   *denylist.List
	keys   *httpauth.KeySet
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func startVictim(t *testing.T, b *bus, name string) *victim {
	t.Helper()
	nc, _ := connectCreds(t, b.srv.ClientURL(), b.srv.Creds(b.name(name), natsauth.RoleService), nats.Name(name),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	svc, err := httpauth.NewService(httpauth.ServiceConfig{Conn: nc, Name: "/" + name,
		Auth:     httpauth.Config{Issuer: "sessionbus"},
		DenyList: denylist.Config{Heartbeat: 500 * time.Millisecond, MaxStaleness: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	list, keys, auth := svc.DenyList, svc.Keys, svc.Authenticator
	ctx, cancel := context.WithCancel(bg)
	v := &victim{list: list, keys: keys, cancel: cancel}
	v.done.Go(func() { _ = svc.Run(ctx) })
	mux := http.NewServeMux()
	mux.Handle("GET /protected-resource", auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := httpauth.ClaimsFrom(r.Context())
		fmt.Fprint(w, c.Subject)
	})))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if svc.Ready() {
			fmt.Fprintln(w, `{"status":"ready"}`)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"status":"catching up"}`)
	})
	h := httptest.NewServer(mux)
	v.url = h.URL
	t.Cleanup(func() { h.Close(); v.stop() })
	wctx, wcancel := context.WithTimeout(bg, 10*time.Second)
	defer wcancel()
	if err := list.WaitReady(wctx); err != nil {
		t.Fatalf("%s not ready: %v", name, err)
	}
	return v
}

func (v *victim) stop() { v.cancel(); v.done.Wait() }

func (v *victim) get(t testing.TB, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", v.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// answers waits until the victim answers want for the token.
func (v *victim) answers(t testing.TB, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := v.get(t, "/protected-resource", token)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service answers %d to the token, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// truthful checks the victim's /readyz: it says ready, and the deny-list
// it stands for is fresh (it refuses what was revoked).
func (v *victim) truthful(t testing.TB) {
	t.Helper()
	if got := v.get(t, "/readyz", ""); got != 200 {
		t.Errorf("/readyz answers %d after the attack", got)
	}
	if err := v.list.Check(); err != nil {
		t.Errorf("deny-list after the attack: %v (staleness %s)", err, v.list.Staleness())
	}
}

// scale returns full, or short in -short mode.
func scale(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
