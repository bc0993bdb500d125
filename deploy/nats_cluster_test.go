package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/kvstore"
)

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

	t.Run("a wrong password is refused", func(t *testing.T) {
		if nc, err := nats.Connect(c.servers[0].ClientURL(), nats.UserInfo("service", "wrong")); err == nil {
			nc.Close()
			t.Error("service connected with a wrong password")
		}
	})
	t.Run("no credentials are refused", func(t *testing.T) {
		if nc, err := nats.Connect(c.servers[0].ClientURL()); err == nil {
			nc.Close()
			t.Error("connected without credentials")
		}
	})

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
	t.Run("AUTH_EVENTS has 3 replicas", func(t *testing.T) {
		if r := stream.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("AUTH_EVENTS has %d replicas, want 3", r)
		}
	})
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
	t.Run("service may not subscribe to other facts", func(t *testing.T) {
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
	})
	t.Run("service may not consume other facts", func(t *testing.T) {
		for _, filters := range [][]string{nil, {events.SubjectPrefix + "login.failed.>"}, {events.SubjectPrefix + ">"}, {events.SubjectRevocations, events.SubjectPrefix + "login.>"}} {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			if _, err := sjs.OrderedConsumer(cctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: filters}); err == nil {
				t.Errorf("service: created a consumer filtered on %q", filters)
			}
			ccancel()
		}
		serrs.waitViolation(t, "service", "publish", "$JS.API.CONSUMER.CREATE."+events.StreamName+".")
	})
	t.Run("service may not get messages or stream info", func(t *testing.T) {
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
	})
	// The server compares the filter configured with the one in the
	// create subject the service may use.
	t.Run("service may not widen the filter of the consumer it may create", func(t *testing.T) {
		smuggled := "$JS.API.CONSUMER.CREATE." + events.StreamName + ".snoop." + events.SubjectRevocations
		if msg, err := snc.Request(smuggled, []byte(`{"stream_name":"AUTH_EVENTS","config":{"name":"snoop","filter_subject":"auth.events.>","ack_policy":"none"}}`), 5*time.Second); err != nil || !bytes.Contains(msg.Data, []byte(`"error"`)) {
			t.Errorf("service: a consumer filtered on auth.events.> through %s: %v", smuggled, err)
		}
	})
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
	t.Run("the service's key set follows a rotation by the admin", func(t *testing.T) {
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
	})

	// The service cannot publish facts, read the buckets or send admin
	// commands.
	forged := events.SubjectPrefix + "session.revoked.forged"
	t.Run("service may not publish facts", func(t *testing.T) {
		if err := snc.Publish(forged, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		_ = snc.Flush()
		serrs.waitViolation(t, "service", "publish", forged)
	})
	// Denied requests get no answer: wait briefly, then look for the
	// permission violation.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	t.Run("service may not open the users bucket", func(t *testing.T) {
		sctx, scancel := short()
		if _, err := sjs.KeyValue(sctx, kvstore.UsersBucket); err == nil {
			t.Error("service opened the users bucket")
		}
		scancel()
	})
	t.Run("service may not read the users bucket with a direct get", func(t *testing.T) {
		direct := "$JS.API.DIRECT.GET.KV_" + kvstore.UsersBucket
		if _, err := snc.Request(direct, []byte(`{"last_by_subj":"$KV.sessionbus_users.x"}`), 500*time.Millisecond); err == nil {
			t.Error("service read the users bucket with a direct get")
		}
		serrs.waitViolation(t, "service", "publish", direct)
	})
	t.Run("service may not watch the keys bucket", func(t *testing.T) {
		if _, err := snc.SubscribeSync("$KV." + kvstore.KeysBucket + ".>"); err != nil {
			t.Fatal(err)
		}
		serrs.waitViolation(t, "service", "subscription", "$KV."+kvstore.KeysBucket+".>")
	})
	t.Run("service may not serve commands", func(t *testing.T) {
		if _, err := snc.QueueSubscribeSync(events.SubjectLogin, events.QueueGroup); err != nil {
			t.Fatal(err)
		}
		serrs.waitViolation(t, "service", "subscription", events.SubjectLogin)
	})
	t.Run("service may not revoke a session", func(t *testing.T) {
		sctx, scancel := short()
		if err := events.Request(sctx, snc, events.SubjectRevoke, "/deploy-test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "test"}, nil); err == nil {
			t.Error("service revoked a session")
		}
		scancel()
		serrs.waitViolation(t, "service", "publish", events.SubjectRevoke)
	})

	// Private inboxes. Another program with the service password, on the
	// admin's server, may subscribe to the service's inbox but not to the
	// shared _INBOX.> nor to the admin's, manager's or audit's inboxes.
	spy, spyErrs := c.connect(t, 1, "service", pw["service"])
	t.Run("service may not read the shared inbox or other roles' inboxes", func(t *testing.T) {
		for _, subj := range []string{sharedInbox, inboxes["admin"] + ".>", inboxes["manager"] + ".>", inboxes["audit"] + ".>", ">"} {
			sub, err := spy.SubscribeSync(subj)
			if err != nil {
				t.Fatal(err)
			}
			spyErrs.waitViolation(t, "service", "subscription", subj)
			_ = sub.Unsubscribe()
		}
	})
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
	// included, on _INBOX_service. (Without that, the next rule would
	// prove nothing.)
	if !t.Run("service reads its own replies on its private inbox", func(t *testing.T) {
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
	}) {
		t.FailNow()
	}
	// The admin's requests work with _INBOX_admin, and their replies (user
	// and session lists) never reach the spy.
	t.Run("admin's replies reach its private inbox and no one else", func(t *testing.T) {
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
	})
	_ = spySub.Unsubscribe()
	_ = adminSub.Unsubscribe()
	// A client that keeps the default prefix is refused its own inbox, and
	// its requests time out.
	t.Run("a client with the default inbox prefix gets no reply", func(t *testing.T) {
		lost, lostErrs := c.connect(t, 1, "admin", pw["admin"], nats.CustomInboxPrefix("_INBOX"))
		ri := lost.NewRespInbox()
		sctx, scancel := short()
		if err := events.Request(sctx, lost, events.SubjectJWKS, "/deploy-test", struct{}{}, nil); err == nil {
			t.Error("admin got a reply on the shared _INBOX")
		}
		scancel()
		lostErrs.waitViolation(t, "admin with the default inbox", "subscription", ri[:strings.LastIndex(ri, ".")+1]+"*")
	})

	// The manager can read the buckets (it wrote alice there).
	t.Run("manager reads the buckets and the stream", func(t *testing.T) {
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
	})

	// Audit: the real audit code replays the stream, follows it through a
	// durable consumer (deleting a stale durable of the same name to
	// reposition it) and verifies the copy against the stream; it may
	// send no command.
	unc, uerrs := c.connect(t, 0, "audit", pw["audit"], nats.CustomInboxPrefix(inboxes["audit"]))
	ujs, err := jetstream.New(unc)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("audit replays, follows and verifies against the stream", func(t *testing.T) {
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
	})
	t.Run("audit sends no command", func(t *testing.T) {
		sctx, scancel := short()
		if err := events.Request(sctx, unc, events.SubjectJWKS, "/deploy-test", struct{}{}, nil); err == nil {
			t.Error("audit sent a command")
		}
		scancel()
		uerrs.waitViolation(t, "audit", "publish", events.SubjectJWKS)
	})

	// Admin revokes the session; the manager may not subscribe to
	// commands outside its queue group.
	if !t.Run("admin revokes a session and the service's deny-list has it", func(t *testing.T) {
		if err := events.Request(ctx, anc, events.SubjectRevoke, "/deploy-test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "test"}, nil); err != nil {
			t.Errorf("admin: revoke: %v", err)
		}
		for denied, _ := deny.Denied(denylist.Token{SessionID: tok.SessionID}); !denied; denied, _ = deny.Denied(denylist.Token{SessionID: tok.SessionID}) {
			if ctx.Err() != nil {
				t.Fatal("service: the revoked session never reached the deny-list")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}) {
		t.FailNow()
	}
	// The service's own consumer and core subscription on the
	// revocations see it too.
	wantRev := events.SubjectPrefix + "session.revoked." + tok.SessionID
	t.Run("service's consumer on the revocations reads the revocation", func(t *testing.T) {
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
	})
	t.Run("service's subscription to the revocations receives the revocation", func(t *testing.T) {
		if msg, err := revSub.NextMsg(5 * time.Second); err != nil || msg.Subject != wantRev {
			t.Errorf("service: subscription to the revocations: %v, want %s", err, wantRev)
		}
	})
	t.Run("admin may not serve commands", func(t *testing.T) {
		if _, err := anc.SubscribeSync(events.SubjectLogin); err != nil {
			t.Fatal(err)
		}
		aerrs.waitViolation(t, "admin", "subscription", events.SubjectLogin)
	})
	mnc2, merrs := c.connect(t, 1, "manager", pw["manager"])
	t.Run("manager serves commands only in its queue group", func(t *testing.T) {
		if _, err := mnc2.SubscribeSync(events.SubjectLogin); err != nil {
			t.Fatal(err)
		}
		merrs.waitViolation(t, "manager", "subscription", events.SubjectLogin)
	})
	// Nor may it read other users' inboxes.
	t.Run("manager may not read other roles' inboxes", func(t *testing.T) {
		for _, subj := range []string{sharedInbox, inboxes["admin"] + ".>", inboxes["service"] + ".>"} {
			if _, err := mnc2.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			merrs.waitViolation(t, "manager", "subscription", subj)
		}
	})
	// Every connection above used its private inbox.
	t.Run("every connection used its private inbox", func(t *testing.T) {
		for user, nc := range map[string]*nats.Conn{"manager": mnc, "admin": anc, "service": snc, "audit": unc} {
			if ri := nc.NewRespInbox(); !strings.HasPrefix(ri, inboxes[user]+".") {
				t.Errorf("%s: inbox %s, want %s.…", user, ri, inboxes[user])
			}
		}
	})

	// No one but the manager published: the forged fact is not stored.
	t.Run("the forged fact is not stored", func(t *testing.T) {
		if _, err := stream.GetLastMsgForSubject(ctx, forged); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("forged fact: %v, want not found", err)
		}
	})
}
