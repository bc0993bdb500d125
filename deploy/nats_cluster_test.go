package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
)

const alicePassword = "correct horse battery"

// TestNATSCluster starts the 3-node cluster of deploy/nats in-process
// (routes and clients on loopback, TLS, JWT authentication, R3, sync
// always), runs the cluster's setup step and a real session manager with
// the identities `sessionbus services add --auth-dir` issues, and checks
// what each identity can do and, as an attacker, cannot.
func TestNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	c := startCluster(t)
	tr := c.tr
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	setupCreds := tr.issue(t, "setup", natsauth.RoleSetup)
	managerCreds := tr.issue(t, "manager-1", natsauth.RoleManager)
	operatorCreds := tr.issue(t, "ops", natsauth.RoleOperator)
	svcA := tr.issue(t, "svc-a", natsauth.RoleService)
	svcB := tr.issue(t, "svc-b", natsauth.RoleService)

	// The setup step, with the CLI, as the setup identity.
	if out, err := sessionbus(t, "setup", "--nats-url", c.url(0), "--nats-creds", setupCreds, "--nats-ca", tr.ca(),
		"--stream-replicas", "3", "--timeout", "20s"); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	setup, _ := c.connect(t, c.url(1), setupCreds)
	setupJS, err := jetstream.New(setup)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := setupJS.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("setup made no %s: %v", events.StreamName, err)
	}
	t.Run("setup made the streams with 3 replicas", func(t *testing.T) {
		for _, name := range []string{events.StreamName, events.RevocationsStreamName} {
			s, err := setupJS.Stream(ctx, name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if r := s.CachedInfo().Config.Replicas; r != 3 {
				t.Errorf("%s: %d replicas, want 3", name, r)
			}
		}
	})

	// The manager binds to what setup made, with its own credential, and
	// may reconnect to node 0 or 1.
	mnc, _ := c.connect(t, c.urls(0, 1), managerCreds, nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	cfg := node.Config{Session: session.DefaultConfig(), ViewDir: t.TempDir(), RequireCaller: true}
	cfg.Session.Instance = "deploy-test"
	n, err := node.Start(ctx, mnc, cfg)
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

	onc, _ := c.connect(t, c.url(1), operatorCreds)
	// The manager's subscriptions reach node 1 a moment after it starts.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := onc.Request("$SRV.PING."+events.ServiceName, nil, 500*time.Millisecond); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("operator: the manager is not reachable from node 1: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := events.Request(ctx, onc, events.SubjectUsersAdd, "/deploy-test", events.UserRequest{Username: "alice", Password: alicePassword}, nil); err != nil {
		t.Fatalf("operator: users add: %v", err)
	}

	// A service with its own credential logs in and keeps a deny-list.
	anc, aerrs := c.connect(t, c.url(2), svcA)
	login := func(t *testing.T, nc *nats.Conn) events.TokenReply {
		t.Helper()
		var tok events.TokenReply
		if err := events.Request(ctx, nc, events.SubjectLogin, "/deploy-test", events.LoginRequest{Username: "alice", Password: alicePassword}, &tok); err != nil {
			t.Fatalf("login: %v", err)
		}
		return tok
	}
	tok := login(t, anc)
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	deny, err := denylist.New(denylist.Config{JetStream: ajs, Heartbeat: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(ctx)
	derr := make(chan error, 1)
	go func() { derr <- deny.Run(dctx) }()
	t.Cleanup(func() { dcancel(); <-derr })
	if err := deny.WaitReady(ctx); err != nil {
		t.Fatalf("service: the deny-list never became ready: %v", err)
	}
	t.Run("the service's deny-list refuses a revoked session", func(t *testing.T) {
		if denied, _ := deny.Denied(denylist.Token{SessionID: tok.SessionID}); denied {
			t.Fatal("the session is denied before it is revoked")
		}
		if err := events.Request(ctx, onc, events.SubjectRevoke, "/deploy-test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "test"}, nil); err != nil {
			t.Fatalf("operator: revoke: %v", err)
		}
		for denied, _ := deny.Denied(denylist.Token{SessionID: tok.SessionID}); !denied; denied, _ = deny.Denied(denylist.Token{SessionID: tok.SessionID}) {
			if ctx.Err() != nil {
				t.Fatal("the revoked session still passes the service's deny-list")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	info := func(t *testing.T) *jetstream.StreamInfo {
		t.Helper()
		si, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return si
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Second) }

	t.Run("a service cannot create consumers", func(t *testing.T) {
		before := info(t).State.Consumers
		sctx, scancel := short()
		defer scancel()
		if _, err := ajs.CreateConsumer(sctx, events.StreamName, jetstream.ConsumerConfig{FilterSubject: "auth.events.>"}); err == nil {
			t.Error("service created a consumer on AUTH_EVENTS")
		}
		if _, err := ajs.CreateOrUpdateConsumer(sctx, events.RevocationsStreamName, jetstream.ConsumerConfig{Durable: "svc-durable"}); err == nil {
			t.Error("service created a durable consumer on AUTH_REVOCATIONS")
		}
		raw := "$JS.API.CONSUMER.DURABLE.CREATE." + events.StreamName + ".evil"
		if m, err := anc.Request(raw, []byte(`{"stream_name":"AUTH_EVENTS","config":{"durable_name":"evil","ack_policy":"none"}}`), time.Second); err == nil && !bytes.Contains(m.Data, []byte(`"error"`)) {
			t.Errorf("service created a durable consumer: %s", m.Data)
		}
		if after := info(t).State.Consumers; after != before {
			t.Errorf("AUTH_EVENTS has %d consumers after the service's attempts, %d before", after, before)
		}
	})
	t.Run("a service cannot read AUTH_EVENTS", func(t *testing.T) {
		// Stored facts: direct and message gets of session facts.
		for _, subj := range []string{"$JS.API.DIRECT.GET." + events.StreamName, "$JS.API.STREAM.MSG.GET." + events.StreamName} {
			if m, err := anc.Request(subj, []byte(`{"seq":1}`), time.Second); err == nil && len(m.Data) > 0 && !bytes.Contains(m.Data, []byte(`"error"`)) {
				t.Errorf("service read AUTH_EVENTS through %s: %q", subj, m.Data)
			}
		}
		// Live facts: a subscription to every fact sees no login.
		sub, err := anc.SubscribeSync(events.SubjectPrefix + ">")
		if err != nil {
			t.Fatal(err)
		}
		aerrs.waitViolation(t, "service", "subscription", events.SubjectPrefix+">")
		bnc, _ := c.connect(t, c.url(0), svcB)
		login(t, bnc)
		if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
			t.Errorf("service received the fact %s", m.Subject)
		}
		_ = sub.Unsubscribe()
	})
	t.Run("a service cannot read another identity's replies", func(t *testing.T) {
		spy, spyErrs := c.connect(t, c.url(2), svcB)
		victimKey := inboxOf(t, anc)
		var subs []*nats.Subscription
		for _, subj := range []string{"_INBOX.>", victimKey + ".>", ">"} {
			sub, err := spy.SubscribeSync(subj)
			if err != nil {
				t.Fatal(err)
			}
			spyErrs.waitViolation(t, "svc-b", "subscription", subj)
			subs = append(subs, sub)
		}
		victim := login(t, anc) // its reply carries a refresh token
		for _, sub := range subs {
			for m, err := sub.NextMsg(300 * time.Millisecond); err == nil; m, err = sub.NextMsg(100 * time.Millisecond) {
				if bytes.Contains(m.Data, []byte(victim.RefreshToken)) {
					t.Errorf("svc-b read svc-a's login reply on %s", m.Subject)
				}
			}
		}
	})

	// More facts than the limit the attacker sets below, so that a
	// shrink would show.
	for info(t).State.Msgs <= 10 {
		login(t, anc)
	}
	t.Run("the manager cannot shrink, purge or delete the stream", func(t *testing.T) {
		before := info(t)
		mjs, err := jetstream.New(mnc)
		if err != nil {
			t.Fatal(err)
		}
		shrunk := before.Config
		shrunk.MaxMsgs = 10
		sctx, scancel := short()
		defer scancel()
		if _, err := mjs.UpdateStream(sctx, shrunk); err == nil {
			t.Error("the manager updated AUTH_EVENTS to --max-msgs 10")
		}
		if err := mjs.DeleteStream(sctx, events.StreamName); err == nil {
			t.Error("the manager deleted AUTH_EVENTS")
		}
		if s, err := mjs.Stream(sctx, events.StreamName); err == nil {
			if err := s.Purge(sctx); err == nil {
				t.Error("the manager purged AUTH_EVENTS")
			}
		}
		if _, err := mjs.CreateStream(sctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
			t.Error("the manager created a stream")
		}
		after := info(t)
		if after.State.Msgs < before.State.Msgs || after.State.FirstSeq != before.State.FirstSeq || after.Config.MaxMsgs != before.Config.MaxMsgs {
			t.Errorf("AUTH_EVENTS went from %d messages (first %d, max %d) to %d (first %d, max %d)",
				before.State.Msgs, before.State.FirstSeq, before.Config.MaxMsgs, after.State.Msgs, after.State.FirstSeq, after.Config.MaxMsgs)
		}
	})

	t.Run("a manager's reply survives its reconnecting to another node", func(t *testing.T) {
		// A second connection of the manager identity, on node 0, takes a
		// request, moves to node 1, then answers.
		m2, _ := c.connect(t, c.urls(0, 1), managerCreds, nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		sub, err := m2.SubscribeSync("auth.cmd.probe.reconnect")
		if err != nil {
			t.Fatal(err)
		}
		if err := m2.Flush(); err != nil {
			t.Fatal(err)
		}
		reply := make(chan error, 1)
		var got []byte
		go func() {
			// Until the subscription has reached the operator's node over
			// the routes, the request finds no responder: ask again.
			for deadline := time.Now().Add(10 * time.Second); ; {
				m, err := onc.Request("auth.cmd.probe.reconnect", []byte("ping"), 10*time.Second)
				if errors.Is(err, nats.ErrNoResponders) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err == nil {
					got = m.Data
				}
				reply <- err
				return
			}
		}()
		req, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("the manager did not receive the request: %v", err)
		}
		first := m2.ConnectedServerId()
		if err := m2.ForceReconnect(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); !m2.IsConnected() || m2.ConnectedServerId() == first; {
			if time.Now().After(deadline) {
				t.Fatalf("the manager did not reconnect to another node (connected %v)", m2.IsConnected())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := req.Respond([]byte("pong")); err != nil {
			t.Fatalf("reply after reconnecting: %v", err)
		}
		if err := <-reply; err != nil || string(got) != "pong" {
			t.Errorf("the operator got %q, %v: want the reply sent after the manager reconnected", got, err)
		}
	})

	t.Run("a client without TLS is refused", func(t *testing.T) {
		u, err := url.Parse(c.url(0))
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(conn)
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "INFO ") {
			t.Fatalf("no INFO: %q, %v", line, err)
		}
		var srvInfo struct {
			TLSRequired bool `json:"tls_required"`
		}
		_ = json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &srvInfo)
		if !srvInfo.TLSRequired {
			t.Error("the server does not require TLS")
		}
		// A plaintext client says CONNECT and PING; it must get no PONG.
		fmt.Fprint(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false}\r\nPING\r\n")
		var got []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				break
			}
			got = append(got, strings.TrimSpace(l))
		}
		for _, l := range got {
			if l == "PONG" {
				t.Errorf("a plaintext client was served: %q", got)
			}
		}
	})

	t.Run("a rogue server without the route credentials cannot join", func(t *testing.T) {
		a := tr.authority(t)
		for _, rogue := range []struct {
			name           string
			cert, password bool
		}{
			{"without a certificate or the password", false, false},
			{"with a certificate but without the password", true, false},
		} {
			t.Run(rogue.name, func(t *testing.T) {
				rs, spy := startRogue(t, c, a.AccountKey(natsauth.AccountAuth), rogue.cert, rogue.password)
				// An observation window: the time a route takes to form
				// (the control below shows one forms well within it).
				time.Sleep(time.Second)
				// The services log in meanwhile.
				login(t, anc)
				login(t, anc)
				if m, err := spy.NextMsg(time.Second); err == nil {
					t.Errorf("the rogue server received %s: %q", m.Subject, m.Data)
				}
				if r := rs.NumRoutes(); r != 0 {
					t.Errorf("the rogue server has %d routes", r)
				}
			})
		}
		// The control: with the certificate and the password, the same
		// rogue joins and receives the logins. Without this, the cases
		// above would prove nothing.
		t.Run("control: with the certificate and the password it joins", func(t *testing.T) {
			rs, spy := startRogue(t, c, a.AccountKey(natsauth.AccountAuth), true, true)
			for deadline := time.Now().Add(5 * time.Second); rs.NumRoutes() == 0 && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if rs.NumRoutes() == 0 {
				t.Fatal("the rogue with the route credentials did not join: the cases above prove nothing")
			}
			// Its subscription reaches the cluster over the new route a
			// moment later: log in until a login arrives, with a deadline.
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				login(t, anc)
				if _, err = spy.NextMsg(500 * time.Millisecond); err == nil {
					break
				}
			}
			if err != nil {
				t.Errorf("the joined rogue received no login (%v): the cases above prove nothing", err)
			}
			rs.Shutdown()
		})
	})

	t.Run("a credential revoked with the CLI loses its open connection", func(t *testing.T) {
		creds := tr.issue(t, "svc-revoked", natsauth.RoleService)
		closed := make(chan struct{})
		vnc, _ := c.connect(t, c.url(2), creds, nats.MaxReconnects(2), nats.ReconnectWait(50*time.Millisecond),
			nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
		login(t, vnc)
		// Pushed through node 1; the connection is on node 2.
		if _, err := sessionbus(t, "services", "revoke", "svc-revoked", "--auth-dir", tr.authDir, "--nats-url", c.url(1), "--nats-ca", tr.ca()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the revoked credential's connection is still open")
		}
		sctx, scancel := short()
		defer scancel()
		if err := events.Request(sctx, vnc, events.SubjectLogin, "/deploy-test", events.LoginRequest{Username: "alice", Password: alicePassword}, nil); err == nil {
			t.Error("the revoked credential still logs in")
		}
		co, _ := natsauth.Options(creds)
		for i := range c.servers {
			if nc, err := nats.Connect(c.url(i), append(co, nats.RootCAs(tr.ca()))...); err == nil {
				nc.Close()
				t.Errorf("the revoked credential connects to node %d", i)
			}
		}
		// Others keep working.
		login(t, anc)
	})
}

// inboxOf returns the private inbox prefix of a connection.
func inboxOf(t *testing.T, nc *nats.Conn) string {
	t.Helper()
	in := nc.NewInbox()
	return in[:strings.LastIndex(in, ".")]
}

// startRogue starts a server that tries to join the cluster through node
// 0's route port as an attacker would: the cluster's name, an account
// named like AUTH with a local user subscribed to auth.cmd.login (so that
// logins, passwords included, would be routed to it), and optionally the
// cluster's certificate and route password. It returns the server and the
// spy's subscription.
func startRogue(t *testing.T, c *cluster, authAccount string, withCert, withPassword bool) (*server.Server, *nats.Subscription) {
	t.Helper()
	acc := server.NewAccount(authAccount)
	opts := &server.Options{
		ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		Accounts: []*server.Account{acc},
		Users:    []*server.User{{Username: "spy", Password: "spy", Account: acc}},
	}
	opts.Cluster.Name = "sessionbus"
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", -1
	route := *c.tr.routes[0]
	if withPassword {
		m, err := conf.ParseFile(c.tr.routesConf)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(fmt.Sprint(m["routes"].([]any)[0]))
		if err != nil {
			t.Fatal(err)
		}
		route.User = u.User
	}
	opts.Routes = []*url.URL{&route}
	if withCert {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: filepath.Join(c.tr.certDir, "server.pem"), KeyFile: filepath.Join(c.tr.certDir, "server-key.pem"),
			CaFile: c.tr.ca(), Verify: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		// As the server's own parser does for routes: both directions
		// verified against the CA.
		tc.RootCAs, tc.ClientAuth = tc.ClientCAs, tls.RequireAndVerifyClientCert
		opts.Cluster.TLSConfig = tc
		opts.Cluster.TLSTimeout = 2
	}
	rs, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	rs.Start()
	t.Cleanup(func() { rs.Shutdown(); rs.WaitForShutdown() })
	if !rs.ReadyForConnections(5 * time.Second) {
		t.Fatal("rogue not ready")
	}
	nc, err := nats.Connect(rs.ClientURL(), nats.UserInfo("spy", "spy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(events.SubjectLogin)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return rs, sub
}
