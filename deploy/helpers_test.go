package deploy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/sessionbus/sessionbus/events"
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

// checkRoles checks the users of a parsed config against the roles, one
// subtest per rule.
func checkRoles(t *testing.T, opts *server.Options, want *server.Permissions) {
	t.Helper()
	t.Run("passwords are bcrypt hashes from the environment", func(t *testing.T) {
		for role := range roles {
			if u := userOf(t, opts, role); u.Password == "" || !strings.HasPrefix(u.Password, "$2") {
				t.Errorf("%s: password is not the bcrypt hash from the environment", role)
			}
		}
	})
	t.Run("each role is in its account", func(t *testing.T) {
		for role := range roles {
			u := userOf(t, opts, role)
			wantAcc := "SESSIONBUS"
			if role == "sys" {
				wantAcc = "SYS"
			}
			if u.Account == nil || u.Account.Name != wantAcc {
				t.Errorf("%s: account %v, want %s", role, u.Account, wantAcc)
			}
		}
	})
	t.Run("the system account is SYS", func(t *testing.T) {
		if opts.SystemAccount != "SYS" {
			t.Errorf("system_account %q, want SYS", opts.SystemAccount)
		}
	})

	svc := userOf(t, opts, "service").Permissions
	if svc == nil || svc.Publish == nil || svc.Subscribe == nil {
		t.Fatal("service: no publish/subscribe permissions")
	}
	t.Run("service is the embedded service role but for its inbox", func(t *testing.T) {
		checkServiceUser(t, "service", svc, want)
	})

	// Private inboxes: every role subscribes to its own prefix and to no
	// other inbox; none may publish into inboxes (the manager answers
	// through allow_responses only).
	var inboxSubjects []string
	for _, prefix := range inboxes {
		inboxSubjects = append(inboxSubjects, prefix+".x.1")
	}
	inboxSubjects = append(inboxSubjects, "_INBOX.x.1", "_INBOX_orders.x.1")
	t.Run("each role reads its own inbox only and publishes into none", func(t *testing.T) {
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
		}
	})
	t.Run("only the manager has allow_responses", func(t *testing.T) {
		for role := range inboxes {
			if p := userOf(t, opts, role).Permissions; role != "manager" && p != nil && p.Response != nil {
				t.Errorf("%s has allow_responses: only the manager answers requests", role)
			}
		}
	})

	others := []string{"service", "audit", "admin"}
	for _, role := range others {
		if userOf(t, opts, role).Permissions == nil {
			t.Fatalf("%s: no permissions (may do anything)", role)
		}
	}
	t.Run("no other role publishes to the buckets or manages the stream", func(t *testing.T) {
		for _, role := range others {
			if s, ok := allowsAny(userOf(t, opts, role).Permissions.Publish, managerOnly...); ok {
				t.Errorf("%s may publish %s", role, s)
			}
		}
	})
	t.Run("no other role reads the users bucket or serves commands", func(t *testing.T) {
		for _, role := range others {
			if s, ok := allowsAny(userOf(t, opts, role).Permissions.Subscribe, "$KV.sessionbus_users.x", "auth.cmd.login", "auth.cmd.>"); ok {
				t.Errorf("%s may subscribe %s", role, s)
			}
		}
	})
	t.Run("no other role publishes facts", func(t *testing.T) {
		for _, role := range others {
			if s, ok := allowsAny(userOf(t, opts, role).Permissions.Publish, "auth.events.session.revoked.x"); ok {
				t.Errorf("%s may publish facts: %s", role, s)
			}
		}
	})
	t.Run("audit sends no command", func(t *testing.T) {
		if s, ok := allowsAny(userOf(t, opts, "audit").Permissions.Publish, "auth.cmd.login", "auth.cmd.revoke", "auth.cmd.jwks"); ok {
			t.Errorf("audit may publish %s", s)
		}
	})
	t.Run("service sends no admin command", func(t *testing.T) {
		if s, ok := allowsAny(svc.Publish, "auth.cmd.revoke", "auth.cmd.sessions", "auth.cmd.users.add", "auth.cmd.keys.rotate"); ok {
			t.Errorf("service may send admin commands: %s", s)
		}
	})

	admin := userOf(t, opts, "admin").Permissions
	t.Run("admin may publish all a service may", func(t *testing.T) {
		for _, s := range want.Publish.Allow {
			if !slices.ContainsFunc(admin.Publish.Allow, func(a string) bool { return subjectCovers(a, s) }) {
				t.Errorf("admin lacks the service permission to publish %s", s)
			}
		}
	})
	// Operators read the whole stream (events tail), services do not.
	t.Run("admin reads the whole stream", func(t *testing.T) {
		if !slices.Contains(admin.Subscribe.Allow, events.SubjectPrefix+">") {
			t.Errorf("admin may not subscribe to %s>: %q", events.SubjectPrefix, admin.Subscribe.Allow)
		}
	})
	t.Run("admin sends the admin commands", func(t *testing.T) {
		for _, s := range []string{events.SubjectRevoke, events.SubjectSessions, events.SubjectUsersAdd, events.SubjectUsersDisable,
			events.SubjectUsersList, events.SubjectUsersEnable, events.SubjectUsersPasswd, events.SubjectKeysList, events.SubjectKeysRotate, events.SubjectKeysRevoke} {
			if _, ok := allowsAny(admin.Publish, s); !ok {
				t.Errorf("admin may not send %s", s)
			}
		}
	})

	mgr := userOf(t, opts, "manager").Permissions
	t.Run("manager publishes facts, writes the buckets and creates the streams", func(t *testing.T) {
		for _, s := range []string{"auth.events.session.created.x", "$KV.sessionbus_users.x", "$KV.sessionbus_keys.x", "$KV.sessionbus_grace.x",
			"$JS.API.STREAM.CREATE.AUTH_EVENTS", "$JS.API.STREAM.CREATE.KV_sessionbus_users", "$JS.API.STREAM.CREATE.KV_sessionbus_keys", "$JS.API.STREAM.CREATE.KV_sessionbus_grace"} {
			if _, ok := allowsAny(mgr.Publish, s); !ok {
				t.Errorf("manager may not publish %s", s)
			}
		}
	})
	t.Run("manager may not delete or purge the stream", func(t *testing.T) {
		if s, ok := allowsAny(mgr.Publish, "$JS.API.STREAM.DELETE.AUTH_EVENTS", "$JS.API.STREAM.PURGE.AUTH_EVENTS"); ok {
			t.Errorf("manager may delete or purge the stream: %s", s)
		}
	})
	t.Run("manager serves commands in its queue group", func(t *testing.T) {
		if !slices.Contains(mgr.Subscribe.Allow, "auth.cmd.> "+events.QueueGroup) {
			t.Errorf("manager does not serve auth.cmd.> in queue group %q: %q", events.QueueGroup, mgr.Subscribe.Allow)
		}
	})
	// The manager replies to the requester's inbox, whatever its prefix,
	// through allow_responses: one reply per request.
	t.Run("manager replies once per request", func(t *testing.T) {
		if r := mgr.Response; r == nil || r.MaxMsgs != 1 || r.Expires <= 0 {
			t.Errorf("manager allow_responses %+v, want one reply per request, expiring", r)
		}
	})
}

