package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/embedded"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/kvstore"
)

// Roles of deploy/nats/auth.conf and the environment variables holding
// their passwords (bcrypt hashes) on the NATS servers.
var roles = map[string]string{
	"manager": "NATS_MANAGER_PASSWORD_HASH",
	"service": "NATS_SERVICE_PASSWORD_HASH",
	"audit":   "NATS_AUDIT_PASSWORD_HASH",
	"admin":   "NATS_ADMIN_PASSWORD_HASH",
	"sys":     "NATS_SYS_PASSWORD_HASH",
}

// inboxes are the private inbox prefixes of the roles of the account
// SESSIONBUS: each may subscribe to its own prefix only, and its clients
// must use it (nats.CustomInboxPrefix, --nats-inbox-prefix).
var inboxes = map[string]string{
	"manager": "_INBOX_manager",
	"service": "_INBOX_service",
	"audit":   "_INBOX_audit",
	"admin":   "_INBOX_admin",
}

// sharedInbox is the default, account-wide inbox namespace of NATS.
const sharedInbox = "_INBOX.>"

// placeholderHash stands for a bcrypt hash in the example files: NATS
// parses it as one, and no password matches it.
const placeholderHash = "$2a$10$REPLACE_ME"

var natsNodes = []string{"nats/nats-1.conf", "nats/nats-2.conf", "nats/nats-3.conf"}