// checkServiceUser checks that a service user has the permissions of
// the embedded service role (want) but for the inbox: the role's
// _INBOX.> is the user's private inbox instead. One subtest per rule.
func checkServiceUser(t *testing.T, user string, p, want *server.Permissions) {
	t.Helper()
	if p == nil || p.Publish == nil || p.Subscribe == nil {
		t.Fatalf("%s: no publish/subscribe permissions", user)
	}
	t.Run("publishes what the embedded role publishes", func(t *testing.T) {
		if got, w := sorted(p.Publish.Allow), sorted(want.Publish.Allow); !slices.Equal(got, w) {
			t.Errorf("%s publish allow differs from embedded.ServicePermissions:\n got %q\nwant %q", user, got, w)
		}
	})
	// The one difference, explicitly.
	inbox := "_INBOX_" + user + ".>"
	t.Run("reads its private inbox instead of the shared one", func(t *testing.T) {
		if !slices.Contains(want.Subscribe.Allow, sharedInbox) {
			t.Errorf("embedded.ServicePermissions subscribes %q without %s: revisit the inbox exception", want.Subscribe.Allow, sharedInbox)
		}
		if slices.Contains(p.Subscribe.Allow, sharedInbox) || !slices.Contains(p.Subscribe.Allow, inbox) {
			t.Errorf("%s subscribes %q: want its private inbox %s instead of %s", user, p.Subscribe.Allow, inbox, sharedInbox)
		}
	})
	t.Run("subscribes, but for the inbox, to what the embedded role does", func(t *testing.T) {
		rest := func(l []string, drop string) []string {
			return sorted(slices.DeleteFunc(slices.Clone(l), func(s string) bool { return s == drop }))
		}
		if got, w := rest(p.Subscribe.Allow, inbox), rest(want.Subscribe.Allow, sharedInbox); !slices.Equal(got, w) {
			t.Errorf("%s subscribe allow, but for the inbox, differs from embedded.ServicePermissions:\n got %q\nwant %q", user, got, w)
		}
	})
	t.Run("no deny lists or allow_responses", func(t *testing.T) {
		if len(p.Publish.Deny) != 0 || len(p.Subscribe.Deny) != 0 || p.Response != nil {
			t.Errorf("%s has deny lists or allow_responses the embedded role has not", user)
		}
	})
	// Of AUTH_EVENTS only the revocation and key facts, whatever the route.
	t.Run("no request reads other facts or others' consumers", func(t *testing.T) {
		for _, s := range serviceMayNotPublish {
			if a, ok := serverAllows(p.Publish, s); ok {
				t.Errorf("%s may publish %s (allowed by %s)", user, s, a)
			}
		}
	})
	t.Run("no subscription receives other facts", func(t *testing.T) {
		for _, s := range serviceMayNotSubscribe {
			if a, ok := serverAllows(p.Subscribe, s); ok {
				t.Errorf("%s may subscribe to %s (allowed by %s)", user, s, a)
			}
		}
	})
	t.Run("subscribes to the revocations and the key facts", func(t *testing.T) {
		for _, s := range []string{"auth.events.session.revoked.x", "auth.events.key.rotated.x", events.SubjectRevocations, events.SubjectPrefix + "key.>"} {
			if _, ok := serverAllows(p.Subscribe, s); !ok {
				t.Errorf("%s may not subscribe to %s", user, s)
			}
		}
	})
	t.Run("creates a consumer filtered on the revocations", func(t *testing.T) {
		if _, ok := serverAllows(p.Publish, "$JS.API.CONSUMER.CREATE.AUTH_EVENTS.x."+events.SubjectRevocations); !ok {
			t.Errorf("%s may not create a consumer filtered on the revocations", user)
		}
	})
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

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func keysOf(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	return k
}