// setPasswords makes a password per role, puts its bcrypt hash in the
// servers' environment and returns the plain passwords.
func setPasswords(t *testing.T) map[string]string {
	t.Helper()
	pw := map[string]string{}
	for role, env := range roles {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		pw[role] = hex.EncodeToString(b)
		hash, err := bcrypt.GenerateFromPassword([]byte(pw[role]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(env, string(hash))
	}
	return pw
}

func parseNATS(t *testing.T, file string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return opts
}

func userOf(t *testing.T, opts *server.Options, name string) *server.User {
	t.Helper()
	for _, u := range opts.Users {
		if u.Username == name {
			return u
		}
	}
	t.Fatalf("no user %q", name)
	return nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// managerOnly are subjects the other roles may not publish: the buckets
// holding password hashes and signing keys, and stream management (the
// manager may not delete or purge either; checkRoles checks that).
var managerOnly = []string{
	"$KV.>",
	"$KV.sessionbus_users.>",
	"$JS.API.STREAM.INFO.KV_sessionbus_users",
	"$JS.API.STREAM.MSG.GET.KV_sessionbus_keys",
	"$JS.API.DIRECT.GET.KV_sessionbus_users.>",
	"$JS.API.DIRECT.GET.KV_sessionbus_keys.>",
	"$JS.API.CONSUMER.CREATE.KV_sessionbus_keys.>",
	"$JS.API.STREAM.DELETE.AUTH_EVENTS",
	"$JS.API.STREAM.PURGE.AUTH_EVENTS",
	"$JS.API.STREAM.UPDATE.AUTH_EVENTS",
	"$JS.API.STREAM.CREATE.AUTH_EVENTS",
	"$JS.API.STREAM.MSG.DELETE.AUTH_EVENTS",
}

// allowsAny reports the first allowed subject that collides with one of
// subjects.
func allowsAny(p *server.SubjectPermission, subjects ...string) (string, bool) {
	if p == nil {
		return "", false
	}
	for _, a := range p.Allow {
		for _, s := range subjects {
			if server.SubjectsCollide(strings.Fields(a)[0], s) {
				return a + " (matches " + s + ")", true
			}
		}
	}
	return "", false
}

func TestNATSConfig(t *testing.T) {
	setPasswords(t)
	want := embedded.ServicePermissions()
	for _, file := range natsNodes {
		t.Run(filepath.Base(file), func(t *testing.T) {
			opts := parseNATS(t, file)
			if !opts.JetStream || !opts.SyncAlways {
				t.Errorf("jetstream %v, sync_interval always %v: want both", opts.JetStream, opts.SyncAlways)
			}
			if opts.StoreDir == "" {
				t.Error("no jetstream store_dir")
			}
			wantName := strings.TrimSuffix(filepath.Base(file), ".conf")
			if opts.ServerName != wantName {
				t.Errorf("server_name %q, want %q", opts.ServerName, wantName)
			}
			if opts.Cluster.Name == "" || opts.Cluster.Port == 0 || len(opts.Routes) != 3 {
				t.Errorf("cluster %q port %d with %d routes, want a named cluster with 3 routes", opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes))
			}
			if opts.NoAuthUser != "" {
				t.Errorf("no_auth_user %q: every connection must authenticate", opts.NoAuthUser)
			}
			checkRoles(t, opts, want)
		})
	}
	// A server missing a password refuses to start rather than let the
	// user in without one.
	t.Setenv(roles["audit"], "")
	os.Unsetenv(roles["audit"])
	if _, err := server.ProcessConfigFile(natsNodes[0]); err == nil || !strings.Contains(err.Error(), roles["audit"]) {
		t.Errorf("without %s: %v, want an error naming it", roles["audit"], err)
	}
}

// checkRoles checks the users of a parsed config against the roles.
func checkRoles(t *testing.T, opts *server.Options, want *server.Permissions) {
	t.Helper()
	for role := range roles {
		u := userOf(t, opts, role)
		if u.Password == "" || !strings.HasPrefix(u.Password, "$2") {
			t.Errorf("%s: password is not the bcrypt hash from the environment", role)
		}
		wantAcc := "SESSIONBUS"
		if role == "sys" {
			wantAcc = "SYS"
		}
		if u.Account == nil || u.Account.Name != wantAcc {
			t.Errorf("%s: account %v, want %s", role, u.Account, wantAcc)
		}
	}
	if opts.SystemAccount != "SYS" {
		t.Errorf("system_account %q, want SYS", opts.SystemAccount)
	}

	svc := userOf(t, opts, "service").Permissions
	if svc == nil || svc.Publish == nil || svc.Subscribe == nil {
		t.Fatal("service: no publish/subscribe permissions")
	}
	checkServiceUser(t, "service", svc, want)

	// Private inboxes: every role subscribes to its own prefix and to no
	// other inbox; none may publish into inboxes (the manager answers
	// through allow_responses only).
	var inboxSubjects []string
	for _, prefix := range inboxes {
		inboxSubjects = append(inboxSubjects, prefix+".x.1")
	}
	inboxSubjects = append(inboxSubjects, "_INBOX.x.1", "_INBOX_orders.x.1")
	for role, prefix := range inboxes {
		p := userOf(t, opts, role).Permissions
		if p == nil || p.Subscribe == nil || p.Publish == nil {
			t.Errorf("%s: no publish/subscribe permissions", role)
			continue
		}
		var inboxAllows []string
		for _, a := range p.Subscribe.Allow {
			if strings.HasPrefix(a, "_INBOX") {
				inboxAllows = append(inboxAllows, a)
			}
		}
		if !slices.Equal(inboxAllows, []string{prefix + ".>"}) {
			t.Errorf("%s subscribes to the inboxes %q, want only its own %s.>", role, inboxAllows, prefix)
		}
		for _, other := range inboxSubjects {
			if strings.HasPrefix(other, prefix+".") {
				continue
			}
			if s, ok := allowsAny(p.Subscribe, other); ok {
				t.Errorf("%s may read another inbox: %s", role, s)
			}
		}
		if s, ok := allowsAny(p.Publish, inboxSubjects...); ok {
			t.Errorf("%s may publish into inboxes: %s", role, s)
		}
		if role != "manager" && p.Response != nil {
			t.Errorf("%s has allow_responses: only the manager answers requests", role)
		}
	}

	for _, role := range []string{"service", "audit", "admin"} {
		p := userOf(t, opts, role).Permissions
		if p == nil {
			t.Fatalf("%s: no permissions (may do anything)", role)
		}
		if s, ok := allowsAny(p.Publish, managerOnly...); ok {
			t.Errorf("%s may publish %s", role, s)
		}
		if s, ok := allowsAny(p.Subscribe, "$KV.sessionbus_users.x", "auth.cmd.login", "auth.cmd.>"); ok {
			t.Errorf("%s may subscribe %s", role, s)
		}
		if s, ok := allowsAny(p.Publish, "auth.events.session.revoked.x"); ok {
			t.Errorf("%s may publish facts: %s", role, s)
		}
	}
	if s, ok := allowsAny(userOf(t, opts, "audit").Permissions.Publish, "auth.cmd.login", "auth.cmd.revoke", "auth.cmd.jwks"); ok {
		t.Errorf("audit may publish %s", s)
	}
	if s, ok := allowsAny(svc.Publish, "auth.cmd.revoke", "auth.cmd.sessions", "auth.cmd.users.add", "auth.cmd.keys.rotate"); ok {
		t.Errorf("service may send admin commands: %s", s)
	}

	admin := userOf(t, opts, "admin").Permissions
	for _, s := range want.Publish.Allow {
		if !slices.ContainsFunc(admin.Publish.Allow, func(a string) bool { return subjectCovers(a, s) }) {
			t.Errorf("admin lacks the service permission to publish %s", s)
		}
	}
	// Operators read the whole stream (events tail), services do not.
	if !slices.Contains(admin.Subscribe.Allow, events.SubjectPrefix+">") {
		t.Errorf("admin may not subscribe to %s>: %q", events.SubjectPrefix, admin.Subscribe.Allow)
	}
	for _, s := range []string{events.SubjectRevoke, events.SubjectSessions, events.SubjectUsersAdd, events.SubjectUsersDisable,
		events.SubjectUsersList, events.SubjectUsersEnable, events.SubjectUsersPasswd, events.SubjectKeysList, events.SubjectKeysRotate, events.SubjectKeysRevoke} {
		if _, ok := allowsAny(admin.Publish, s); !ok {
			t.Errorf("admin may not send %s", s)
		}
	}

	mgr := userOf(t, opts, "manager").Permissions
	for _, s := range []string{"auth.events.session.created.x", "$KV.sessionbus_users.x", "$KV.sessionbus_keys.x", "$KV.sessionbus_grace.x",
		"$JS.API.STREAM.CREATE.AUTH_EVENTS", "$JS.API.STREAM.CREATE.KV_sessionbus_users", "$JS.API.STREAM.CREATE.KV_sessionbus_keys", "$JS.API.STREAM.CREATE.KV_sessionbus_grace"} {
		if _, ok := allowsAny(mgr.Publish, s); !ok {
			t.Errorf("manager may not publish %s", s)
		}
	}
	if s, ok := allowsAny(mgr.Publish, "$JS.API.STREAM.DELETE.AUTH_EVENTS", "$JS.API.STREAM.PURGE.AUTH_EVENTS"); ok {
		t.Errorf("manager may delete or purge the stream: %s", s)
	}
	if !slices.Contains(mgr.Subscribe.Allow, "auth.cmd.> "+events.QueueGroup) {
		t.Errorf("manager does not serve auth.cmd.> in queue group %q: %q", events.QueueGroup, mgr.Subscribe.Allow)
	}
	// The manager replies to the requester's inbox, whatever its prefix,
	// through allow_responses: one reply per request.
	if r := mgr.Response; r == nil || r.MaxMsgs != 1 || r.Expires <= 0 {
		t.Errorf("manager allow_responses %+v, want one reply per request, expiring", r)
	}
}

// checkServiceUser checks that a service user has the permissions of
// the embedded service role (want) but for the inbox: the role's
// _INBOX.> is the user's private inbox instead.
func checkServiceUser(t *testing.T, user string, p, want *server.Permissions) {
	t.Helper()
	if p == nil || p.Publish == nil || p.Subscribe == nil {
		t.Fatalf("%s: no publish/subscribe permissions", user)
	}
	if got, w := sorted(p.Publish.Allow), sorted(want.Publish.Allow); !slices.Equal(got, w) {
		t.Errorf("%s publish allow differs from embedded.ServicePermissions:\n got %q\nwant %q", user, got, w)
	}
	// The one difference, explicitly.
	inbox := "_INBOX_" + user + ".>"
	if !slices.Contains(want.Subscribe.Allow, sharedInbox) {
		t.Errorf("embedded.ServicePermissions subscribes %q without %s: revisit the inbox exception", want.Subscribe.Allow, sharedInbox)
	}
	if slices.Contains(p.Subscribe.Allow, sharedInbox) || !slices.Contains(p.Subscribe.Allow, inbox) {
		t.Errorf("%s subscribes %q: want its private inbox %s instead of %s", user, p.Subscribe.Allow, inbox, sharedInbox)
	}
	rest := func(l []string, drop string) []string {
		return sorted(slices.DeleteFunc(slices.Clone(l), func(s string) bool { return s == drop }))
	}
	if got, w := rest(p.Subscribe.Allow, inbox), rest(want.Subscribe.Allow, sharedInbox); !slices.Equal(got, w) {
		t.Errorf("%s subscribe allow, but for the inbox, differs from embedded.ServicePermissions:\n got %q\nwant %q", user, got, w)
	}
	if len(p.Publish.Deny) != 0 || len(p.Subscribe.Deny) != 0 || p.Response != nil {
		t.Errorf("%s has deny lists or allow_responses the embedded role has not", user)
	}
	// Of AUTH_EVENTS only the revocation and key facts, whatever the route.
	for _, s := range serviceMayNotPublish {
		if a, ok := serverAllows(p.Publish, s); ok {
			t.Errorf("%s may publish %s (allowed by %s)", user, s, a)
		}
	}
	for _, s := range serviceMayNotSubscribe {
		if a, ok := serverAllows(p.Subscribe, s); ok {
			t.Errorf("%s may subscribe to %s (allowed by %s)", user, s, a)
		}
	}
	for _, s := range []string{"auth.events.session.revoked.x", "auth.events.key.rotated.x", events.SubjectRevocations, events.SubjectPrefix + "key.>"} {
		if _, ok := serverAllows(p.Subscribe, s); !ok {
			t.Errorf("%s may not subscribe to %s", user, s)
		}
	}
	if _, ok := serverAllows(p.Publish, "$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x."+events.SubjectRevocations); !ok {
		t.Errorf("%s may not create a consumer filtered on the revocations", user)
	}
}

// serviceMayNotPublish are requests by which a service could read facts
// other than the revocations and the key facts (login failures tell
// whether a username exists), or list or delete others' consumers. The
// subjects are taken literally, as the server takes a published subject:
// a wildcard in them is just a token.
var serviceMayNotPublish = []string{
	"$JS.API.INFO",
	"$JS.API.STREAM.INFO.AUTH_EVENTS",
	"$JS.API.STREAM.MSG.GET.AUTH_EVENTS",
	"$JS.API.DIRECT.GET.AUTH_EVENTS",
	"$JS.API.DIRECT.GET.AUTH_EVENTS.auth.events.login.failed.unknown",
	"$JS.API.DIRECT.GET.AUTH_EVENTS.auth.events.*.revoked.>",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.>",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.login.>",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.login.failed.>",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.login.failed.unknown",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.session.>",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.*.*.unknown",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.auth.events.*.failed.>",
	"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x.>",
	"$JS.API.CONSUMER.DURABLE.CREATE.AUTH_EVENTS.x",
	"$JS.API.CONSUMER.LIST.AUTH_EVENTS",
	"$JS.API.CONSUMER.NAMES.AUTH_EVENTS",
	"$JS.API.CONSUMER.DELETE.AUTH_EVENTS.x",
	"$JS.API.STREAM.NAMES",
	"$JS.API.STREAM.LIST",
}

// serviceMayNotSubscribe are subscriptions that would receive facts other
// than the revocations and the key facts.
var serviceMayNotSubscribe = []string{
	">", "auth.>", "auth.events.>", "auth.events.login.>", "auth.events.login.failed.>",
	"auth.events.login.failed.unknown", "auth.events.login.failed.x", "auth.events.*.failed.>",
	"auth.events.*.*.unknown", "auth.events.*.*.*", "auth.events.session.>", "auth.events.session.created.x",
	"auth.events.session.refreshed.x", "auth.events.*.created.>",
}

// serverAllows reports the allow entry of p that lets a client publish or
// subscribe to subject, matching as the server does: the subject's tokens
// are literals ("*" and ">" in it are tokens like any other), an allowed
// "*" matches any one token and ">" one or more.
func serverAllows(p *server.SubjectPermission, subject string) (string, bool) {
	if p == nil {
		return "", false
	}
	for _, a := range p.Allow {
		if literalMatch(strings.Fields(a)[0], subject) {
			return a, true
		}
	}
	return "", false
}

func literalMatch(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		switch {
		case p == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case p != "*" && p != st[i]:
			return false
		}
	}
	return len(pt) == len(st)
}

// subjectCovers reports whether every subject matched by sub is matched
// by pattern.
func subjectCovers(pattern, sub string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, p := range pt {
		switch {
		case p == ">":
			return len(st) > i
		case i >= len(st) || st[i] == ">":
			return false
		case p == "*":
		case st[i] == "*" || p != st[i]:
			return false
		}
	}
	return len(pt) == len(st)
}

// TestNATSConfigOrdersExample uncomments the example of a second service
// user in auth.conf ("orders") and checks that it parses and is the
// service user but for its private inbox.
func TestNATSConfigOrdersExample(t *testing.T) {
	setPasswords(t)
	t.Setenv("NATS_ORDERS_PASSWORD_HASH", placeholderHash)
	lines := strings.Split(string(must(os.ReadFile("nats/auth.conf"))), "\n")
	start, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case "# {":
			if start < 0 {
				start = i
			}
		case "# }":
			if start >= 0 && end < 0 {
				end = i
			}
		}
	}
	if start < 0 || end < 0 {
		t.Fatal("auth.conf has no commented example user (# { ... # })")
	}
	for i := start; i <= end; i++ {
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		body, ok := strings.CutPrefix(lines[i][indent:], "#")
		if !ok {
			t.Fatalf("auth.conf:%d: not a comment inside the example: %q", i+1, lines[i])
		}
		lines[i] = lines[i][:indent] + strings.TrimPrefix(body, " ")
	}
	file := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := parseNATS(t, file)
	orders := userOf(t, opts, "orders")
	if orders.Account == nil || orders.Account.Name != "SESSIONBUS" {
		t.Errorf("orders: account %v, want SESSIONBUS", orders.Account)
	}
	checkServiceUser(t, "orders", orders.Permissions, embedded.ServicePermissions())
	// The example must not change anyone else.
	checkRoles(t, opts, embedded.ServicePermissions())
	if s, ok := allowsAny(orders.Permissions.Subscribe, inboxes["service"]+".x"); ok {
		t.Errorf("orders may read the service's inbox: %s", s)
	}
}

// cluster is three nats-servers started from the node configs, on
// loopback with random ports and stores in temp dirs.
type cluster struct {
	servers []*server.Server
}

func startCluster(t *testing.T, files []string) *cluster {
	t.Helper()
	// JetStream needs routes from the start, so the route ports are picked
	// before the servers start.
	var routes []*url.URL
	for range files {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: l.Addr().String()})
		l.Close()
	}
	c := &cluster{}
	for i, file := range files {
		opts := parseNATS(t, file)
		opts.Host, opts.Port = "127.0.0.1", -1
		opts.HTTPHost, opts.HTTPPort = "", 0
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", atoi(t, routes[i].Port())
		opts.Routes = routes
		opts.StoreDir = t.TempDir()
		opts.NoSigs, opts.NoLog = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		c.servers = append(c.servers, s)
	}
	for i, s := range c.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s: not ready", files[i])
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		routed, leader := true, false
		for _, s := range c.servers {
			routed = routed && s.NumRoutes() >= len(files)-1 && s.JetStreamIsCurrent()
			leader = leader || s.JetStreamIsLeader()
		}
		if routed && leader {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not form (routes %v, meta leader %v)", routed, leader)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errs collects a connection's asynchronous errors (permission violations).
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, err)
}

// waitViolation waits for a permission violation naming subject, or,
// when subject ends with a dot, a subject starting with it.
func (e *errs) waitViolation(t *testing.T, who, op, subject string) {
	t.Helper()
	named := `to "` + subject
	if !strings.HasSuffix(subject, ".") {
		named += `"`
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, err := range e.list {
			msg := strings.ToLower(err.Error())
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(msg, op) && strings.Contains(err.Error(), named) {
				e.mu.Unlock()
				return
			}
		}
		e.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%s: no permission violation for %s %s", who, op, subject)
}

// connect connects to server i as user, with the user's private inbox
// prefix (extra options come last and may override it).
func (c *cluster) connect(t *testing.T, i int, user, password string, extra ...nats.Option) (*nats.Conn, *errs) {
	t.Helper()
	e := &errs{}
	opts := []nats.Option{nats.UserInfo(user, password), nats.Name("deploy-test-" + user),
		nats.ErrorHandler(e.handler), nats.PermissionErrOnSubscribe(true)}
	if prefix, ok := inboxes[user]; ok {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	nc, err := nats.Connect(c.servers[i].ClientURL(), append(opts, extra...)...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, e
}

// TestNATSClusterRoles starts the 3-node cluster from deploy/nats, runs a
// real session manager on it as the manager user (AUTH_EVENTS and the
// buckets at 3 replicas), and proves what each role can and cannot do.
// Every connection uses its user's private inbox prefix (connect), as the
// deployments configure it.
func TestNATSClusterRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	pw := setPasswords(t)
	c := startCluster(t, natsNodes)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// A wrong password is refused.
	if nc, err := nats.Connect(c.servers[0].ClientURL(), nats.UserInfo("service", "wrong")); err == nil {
		nc.Close()
		t.Error("service connected with a wrong password")
	}
	if nc, err := nats.Connect(c.servers[0].ClientURL()); err == nil {
		nc.Close()
		t.Error("connected without credentials")
	}

	// The manager runs with the inbox prefix _INBOX_manager: its JetStream
	// API replies, KV reads and watches all come there.
	mnc, _ := c.connect(t, 0, "manager", pw["manager"], nats.CustomInboxPrefix(inboxes["manager"]))
	cfg := node.Config{Session: session.DefaultConfig(), ViewDir: t.TempDir(), KVReplicas: 3}
	cfg.Session.Instance = "deploy-test"
	cfg.Stream.Replicas = 3
	var err error
	// A fresh cluster may answer 503 while its meta group settles; the
	// manager does not retry that itself (it exits, and is restarted).
	var n *node.Node
	for attempt := 1; ; attempt++ {
		n, err = node.Start(ctx, mnc, cfg)
		var apiErr *jetstream.APIError
		if err == nil || attempt == 5 || !errors.As(err, &apiErr) || apiErr.Code != 503 {
			break
		}
		t.Logf("manager start, attempt %d: %v", attempt, err)
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Close(ctx)
	})
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("manager not ready: %v", err)
	}

	anc, aerrs := c.connect(t, 1, "admin", pw["admin"], nats.CustomInboxPrefix(inboxes["admin"]))
	// The manager's subscriptions reach the admin's node through the
	// cluster's routes a moment after it starts: wait for them.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := anc.Request("$SRV.PING."+events.ServiceName, nil, 500*time.Millisecond); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("admin: the service is not reachable from node 1: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var user map[string]any
	if err := events.Request(ctx, anc, events.SubjectUsersAdd, "/deploy-test", events.UserRequest{Username: "alice", Password: "correct horse battery"}, &user); err != nil {
		t.Fatalf("admin: users add: %v", err)
	}

	snc, serrs := c.connect(t, 2, "service", pw["service"], nats.CustomInboxPrefix(inboxes["service"]))
	var tok events.TokenReply
	if err := events.Request(ctx, snc, events.SubjectLogin, "/deploy-test", events.LoginRequest{Username: "alice", Password: "correct horse battery"}, &tok); err != nil {
		t.Fatalf("service: login: %v", err)
	}
	if tok.SessionID == "" || tok.AccessToken == "" {
		t.Fatalf("service: login reply %+v", tok)
	}

	// Failed logins of a known and of an unknown name: two facts, on
	// auth.events.login.failed.<user id> and .unknown, that only the
	// admin (and manager, audit) may read.
	for _, name := range []string{"alice", "mallory"} {
		var ce *events.CommandError
		if err := events.Request(ctx, snc, events.SubjectLogin, "/deploy-test", events.LoginRequest{Username: name, Password: "wrong password 123"}, nil); !errors.As(err, &ce) || ce.Code != 401 {
			t.Fatalf("service: login as %s with a wrong password: %v, want 401", name, err)
		}
	}
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := ajs.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("admin: stream info: %v", err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("AUTH_EVENTS has %d replicas, want 3", r)
	}
	failedSubjects := []string{events.SubjectPrefix + "login.failed." + fmt.Sprint(user["id"]), events.SubjectPrefix + "login.failed.unknown"}
	var failedSeqs []uint64
	for _, subj := range failedSubjects {
		var msg *jetstream.RawStreamMsg
		for msg == nil && ctx.Err() == nil {
			msg, _ = stream.GetLastMsgForSubject(ctx, subj)
		}
		if msg == nil {
			t.Fatalf("admin: no fact on %s", subj)
		}
		failedSeqs = append(failedSeqs, msg.Sequence)
	}

	// The service reads none of it: no core subscription beyond the
	// revocations and the key facts, no consumer but one filtered on the
	// revocations, no message or direct get, no stream info.
	sjs, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{events.SubjectPrefix + ">", events.SubjectPrefix + "login.>", failedSubjects[1]} {
		sub, err := snc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		serrs.waitViolation(t, "service", "subscription", subj)
		if msg, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			t.Errorf("service: subscribed to %s, got %s", subj, msg.Subject)
		}
	}
	for _, filters := range [][]string{nil, {events.SubjectPrefix + "login.failed.>"}, {events.SubjectPrefix + ">"}, {events.SubjectRevocations, events.SubjectPrefix + "login.>"}} {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		if _, err := sjs.OrderedConsumer(cctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: filters}); err == nil {
			t.Errorf("service: created a consumer filtered on %q", filters)
		}
		ccancel()
	}
	serrs.waitViolation(t, "service", "publish", "$JS.API.CONSUMER.CREATE."+events.StreamName+".")
	for _, r := range []struct{ subject, body string }{
		{"$JS.API.STREAM.MSG.GET." + events.StreamName, `{"seq":1}`},
		{"$JS.API.STREAM.MSG.GET." + events.StreamName, fmt.Sprintf(`{"seq":%d}`, failedSeqs[0])},
		{"$JS.API.DIRECT.GET." + events.StreamName, fmt.Sprintf(`{"seq":%d}`, failedSeqs[1])},
		{"$JS.API.DIRECT.GET." + events.StreamName + "." + failedSubjects[1], ``},
		{"$JS.API.STREAM.INFO." + events.StreamName, `{"subjects_filter":"auth.events.login.>"}`},
	} {
		if msg, err := snc.Request(r.subject, []byte(r.body), 500*time.Millisecond); err == nil {
			t.Errorf("service: %s %s answered: %s", r.subject, r.body, msg.Data)
		}
		serrs.waitViolation(t, "service", "publish", r.subject)
	}
	// The server compares the filter configured with the one in the
	// create subject the service may use.
	smuggled := "$JS.API.CONSUMER.CREATE." + events.StreamName + ".snoop." + events.SubjectRevocations
	if msg, err := snc.Request(smuggled, []byte(`{"stream_name":"AUTH_EVENTS","config":{"name":"snoop","filter_subject":"auth.events.>","ack_policy":"none"}}`), 5*time.Second); err != nil || !bytes.Contains(msg.Data, []byte(`"error"`)) {
		t.Errorf("service: a consumer filtered on auth.events.> through %s: %v", smuggled, err)
	}
	// The revocations it may read, from the start of the stream (read
	// below, once there is one).
	oc, err := sjs.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectRevocations}})
	if err != nil {
		t.Fatalf("service: ordered consumer on the revocations: %v", err)
	}
	revSub, err := snc.SubscribeSync(events.SubjectRevocations)
	if err != nil {
		t.Fatal(err)
	}

	// The service's deny-list (consumers/denylist) follows the stream.
	deny, err := denylist.New(denylist.Config{JetStream: sjs})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(ctx)
	derr := make(chan error, 1)
	go func() { derr <- deny.Run(dctx) }()
	t.Cleanup(func() { dcancel(); <-derr })
	if err := deny.WaitReady(ctx); err != nil {
		t.Fatalf("service: deny-list: %v", err)
	}

	// The service's key set (consumers/httpauth) fetches the JWKS over
	// auth.cmd.jwks and refreshes it on the key facts: a rotation by the
	// admin reaches it at once (no periodic refresh within the test).
	keys, err := httpauth.NewKeySet(httpauth.KeySetConfig{Source: httpauth.NATSSource(snc, "/deploy-test"), Watch: snc, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(ctx)
	kerr := make(chan error, 1)
	go func() { kerr <- keys.Run(kctx) }()
	t.Cleanup(func() { kcancel(); <-kerr })
	for len(keys.KeyIDs()) == 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	oldKeys := keys.KeyIDs()
	if err := events.Request(ctx, anc, events.SubjectKeysRotate, "/deploy-test", struct{}{}, nil); err != nil {
		t.Fatalf("admin: keys rotate: %v", err)
	}
	for !slices.ContainsFunc(keys.KeyIDs(), func(id string) bool { return !slices.Contains(oldKeys, id) }) {
		if ctx.Err() != nil {
			t.Fatalf("service: the key set did not follow the rotation: %q", keys.KeyIDs())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The service cannot publish facts, read the buckets or send admin
	// commands.
	forged := events.SubjectPrefix + "session.revoked.forged"
	if err := snc.Publish(forged, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	_ = snc.Flush()
	serrs.waitViolation(t, "service", "publish", forged)
	// Denied requests get no answer: wait briefly, then look for the
	// permission violation.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	sctx, scancel := short()
	if _, err := sjs.KeyValue(sctx, kvstore.UsersBucket); err == nil {
		t.Error("service opened the users bucket")
	}
	scancel()
	direct := "$JS.API.DIRECT.GET.KV_" + kvstore.UsersBucket
	if _, err := snc.Request(direct, []byte(`{"last_by_subj":"$KV.sessionbus_users.x"}`), 500*time.Millisecond); err == nil {
		t.Error("service read the users bucket with a direct get")
	}
	serrs.waitViolation(t, "service", "publish", direct)
	if _, err := snc.SubscribeSync("$KV." + kvstore.KeysBucket + ".>"); err != nil {
		t.Fatal(err)
	}
	serrs.waitViolation(t, "service", "subscription", "$KV."+kvstore.KeysBucket+".>")
	if _, err := snc.QueueSubscribeSync(events.SubjectLogin, events.QueueGroup); err != nil {
		t.Fatal(err)
	}
	serrs.waitViolation(t, "service", "subscription", events.SubjectLogin)
	sctx, scancel = short()
	if err := events.Request(sctx, snc, events.SubjectRevoke, "/deploy-test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "test"}, nil); err == nil {
		t.Error("service revoked a session")
	}
	scancel()
	serrs.waitViolation(t, "service", "publish", events.SubjectRevoke)

	// Private inboxes. Another program with the service password, on the
	// admin's server, may subscribe to the service's inbox but not to the
	// shared _INBOX.> nor to the admin's, manager's or audit's inboxes.
	spy, spyErrs := c.connect(t, 1, "service", pw["service"])
	for _, subj := range []string{sharedInbox, inboxes["admin"] + ".>", inboxes["manager"] + ".>", inboxes["audit"] + ".>", ">"} {
		sub, err := spy.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		spyErrs.waitViolation(t, "service", "subscription", subj)
		_ = sub.Unsubscribe()
	}
	var spyMu sync.Mutex
	var spied []*nats.Msg
	spySub, err := spy.Subscribe(inboxes["service"]+".>", func(m *nats.Msg) {
		spyMu.Lock()
		defer spyMu.Unlock()
		spied = append(spied, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	adminReplies := make(chan *nats.Msg, 128)
	adminSub, err := anc.ChanSubscribe(inboxes["admin"]+".>", adminReplies)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(spy.Flush(), anc.Flush()); err != nil {
		t.Fatal(err)
	}
	spiedData := func(want func(*nats.Msg) bool) bool {
		spyMu.Lock()
		defer spyMu.Unlock()
		return slices.ContainsFunc(spied, want)
	}
	// The spy's subscription works: it sees its own login reply, tokens
	// included, on _INBOX_service.
	var spyTok events.TokenReply
	if err := events.Request(ctx, spy, events.SubjectLogin, "/deploy-test", events.LoginRequest{Username: "alice", Password: "correct horse battery"}, &spyTok); err != nil {
		t.Fatalf("service: login with _INBOX_service: %v", err)
	}
	for !spiedData(func(m *nats.Msg) bool { return bytes.Contains(m.Data, []byte(spyTok.RefreshToken)) }) {
		if ctx.Err() != nil {
			t.Fatal("service: its inbox subscription did not see its own login reply")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The admin's requests work with _INBOX_admin, and their replies (user
	// and session lists) never reach the spy.
	var list struct {
		Users []struct {
			ID       string `json:"id"`
			Username string `json:"username"`
		} `json:"users"`
	}
	if err := events.Request(ctx, anc, events.SubjectUsersList, "/deploy-test", struct{}{}, &list); err != nil {
		t.Fatalf("admin: users list: %v", err)
	}
	if len(list.Users) != 1 || list.Users[0].Username != "alice" {
		t.Errorf("admin: users list %+v, want alice", list.Users)
	}
	// The manager's view applies the spy's login asynchronously: ask
	// until both sessions of alice are listed.
	requests := 1
	for {
		var sessions events.SessionsReply
		requests++
		if err := events.Request(ctx, anc, events.SubjectSessions, "/deploy-test", events.SessionsRequest{UserID: fmt.Sprint(user["id"])}, &sessions); err != nil {
			t.Fatalf("admin: sessions: %v", err)
		}
		if len(sessions.Sessions) == 2 {
			break
		}
		if ctx.Err() != nil || requests > 100 {
			t.Fatalf("admin: %d sessions of alice, want 2", len(sessions.Sessions))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var fromManager []*nats.Msg
	for len(fromManager) < requests {
		select {
		case m := <-adminReplies:
			fromManager = append(fromManager, m)
		case <-ctx.Done():
			t.Fatalf("admin: %d replies seen on %s.>, want %d", len(fromManager), inboxes["admin"], requests)
		}
	}
	_ = spy.Flush()
	for _, r := range fromManager {
		if !strings.HasPrefix(r.Subject, inboxes["admin"]+".") {
			t.Errorf("admin reply on %s", r.Subject)
		}
		if spiedData(func(m *nats.Msg) bool { return m.Subject == r.Subject || bytes.Equal(m.Data, r.Data) }) {
			t.Errorf("service read the admin's reply on %s", r.Subject)
		}
	}
	_ = spySub.Unsubscribe()
	_ = adminSub.Unsubscribe()
	// A client that keeps the default prefix is refused its own inbox, and
	// its requests time out.
	lost, lostErrs := c.connect(t, 1, "admin", pw["admin"], nats.CustomInboxPrefix("_INBOX"))
	ri := lost.NewRespInbox()
	sctx, scancel = short()
	if err := events.Request(sctx, lost, events.SubjectJWKS, "/deploy-test", struct{}{}, nil); err == nil {
		t.Error("admin got a reply on the shared _INBOX")
	}
	scancel()
	lostErrs.waitViolation(t, "admin with the default inbox", "subscription", ri[:strings.LastIndex(ri, ".")+1]+"*")

	// The manager can read the buckets (it wrote alice there).
	mjs, err := jetstream.New(mnc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := mjs.KeyValue(ctx, kvstore.UsersBucket)
	if err != nil {
		t.Fatalf("manager: users bucket: %v", err)
	}
	if st, err := kv.Status(ctx); err != nil || st.Values() == 0 {
		t.Errorf("manager: users bucket status %v, %v", st, err)
	}
	if _, err := mjs.Stream(ctx, events.StreamName); err != nil {
		t.Errorf("manager: %v", err)
	}

	// Audit: the real audit code replays the stream, follows it through a
	// durable consumer (deleting a stale durable of the same name to
	// reposition it) and verifies the copy against the stream; it may
	// send no command.
	unc, uerrs := c.connect(t, 0, "audit", pw["audit"], nats.CustomInboxPrefix(inboxes["audit"]))
	ujs, err := jetstream.New(unc)
	if err != nil {
		t.Fatal(err)
	}
	replayFile := filepath.Join(t.TempDir(), "replay.jsonl")
	rep, err := audit.NewReplayer(ujs, audit.ReplayConfig{Out: replayFile})
	if err != nil {
		t.Fatal(err)
	}
	rstats, err := rep.Run(ctx)
	if err != nil || rstats.Lines < 2 {
		t.Fatalf("audit: replay: %d lines, %v", rstats.Lines, err)
	}
	if r, err := audit.Verify(ctx, []string{replayFile}, audit.VerifyConfig{Against: ujs}); err != nil || r.StreamChecked != rstats.Lines {
		t.Errorf("audit: verify against the stream: %v (%d of %d lines checked)", err, r.StreamChecked, rstats.Lines)
	}
	if _, err := ujs.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable: "audit-test", FilterSubject: events.SubjectRevocations, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatalf("audit: durable consumer: %v", err)
	}
	fol, err := audit.NewFollower(ujs, audit.FollowConfig{Durable: "audit-test", Out: filepath.Join(t.TempDir(), "follow.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	ferr := make(chan error, 1)
	go func() { ferr <- fol.Run(fctx) }()
	for fol.Stats().Lines < rstats.Lines && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	fcancel()
	if err := <-ferr; err != nil || fol.Stats().LastSeq != rstats.LastSeq {
		t.Errorf("audit: follow: %v, at sequence %d, want %d", err, fol.Stats().LastSeq, rstats.LastSeq)
	}
	sctx, scancel = short()
	if err := events.Request(sctx, unc, events.SubjectJWKS, "/deploy-test", struct{}{}, nil); err == nil {
		t.Error("audit sent a command")
	}
	scancel()
	uerrs.waitViolation(t, "audit", "publish", events.SubjectJWKS)

	// Admin revokes the session; the manager may not subscribe to
	// commands outside its queue group.
	if err := events.Request(ctx, anc, events.SubjectRevoke, "/deploy-test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "test"}, nil); err != nil {
		t.Errorf("admin: revoke: %v", err)
	}
	for denied, _ := deny.Denied(denylist.Token{SessionID: tok.SessionID}); !denied; denied, _ = deny.Denied(denylist.Token{SessionID: tok.SessionID}) {
		if ctx.Err() != nil {
			t.Fatal("service: the revoked session never reached the deny-list")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The service's own consumer and core subscription on the
	// revocations see it too.
	wantRev := events.SubjectPrefix + "session.revoked." + tok.SessionID
	// (Each Next of an ordered consumer creates a server consumer; in a
	// cluster its first pull may come before the consumer listens: "no
	// responders". Ask again.)
	for {
		msg, err := oc.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err == nil {
			if msg.Subject() != wantRev {
				t.Errorf("service: ordered consumer on the revocations read %s, want %s", msg.Subject(), wantRev)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("service: ordered consumer on the revocations: %v, want %s", err, wantRev)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if msg, err := revSub.NextMsg(5 * time.Second); err != nil || msg.Subject != wantRev {
		t.Errorf("service: subscription to the revocations: %v, want %s", err, wantRev)
	}
	if _, err := anc.SubscribeSync(events.SubjectLogin); err != nil {
		t.Fatal(err)
	}
	aerrs.waitViolation(t, "admin", "subscription", events.SubjectLogin)
	mnc2, merrs := c.connect(t, 1, "manager", pw["manager"])
	if _, err := mnc2.SubscribeSync(events.SubjectLogin); err != nil {
		t.Fatal(err)
	}
	merrs.waitViolation(t, "manager", "subscription", events.SubjectLogin)
	// Nor may it read other users' inboxes.
	for _, subj := range []string{sharedInbox, inboxes["admin"] + ".>", inboxes["service"] + ".>"} {
		if _, err := mnc2.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		merrs.waitViolation(t, "manager", "subscription", subj)
	}
	// Every connection above used its private inbox.
	for user, nc := range map[string]*nats.Conn{"manager": mnc, "admin": anc, "service": snc, "audit": unc} {
		if ri := nc.NewRespInbox(); !strings.HasPrefix(ri, inboxes[user]+".") {
			t.Errorf("%s: inbox %s, want %s.…", user, ri, inboxes[user])
		}
	}

	// No one but the manager published: the forged fact is not stored.
	if _, err := stream.GetLastMsgForSubject(ctx, forged); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("forged fact: %v, want not found", err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMain lets the test binary stand in for htpasswd (gen-env.sh's hash
// tool) when it is started under that name.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "htpasswd" {
		os.Exit(fakeHtpasswd(os.Args[1:]))
	}
	// Build the binaries while the first tests run.
	go helpOnce.Do(loadFlags)
	code := m.Run()
	helpOnce.Do(func() {}) // wait for the build
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// fakeHtpasswd implements `htpasswd -bnBC COST USER PASSWORD` with bcrypt.
// It insists on a cost of at least 10 but hashes with the minimum, to be
// fast under -race.
func fakeHtpasswd(args []string) int {
	if len(args) != 4 || args[0] != "-bnBC" {
		fmt.Fprintln(os.Stderr, "fake htpasswd: want -bnBC COST USER PASSWORD, got", args)
		return 2
	}
	if cost, err := strconv.Atoi(args[1]); err != nil || cost < 10 {
		fmt.Fprintln(os.Stderr, "fake htpasswd: cost", args[1], "is below 10")
		return 2
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(args[3]), bcrypt.MinCost)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// htpasswd prints "user:hash" and a blank line.
	fmt.Printf("%s:%s\n\n", args[2], strings.Replace(string(hash), "$2a$", "$2y$", 1))
	return 0
}

// cliFlags are the flags of a program's command, from its --help.
type cliFlags struct {
	flags map[string]bool // without dashes
	env   map[string]bool // SESSIONBUS_* variables (sessionbus only)
}

func (f cliFlags) sortedFlags() []string {
	var s []string
	for k := range f.flags {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

var (
	helpOnce   sync.Once
	serveFlags cliFlags
	exampleFl  cliFlags
	helpErr    error
)

var (
	flagRe = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--?([a-z0-9][a-z0-9-]*)\b`)
	envRe  = regexp.MustCompile(`\(env (SESSIONBUS_[A-Z0-9_]+)\)`)
)

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("go tool not found")
	}
	return p, nil
}

// buildBinary builds a command of this module into dir.
func buildBinary(dir, pkg string) (string, error) {
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/sessionbus/sessionbus/"+pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

func helpFlags(bin string, args ...string) (cliFlags, error) {
	out, _ := exec.Command(bin, args...).CombinedOutput() // flag's -help exits 0 or 2
	f := cliFlags{flags: map[string]bool{}, env: map[string]bool{}}
	for _, m := range flagRe.FindAllStringSubmatch(string(out), -1) {
		f.flags[m[1]] = true
	}
	for _, m := range envRe.FindAllStringSubmatch(string(out), -1) {
		f.env[m[1]] = true
	}
	if len(f.flags) == 0 {
		return f, fmt.Errorf("%s %v: no flags in its help:\n%s", bin, args, out)
	}
	return f, nil
}

var binDir string

// loadFlags builds the binaries into binDir and reads their flags.
func loadFlags() {
	binDir, helpErr = os.MkdirTemp("", "deploy-test-bin")
	if helpErr != nil {
		return
	}
	var bin string
	if bin, helpErr = buildBinary(binDir, "cmd/sessionbus"); helpErr != nil {
		return
	}
	if serveFlags, helpErr = helpFlags(bin, "serve", "--help"); helpErr != nil {
		return
	}
	// example-service is specified by the contract; once it is built,
	// its own help is the truth.
	exampleFl = cliFlags{flags: map[string]bool{"nats-url": true, "listen": true, "nats-inbox-prefix": true}}
	if _, err := os.Stat("../cmd/example-service"); err == nil {
		ebin, err := buildBinary(binDir, "cmd/example-service")
		if err == nil {
			if f, err := helpFlags(ebin, "--help"); err == nil {
				exampleFl = f
			}
		}
	}
}

// flags builds sessionbus (and example-service, once it exists) and
// returns the flags of `sessionbus serve` and of example-service.
func flags(t *testing.T) (serve, example cliFlags) {
	t.Helper()
	helpOnce.Do(loadFlags)
	if helpErr != nil {
		t.Fatal(helpErr)
	}
	if !serveFlags.env["SESSIONBUS_STREAM_REPLICAS"] || !serveFlags.flags["nats-url"] {
		t.Fatalf("sessionbus serve --help lacks --nats-url or SESSIONBUS_STREAM_REPLICAS: %v", serveFlags.sortedFlags())
	}
	return serveFlags, exampleFl
}

func sessionbusBinary(t *testing.T) string {
	t.Helper()
	flags(t)
	return filepath.Join(binDir, "sessionbus")
}

// checkArgs checks that every --flag of args is a flag of the program.
func checkArgs(t *testing.T, where string, args []string, f cliFlags) {
	t.Helper()
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !f.flags[name] {
			t.Errorf("%s: unknown flag %s (known: %v)", where, a, f.sortedFlags())
		}
	}
}

// checkEnv checks that every SESSIONBUS_* name is a variable of serve.
func checkEnv(t *testing.T, where string, names []string, f cliFlags) {
	t.Helper()
	for _, n := range names {
		if strings.HasPrefix(n, "SESSIONBUS_") && !f.env[n] {
			t.Errorf("%s: %s is not a variable of sessionbus serve", where, n)
		}
	}
}

// exampleInbox returns the inbox prefix example-service is started with:
// --nats-inbox-prefix=P or --nats-inbox-prefix P in args, else
// EXAMPLE_SERVICE_NATS_INBOX_PREFIX in env.
func exampleInbox(args []string, env map[string]string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--nats-inbox-prefix="); ok {
			return v
		}
		if a == "--nats-inbox-prefix" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return env["EXAMPLE_SERVICE_NATS_INBOX_PREFIX"]
}

// loopback reports whether a host:port listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// get walks a decoded YAML tree by map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func strs(v any, path ...any) []string {
	var out []string
	for _, x := range list(v, path...) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func TestKubernetesManifests(t *testing.T) {
	serve, example := flags(t)
	setPasswords(t)
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string][]map[string]any{}
	for _, file := range files {
		for i, d := range yamlDocs(t, file) {
			where := fmt.Sprintf("%s[%d]", file, i)
			if str(d, "apiVersion") == "" || str(d, "kind") == "" || str(d, "metadata", "name") == "" {
				t.Errorf("%s: apiVersion %q, kind %q, metadata.name %q: all required", where, str(d, "apiVersion"), str(d, "kind"), str(d, "metadata", "name"))
			}
			d["_file"] = where
			byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
		}
	}
	find := func(kind, name string) map[string]any {
		t.Helper()
		for _, d := range byKind[kind] {
			if str(d, "metadata", "name") == name {
				return d
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return nil
	}

	// The kustomization lists every manifest but the Secret templates.
	kust := find("Kustomization", "sessionbus")
	for _, file := range files {
		base := filepath.Base(file)
		if base == "kustomization.yaml" || base == "secrets.example.yaml" {
			continue
		}
		if !slices.Contains(strs(kust, "resources"), base) {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
	}
	for _, s := range byKind["Secret"] {
		for k, v := range get(s, "stringData").(map[string]any) {
			if vs := fmt.Sprint(v); vs != "REPLACE_ME" && vs != placeholderHash {
				t.Errorf("%s: %s holds a value, not a placeholder", s["_file"], k)
			}
		}
	}

	// Every container: non-root, read-only root, resources; passwords only
	// from Secrets.
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for _, d := range byKind[kind] {
			pod := get(d, "spec", "template", "spec")
			for _, c := range list(pod, "containers") {
				where := fmt.Sprintf("%s %s", d["_file"], str(c, "name"))
				if get(pod, "securityContext", "runAsNonRoot") != true && get(c, "securityContext", "runAsNonRoot") != true {
					t.Errorf("%s: not runAsNonRoot", where)
				}
				if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
					t.Errorf("%s: want readOnlyRootFilesystem and no privilege escalation", where)
				}
				if get(c, "resources", "requests") == nil || get(c, "resources", "limits", "memory") == nil {
					t.Errorf("%s: no resource requests or memory limit", where)
				}
				for _, e := range list(c, "env") {
					if strings.Contains(str(e, "name"), "PASSWORD") && get(e, "valueFrom", "secretKeyRef") == nil {
						t.Errorf("%s: %s does not come from a Secret", where, str(e, "name"))
					}
				}
			}
		}
	}

	// The managers.
	dep := find("Deployment", "sessionbus")
	if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("sessionbus: %d replicas, want 2 or more", r)
	}
	c := get(dep, "spec", "template", "spec", "containers", 0)
	args := strs(c, "args")
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("sessionbus args %q: want serve first", args)
	}
	checkArgs(t, "sessionbus args", args, serve)
	env := map[string]string{}
	var names []string
	for _, e := range list(c, "env") {
		names = append(names, str(e, "name"))
		env[str(e, "name")] = str(e, "value")
	}
	checkEnv(t, "sessionbus env", names, serve)
	for _, n := range names {
		if !strings.HasPrefix(n, "SESSIONBUS_") {
			t.Errorf("sessionbus env %s: sessionbus reads only SESSIONBUS_*", n)
		}
	}
	if env["SESSIONBUS_STREAM_REPLICAS"] != "3" || env["SESSIONBUS_NATS_URL"] == "" || env["SESSIONBUS_NATS_USER"] != "manager" {
		t.Errorf("sessionbus: want --stream-replicas 3 and --nats-url as the manager, got %v", env)
	}
	if env["SESSIONBUS_NATS_INBOX_PREFIX"] != inboxes["manager"] {
		t.Errorf("sessionbus: SESSIONBUS_NATS_INBOX_PREFIX %q, want the manager's inbox %s", env["SESSIONBUS_NATS_INBOX_PREFIX"], inboxes["manager"])
	}
	if !loopback(env["SESSIONBUS_ADMIN_ADDR"]) {
		t.Errorf("sessionbus: admin API on %q, want loopback", env["SESSIONBUS_ADMIN_ADDR"])
	}
	_, httpPort, _ := net.SplitHostPort(env["SESSIONBUS_HTTP_ADDR"])
	var portName string
	for _, p := range list(c, "ports") {
		if fmt.Sprint(get(p, "containerPort")) == httpPort {
			portName = str(p, "name")
		} else {
			t.Errorf("sessionbus: container port %v is not the HTTP API", get(p, "containerPort"))
		}
	}
	if portName == "" {
		t.Fatalf("sessionbus: no container port for SESSIONBUS_HTTP_ADDR %q", env["SESSIONBUS_HTTP_ADDR"])
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if str(c, probe, "httpGet", "path") != path || fmt.Sprint(get(c, probe, "httpGet", "port")) != portName {
			t.Errorf("sessionbus %s: %v, want GET %s on port %s", probe, get(c, probe), path, portName)
		}
	}
	svc := find("Service", "sessionbus")
	for _, p := range list(svc, "spec", "ports") {
		if tp := fmt.Sprint(get(p, "targetPort")); tp != portName && tp != httpPort {
			t.Errorf("sessionbus Service exposes %s: only the public API may be", tp)
		}
	}
	find("PodDisruptionBudget", "sessionbus")

	// example-service: flags exist, $(VAR)s are defined.
	ex := get(find("Deployment", "example-service"), "spec", "template", "spec", "containers", 0)
	checkArgs(t, "example-service args", strs(ex, "args"), example)
	defined := map[string]bool{}
	exEnv := map[string]string{}
	for _, e := range list(ex, "env") {
		defined[str(e, "name")] = true
		exEnv[str(e, "name")] = str(e, "value")
	}
	if p := exampleInbox(strs(ex, "args"), exEnv); p != inboxes["service"] {
		t.Errorf("example-service: inbox prefix %q, want the service's %s", p, inboxes["service"])
	}
	for _, a := range strs(ex, "args") {
		for _, m := range regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).FindAllStringSubmatch(a, -1) {
			if !defined[m[1]] {
				t.Errorf("example-service args use $(%s), which is not in its env", m[1])
			}
		}
	}

	// NATS: 3 replicas, headless Service, config equal to deploy/nats.
	sts := find("StatefulSet", "nats")
	if r, _ := get(sts, "spec", "replicas").(int); r != 3 {
		t.Errorf("nats: %d replicas, want 3", r)
	}
	headless := find("Service", str(sts, "spec", "serviceName"))
	if str(headless, "spec", "clusterIP") != "None" {
		t.Errorf("nats: serviceName %s is not headless", str(sts, "spec", "serviceName"))
	}
	find("PodDisruptionBudget", "nats")
	cm := find("ConfigMap", "nats-config")
	auth, err := os.ReadFile("nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if str(cm, "data", "auth.conf") != string(auth) {
		t.Error("the ConfigMap's auth.conf differs from deploy/nats/auth.conf")
	}
	dir := t.TempDir()
	for _, k := range []string{"nats.conf", "auth.conf"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(str(cm, "data", k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nc := get(sts, "spec", "template", "spec", "containers", 0)
	var natsEnv []string
	for _, e := range list(nc, "env") {
		natsEnv = append(natsEnv, str(e, "name"))
	}
	for _, v := range roles {
		if !slices.Contains(natsEnv, v) {
			t.Errorf("nats: env lacks %s, which auth.conf needs", v)
		}
	}
	t.Setenv("POD_NAME", "nats-1")
	opts := parseNATS(t, filepath.Join(dir, "nats.conf"))
	if !opts.SyncAlways || !opts.JetStream || opts.ServerName != "nats-1" {
		t.Errorf("kubernetes nats.conf: sync always %v, jetstream %v, server_name %q", opts.SyncAlways, opts.JetStream, opts.ServerName)
	}
	for i, r := range opts.Routes {
		if want := fmt.Sprintf("nats-%d.%s:6222", i, str(headless, "metadata", "name")); r.Host != want {
			t.Errorf("route %d is %s, want %s", i, r.Host, want)
		}
	}
	if len(opts.Routes) != 3 {
		t.Errorf("%d routes, want 3", len(opts.Routes))
	}
	checkRoles(t, opts, embedded.ServicePermissions())
	if !slices.Contains(strs(nc, "args"), "/etc/nats/nats.conf") {
		t.Errorf("nats args %q do not load /etc/nats/nats.conf", strs(nc, "args"))
	}

	// kustomize renders the whole set, where kubectl is installed.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		if out, err := exec.Command(kubectl, "kustomize", "kubernetes").CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize: %v\n%s", err, out)
		}
	}
}

// composeVars are the variables compose.yaml interpolates.
var composeVarRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}`)

// envFileKeys reads KEY=VALUE lines; commented-out assignments count too
// when withComments.
func envFileKeys(t *testing.T, file string, withComments bool) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	assign := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || (strings.HasPrefix(line, "#") && !withComments) {
			continue
		}
		m := assign.FindStringSubmatch(line)
		if m == nil {
			if !strings.HasPrefix(line, "#") {
				t.Errorf("%s: not KEY=VALUE: %q", file, line)
			}
			continue
		}
		keys[m[1]] = strings.Trim(m[2], `'"`)
	}
	return keys
}

func envNames(v any) []string {
	var names []string
	switch e := v.(type) {
	case map[string]any:
		for k := range e {
			names = append(names, k)
		}
	case []any:
		for _, x := range e {
			k, _, _ := strings.Cut(fmt.Sprint(x), "=")
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

func TestCompose(t *testing.T) {
	serve, example := flags(t)
	raw, err := os.ReadFile("docker/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := yamlDocs(t, "docker/compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	services, _ := get(docs[0], "services").(map[string]any)
	stages := dockerStages(t)
	var natsSvcs, managers []string
	for name, s := range services {
		if ctx := str(s, "build", "context"); ctx != "" {
			if _, err := os.Stat(filepath.Join("docker", ctx, str(s, "build", "dockerfile"))); err != nil {
				t.Errorf("%s: build file: %v", name, err)
			}
			if tg := str(s, "build", "target"); !slices.Contains(stages, tg) {
				t.Errorf("%s: build target %q is not a Dockerfile stage %q", name, tg, stages)
			}
		}
		if deps, ok := get(s, "depends_on").(map[string]any); ok {
			for d := range deps {
				if services[d] == nil {
					t.Errorf("%s depends on unknown service %s", name, d)
				}
			}
		}
		for _, p := range strs(s, "ports") {
			parts := strings.Split(p, ":")
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
			if parts[len(parts)-1] == "8081" {
				t.Errorf("%s publishes the admin API: %s", name, p)
			}
		}
		switch {
		case strings.HasPrefix(str(s, "image"), "nats:"):
			natsSvcs = append(natsSvcs, name)
			args := strs(s, "command")
			if len(args) != 2 || args[0] != "--config" {
				t.Errorf("%s: command %q, want --config FILE", name, args)
				continue
			}
			if !slices.Contains(strs(s, "volumes"), "../nats:/etc/nats:ro") {
				t.Errorf("%s: deploy/nats is not mounted on /etc/nats", name)
				continue
			}
			conf := filepath.Join("nats", strings.TrimPrefix(args[1], "/etc/nats/"))
			if opts := parseNATSWithEnv(t, conf); opts.ServerName != name {
				t.Errorf("%s runs %s, whose server_name is %s: the routes use the service names", name, conf, opts.ServerName)
			}
			var want []string
			for _, v := range roles {
				want = append(want, v)
			}
			slices.Sort(want)
			if got := envNames(get(s, "environment")); !slices.Equal(got, want) {
				t.Errorf("%s: environment %q, want %q", name, got, want)
			}
		case str(s, "build", "target") == "sessionbus":
			managers = append(managers, name)
			args := strs(s, "command")
			if len(args) == 0 || args[0] != "serve" {
				t.Errorf("%s: command %q, want serve", name, args)
			}
			checkArgs(t, name, args, serve)
			env, _ := get(s, "environment").(map[string]any)
			names := envNames(env)
			checkEnv(t, name, names, serve)
			if fmt.Sprint(env["SESSIONBUS_STREAM_REPLICAS"]) != "3" || env["SESSIONBUS_NATS_USER"] != "manager" || env["SESSIONBUS_INSTANCE"] != name {
				t.Errorf("%s: want 3 stream replicas, NATS user manager, instance %s: %v", name, name, env)
			}
			if p := env["SESSIONBUS_NATS_INBOX_PREFIX"]; p != inboxes["manager"] {
				t.Errorf("%s: SESSIONBUS_NATS_INBOX_PREFIX %v, want the manager's inbox %s", name, p, inboxes["manager"])
			}
			if !loopback(fmt.Sprint(env["SESSIONBUS_ADMIN_ADDR"])) {
				t.Errorf("%s: admin API on %v", name, env["SESSIONBUS_ADMIN_ADDR"])
			}
			for _, u := range strings.Split(fmt.Sprint(env["SESSIONBUS_NATS_URL"]), ",") {
				pu, err := url.Parse(u)
				if err != nil || services[pu.Hostname()] == nil {
					t.Errorf("%s: NATS URL %s is not a compose service (%v)", name, u, err)
				}
			}
		case str(s, "build", "target") == "example-service":
			checkArgs(t, name, strs(s, "command"), example)
			env := map[string]string{}
			envMap, _ := get(s, "environment").(map[string]any)
			for k, v := range envMap {
				env[k] = fmt.Sprint(v)
			}
			if p := exampleInbox(strs(s, "command"), env); p != inboxes["service"] {
				t.Errorf("%s: inbox prefix %q, want the service's %s", name, p, inboxes["service"])
			}
		default:
			t.Errorf("unexpected service %s", name)
		}
	}
	if len(natsSvcs) != 3 || len(managers) != 2 || services["example-service"] == nil {
		t.Errorf("services: nats %v, managers %v: want 3 NATS nodes, 2 managers and example-service", natsSvcs, managers)
	}

	// Every interpolated variable has a line in example.env.
	keys := envFileKeys(t, "docker/example.env", false)
	for _, m := range composeVarRe.FindAllStringSubmatch(string(raw), -1) {
		if _, ok := keys[m[1]]; !ok {
			t.Errorf("compose.yaml uses ${%s}, which docker/example.env lacks", m[1])
		}
	}
}

// parseNATSWithEnv parses a node config with placeholder hashes set.
func parseNATSWithEnv(t *testing.T, file string) *server.Options {
	t.Helper()
	for _, v := range roles {
		if os.Getenv(v) == "" {
			t.Setenv(v, placeholderHash)
		}
	}
	return parseNATS(t, file)
}

// dockerLines returns the Dockerfile's instructions, continuation lines
// joined, comments dropped.
func dockerLines(t *testing.T) [][2]string {
	t.Helper()
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		cur += " " + strings.TrimSuffix(trimmed, `\`)
		if strings.HasSuffix(trimmed, `\`) {
			continue
		}
		instr, rest, _ := strings.Cut(strings.TrimSpace(cur), " ")
		out = append(out, [2]string{strings.ToUpper(instr), strings.TrimSpace(rest)})
		cur = ""
	}
	return out
}

func dockerStages(t *testing.T) []string {
	t.Helper()
	var stages []string
	for _, l := range dockerLines(t) {
		if l[0] == "FROM" {
			f := strings.Fields(l[1])
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages = append(stages, f[2])
			}
		}
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	serve, _ := flags(t)
	lines := dockerLines(t)
	type stage struct {
		name, from, user string
		env              []string
	}
	var stages []*stage
	var args []string
	secret := regexp.MustCompile(`(?i)(password|passwd|secret|token|private|creds|api_?key)`)
	var exposed []string
	var healthcheck, cmd, entrypoint string
	for _, l := range lines {
		instr, rest := l[0], l[1]
		var cur *stage
		if len(stages) > 0 {
			cur = stages[len(stages)-1]
		}
		switch instr {
		case "FROM":
			f := strings.Fields(rest)
			s := &stage{from: f[0]}
			if len(f) == 3 {
				s.name = f[2]
			}
			stages = append(stages, s)
		case "ARG":
			args = append(args, rest)
		case "USER":
			cur.user = rest
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, _, _ := strings.Cut(kv, "=")
				cur.env = append(cur.env, k)
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(rest)...)
		case "HEALTHCHECK":
			healthcheck = rest
		case "CMD":
			cmd = rest
		case "ENTRYPOINT":
			entrypoint = rest
		case "COPY", "ADD":
			if strings.Contains(rest, ".env") || strings.Contains(rest, ".creds") {
				t.Errorf("Dockerfile copies a secret: %s %s", instr, rest)
			}
		}
		if (instr == "ENV" || instr == "ARG" || instr == "LABEL") && secret.MatchString(rest) {
			t.Errorf("Dockerfile sets a secret: %s %s", instr, rest)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a runtime", len(stages))
	}
	final := stages[len(stages)-1]
	if final.name != "sessionbus" {
		t.Errorf("the last (default) stage is %q, want sessionbus", final.name)
	}
	for _, s := range stages {
		if !strings.Contains(s.from, "distroless") && !strings.Contains(s.from, "scratch") {
			continue
		}
		if s.user == "" || s.user == "root" || strings.HasPrefix(s.user, "0:") || s.user == "0" {
			t.Errorf("runtime stage %s runs as %q, want a non-root USER", s.name, s.user)
		}
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(must(os.ReadFile("../go.mod")))
	if !slices.Contains(args, "GO_VERSION="+string(goVersion[1])) || !strings.HasPrefix(stages[0].from, "golang:") {
		t.Errorf("builder: FROM %s with ARGs %q, want golang:${GO_VERSION} with GO_VERSION=%s (go.mod)", stages[0].from, args, goVersion[1])
	}
	if !slices.Contains(stages[0].env, "CGO_ENABLED") {
		t.Error("builder does not set CGO_ENABLED=0")
	}
	checkEnv(t, "Dockerfile ENV", final.env, serve)
	for _, p := range []string{"4222", "8080", "8081"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("Dockerfile does not EXPOSE %s", p)
		}
	}
	if healthcheck == "" {
		t.Error("Dockerfile has no HEALTHCHECK instruction (NONE with a note is fine)")
	}
	if !strings.Contains(entrypoint, "/sessionbus") || cmd != `["serve"]` {
		t.Errorf("ENTRYPOINT %s CMD %s, want sessionbus serve", entrypoint, cmd)
	}
	ignore := string(must(os.ReadFile("docker/Dockerfile.dockerignore")))
	for _, p := range []string{".git", ".env", "sessionbus-data"} {
		if !strings.Contains(ignore, p) {
			t.Errorf("Dockerfile.dockerignore does not keep out %s", p)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// unit is a parsed systemd unit: section → key → values (keys repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(must(os.ReadFile(file))), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", file, i+1, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemd(t *testing.T) {
	serve, _ := flags(t)
	u := parseUnit(t, "systemd/sessionbus.service")
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("sessionbus.service has no [%s]", s)
		}
	}
	execStart := strings.Fields(u.get("Service", "ExecStart"))
	if len(execStart) < 2 || filepath.Base(execStart[0]) != "sessionbus" || execStart[1] != "serve" {
		t.Errorf("ExecStart %q, want sessionbus serve", execStart)
	}
	checkArgs(t, "ExecStart", execStart[1:], serve)
	want := map[string]string{
		"DynamicUser": "yes", "StateDirectory": "sessionbus", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"PrivateTmp": "yes", "ProtectHome": "yes", "KillSignal": "SIGTERM", "CapabilityBoundingSet": "",
		"EnvironmentFile": "/etc/sessionbus/sessionbus.env",
	}
	for k, v := range want {
		if _, ok := u["Service"][k]; !ok || u.get("Service", k) != v {
			t.Errorf("sessionbus.service: %s=%q, want %q", k, u.get("Service", k), v)
		}
	}
	for _, k := range []string{"RestrictAddressFamilies", "TimeoutStopSec", "SystemCallFilter"} {
		if u.get("Service", k) == "" {
			t.Errorf("sessionbus.service: no %s", k)
		}
	}
	if d, err := time.ParseDuration(u.get("Service", "TimeoutStopSec")); err != nil || d < 20*time.Second {
		t.Errorf("TimeoutStopSec %q: the manager needs 15s to close", u.get("Service", "TimeoutStopSec"))
	}
	var envs []string
	for _, e := range u["Service"]["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		envs = append(envs, k)
		if k == "SESSIONBUS_DATA_DIR" && v != "/var/lib/"+u.get("Service", "StateDirectory") {
			t.Errorf("SESSIONBUS_DATA_DIR=%s is not the StateDirectory", v)
		}
	}
	if !slices.Contains(envs, "SESSIONBUS_DATA_DIR") {
		t.Error("sessionbus.service does not put the data dir in the StateDirectory")
	}
	checkEnv(t, "sessionbus.service", envs, serve)
	keys := envFileKeys(t, "systemd/sessionbus.env.example", true)
	var names []string
	for k := range keys {
		names = append(names, k)
		if !strings.HasPrefix(k, "SESSIONBUS_") {
			t.Errorf("sessionbus.env.example: %s is not a SESSIONBUS_ variable", k)
		}
	}
	checkEnv(t, "sessionbus.env.example", names, serve)
	if keys["SESSIONBUS_STREAM_REPLICAS"] != "3" || keys["SESSIONBUS_NATS_PASSWORD"] != "REPLACE_ME" {
		t.Errorf("sessionbus.env.example: want 3 replicas and a placeholder password: %v", keys)
	}
	if keys["SESSIONBUS_NATS_USER"] != "manager" || keys["SESSIONBUS_NATS_INBOX_PREFIX"] != inboxes["manager"] {
		t.Errorf("sessionbus.env.example: NATS user %q with inbox prefix %q, want manager with %s", keys["SESSIONBUS_NATS_USER"], keys["SESSIONBUS_NATS_INBOX_PREFIX"], inboxes["manager"])
	}

	n := parseUnit(t, "systemd/nats-server@.service")
	if !strings.Contains(n.get("Service", "ExecStart"), "/etc/nats/%i.conf") || n.get("Service", "StateDirectory") != "nats" {
		t.Errorf("nats-server@.service: ExecStart %q StateDirectory %q", n.get("Service", "ExecStart"), n.get("Service", "StateDirectory"))
	}
	for _, f := range natsNodes {
		if opts := parseNATSWithEnv(t, f); !strings.HasPrefix(opts.StoreDir, "/var/lib/nats/") {
			t.Errorf("%s: store_dir %s is not in the unit's StateDirectory /var/lib/nats", f, opts.StoreDir)
		}
	}
	nkeys := envFileKeys(t, "systemd/nats.env.example", false)
	for _, v := range roles {
		if nkeys[v] != placeholderHash {
			t.Errorf("nats.env.example: %s=%q, want the placeholder", v, nkeys[v])
		}
	}

	// systemd's own parser, where it is installed.
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: skipping verify")
		return
	}
	bin := sessionbusBinary(t)
	dir := t.TempDir()
	for file, instance := range map[string]string{"sessionbus.service": "sessionbus.service", "nats-server@.service": "nats-server@nats-1.service"} {
		b := must(os.ReadFile(filepath.Join("systemd", file)))
		// verify wants ExecStart to exist; any executable will do.
		b = regexp.MustCompile(`/usr/local/bin/(sessionbus|nats-server)`).ReplaceAll(b, []byte(bin))
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", filepath.Join(dir, instance)).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
		}
	}
}

// TestGenEnv runs docker/gen-env.sh with the test binary as htpasswd and
// checks that every hash matches its password and the NATS configs accept
// them.
func TestGenEnv(t *testing.T) {
	for _, tool := range []string{"sh", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "htpasswd")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "docker/gen-env.sh")
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gen-env.sh: %v\n%s", err, stderr.Bytes())
	}
	envFile := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(envFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	got := envFileKeys(t, envFile, false)
	want := envFileKeys(t, "docker/example.env", false)
	if !slices.Equal(sorted(keysOf(got)), sorted(keysOf(want))) {
		t.Errorf("gen-env.sh makes %v, example.env has %v", sorted(keysOf(got)), sorted(keysOf(want)))
	}
	if !bytes.Contains(out, []byte("_PASSWORD_HASH='$2")) {
		t.Errorf("hashes are not single-quoted:\n%s", out)
	}
	for role, hashVar := range roles {
		pw := got[strings.ToUpper(role)+"_PASSWORD"]
		if len(pw) != 64 || bcrypt.CompareHashAndPassword([]byte(got[hashVar]), []byte(pw)) != nil {
			t.Errorf("%s: the hash does not match the password", role)
		}
		t.Setenv(hashVar, got[hashVar])
	}
	opts := parseNATS(t, natsNodes[0])
	if u := userOf(t, opts, "manager"); u.Password != got["NATS_MANAGER_PASSWORD_HASH"] {
		t.Errorf("nats-1.conf: manager password %q, want the generated hash", u.Password)
	}
}

func keysOf(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}
