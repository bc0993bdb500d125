package embedded_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

const managerPassword = "manager-secret-0123456789"

// violations collects a connection's asynchronous errors.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err)
}

// has reports whether a permission violation for op ("publish" or
// "subscription") to subject was reported.
func (v *violations) has(op, subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, err := range v.errs {
		if errors.Is(err, nats.ErrPermissionViolation) &&
			strings.Contains(strings.ToLower(err.Error()), op) && strings.Contains(err.Error(), `to "`+subject+`"`) {
			return true
		}
	}
	return false
}

// wait waits for a permission violation for op to subject.
func (v *violations) wait(t *testing.T, op, subject string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if v.has(op, subject) {
			return
		}
	}
	t.Errorf("no permission violation for %s to %q", op, subject)
}

// connectService connects without credentials (the service role),
// recording permission violations.
func connectService(srv *natstest.Server) (*nats.Conn, *violations) {
	v := &violations{}
	return srv.ConnectService(nats.ErrorHandler(v.handler), nats.PermissionErrOnSubscribe(true)), v
}

// The service role cannot forge facts, read the manager's buckets, delete
// consumers or see replies to manager connections (private inbox).
func TestServiceRole(t *testing.T) {
	srv := natstest.Start(t, natstest.WithAuth(managerPassword))
	_ = srv.JetStream() // manager: creates AUTH_EVENTS
	mgr := srv.Connect()
	svc, v := connectService(srv)

	// Forging a fact is refused.
	if err := svc.Publish("auth.events.session.revoked.X", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	_ = svc.Flush()
	v.wait(t, "publish", "auth.events.session.revoked.X")
	// Reading the users bucket is refused.
	if _, err := svc.Request("$JS.API.STREAM.INFO.KV_sessionbus_users", nil, 500*time.Millisecond); err == nil {
		t.Fatal("service read the users bucket")
	}
	// Deleting a consumer is refused.
	if _, err := svc.Request("$JS.API.CONSUMER.DELETE.AUTH_EVENTS.x", nil, 500*time.Millisecond); err == nil {
		t.Fatal("service may delete consumers")
	}
	v.wait(t, "publish", "$JS.API.CONSUMER.DELETE.AUTH_EVENTS.x")
	// Snooping on the manager's replies is refused.
	if _, err := svc.SubscribeSync("_INBOX_sessionbus.>"); err != nil {
		t.Fatal(err)
	}
	v.wait(t, "subscription", "_INBOX_sessionbus.>")
	// The manager's requests use its private inbox.
	if p := mgr.NewRespInbox(); !strings.HasPrefix(p, "_INBOX_sessionbus.") {
		t.Fatalf("manager inbox %q", p)
	}
}

// An anonymous connection (the service role) cannot learn whether a
// username exists: failed logins of a known and of an unknown name are
// stored (auth.events.login.failed.<user id> and .unknown), and no route
// gives them to the service — core subscriptions, consumers unfiltered or
// filtered on anything but the revocations, direct gets, message gets,
// stream info, consumer lists. What services need still works: the
// deny-list on an anonymous connection applies a revocation, and the key
// set refreshes on a key rotation.
func TestServiceRoleCannotTellWhetherAUsernameExists(t *testing.T) {
	srv := natstest.Start(t, natstest.WithAuth(managerPassword))
	m := nodetest.Start(t, srv)
	uid := m.AddUser(t, "alice", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	svc, v := connectService(srv)
	sjs, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}

	// Everything any anonymous connection receives is kept and searched
	// at the end: the attacker's allowed subscriptions, and a second
	// anonymous connection reading the whole shared inbox namespace, where
	// every JetStream reply and delivery to an anonymous client goes.
	var (
		seenMu sync.Mutex
		seen   []*nats.Msg
	)
	keep := func(msg *nats.Msg) {
		seenMu.Lock()
		defer seenMu.Unlock()
		seen = append(seen, msg)
	}
	spy, spyV := connectService(srv)
	if _, err := spy.Subscribe("_INBOX.>", keep); err != nil {
		t.Fatal(err)
	}
	revocations := make(chan *nats.Msg, 64)
	keyFacts := make(chan *nats.Msg, 64)
	for subj, ch := range map[string]chan *nats.Msg{events.SubjectRevocations: revocations, events.SubjectPrefix + "key.>": keyFacts} {
		if _, err := svc.Subscribe(subj, func(msg *nats.Msg) { keep(msg); ch <- msg }); err != nil {
			t.Fatal(err)
		}
	}
	// Core subscriptions to the login facts are refused.
	refusedSubs := []string{
		"auth.events.>", "auth.events.login.>", "auth.events.login.failed.>", "auth.events.login.failed.unknown",
		"auth.events.login.failed." + uid, "auth.events.*.failed.>", "auth.events.*.*.unknown", "auth.>", ">",
	}
	var subs []*nats.Subscription
	for _, subj := range refusedSubs {
		sub, err := svc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if err := errors.Join(svc.Flush(), spy.Flush()); err != nil {
		t.Fatal(err)
	}
	for _, subj := range refusedSubs {
		v.wait(t, "subscription", subj)
	}
	for _, subj := range []string{events.SubjectRevocations, events.SubjectPrefix + "key.>"} {
		if v.has("subscription", subj) {
			t.Errorf("the service may not subscribe to %s", subj)
		}
	}
	if spyV.has("subscription", "_INBOX.>") {
		t.Fatal("the service may not subscribe to _INBOX.>")
	}

	// A wrong password for alice and any password for an unknown name get
	// the same answer...
	for _, name := range []string{"alice", "mallory"} {
		var ce *events.CommandError
		err := events.Request(ctx, svc, events.SubjectLogin, "/roles-test", events.LoginRequest{Username: name, Password: "wrong password 123"}, nil)
		if !errors.As(err, &ce) || ce.Code != 401 {
			t.Fatalf("login as %s with a wrong password: %v, want 401", name, err)
		}
	}
	// ...and two different facts, which the manager reads.
	mjs, err := jetstream.New(m.NC)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := mjs.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var (
		secrets [][]byte // what would tell the two apart
		seqs    []uint64
	)
	for _, subj := range []string{"auth.events.login.failed." + uid, "auth.events.login.failed.unknown"} {
		var msg *jetstream.RawStreamMsg
		for msg == nil {
			if msg, err = stream.GetLastMsgForSubject(ctx, subj); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				t.Fatalf("manager: %s: %v", subj, err)
			}
			if ctx.Err() != nil {
				t.Fatalf("manager: no fact on %s", subj)
			}
		}
		var lf events.LoginFailed
		if err := json.Unmarshal(msg.Data, &lf); err != nil || lf.AccountKey == "" {
			t.Fatalf("%s: %s (%v)", subj, msg.Data, err)
		}
		secrets = append(secrets, []byte(lf.AccountKey), []byte(msg.Header.Get("ce-id")))
		seqs = append(seqs, msg.Sequence)
	}

	// JetStream consumers on anything but the revocations are refused.
	// (Refused requests get no answer: each waits for its timeout, so
	// they run at once.)
	var attempts sync.WaitGroup
	for _, filters := range [][]string{
		nil,
		{"auth.events.>"},
		{"auth.events.login.>"},
		{"auth.events.login.failed.>"},
		{"auth.events.login.failed.unknown"},
		{"auth.events.*.failed.>"},
		{"auth.events.*.*.unknown"},
		{events.SubjectRevocations, "auth.events.login.>"},
	} {
		for _, policy := range []jetstream.DeliverPolicy{jetstream.DeliverAllPolicy, jetstream.DeliverLastPerSubjectPolicy} {
			attempts.Go(func() {
				cctx, ccancel := context.WithTimeout(ctx, time.Second)
				defer ccancel()
				oc, err := sjs.OrderedConsumer(cctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: policy})
				if err == nil {
					msg, err := oc.Next(jetstream.FetchMaxWait(time.Second))
					if err == nil {
						keep(&nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
					}
					t.Errorf("ordered consumer filtered on %q created (first message: %v)", filters, err)
				}
			})
		}
	}
	attempts.Go(func() {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		if _, err := sjs.CreateConsumer(cctx, events.StreamName, jetstream.ConsumerConfig{Durable: "snoop", AckPolicy: jetstream.AckNonePolicy}); err == nil {
			t.Error("unfiltered durable consumer created")
		}
	})

	// Requests on subjects the role lacks get no answer, only a
	// permission violation.
	refused := []struct{ subject, body string }{
		{"$JS.API.STREAM.MSG.GET.AUTH_EVENTS", `{"seq":1}`},
		{"$JS.API.STREAM.MSG.GET.AUTH_EVENTS", `{"seq":` + jsonNum(seqs[0]) + `}`},
		{"$JS.API.STREAM.MSG.GET.AUTH_EVENTS", `{"last_by_subj":"auth.events.login.failed.unknown"}`},
		{"$JS.API.DIRECT.GET.AUTH_EVENTS", `{"seq":` + jsonNum(seqs[1]) + `}`},
		{"$JS.API.DIRECT.GET.AUTH_EVENTS", `{"multi_last":["auth.events.login.>"]}`},
		{"$JS.API.DIRECT.GET.AUTH_EVENTS.auth.events.login.failed.unknown", ``},
		{"$JS.API.DIRECT.GET.AUTH_EVENTS.auth.events.login.failed." + uid, ``},
		{"$JS.API.STREAM.INFO.AUTH_EVENTS", `{"subjects_filter":"auth.events.login.>"}`},
		{"$JS.API.STREAM.INFO.AUTH_EVENTS", ``},
		{"$JS.API.STREAM.NAMES", ``},
		{"$JS.API.INFO", ``},
		{"$JS.API.CONSUMER.LIST.AUTH_EVENTS", ``},
		{"$JS.API.CONSUMER.NAMES.AUTH_EVENTS", ``},
		{"$JS.API.CONSUMER.CREATE.AUTH_EVENTS", `{"stream_name":"AUTH_EVENTS","config":{"ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.snoop", `{"stream_name":"AUTH_EVENTS","config":{"name":"snoop","ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.snoop.auth.events.>", `{"stream_name":"AUTH_EVENTS","config":{"name":"snoop","filter_subject":"auth.events.>","ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.CREATE.AUTH_EVENTS.snoop.auth.events.login.failed.>", `{"stream_name":"AUTH_EVENTS","config":{"name":"snoop","filter_subject":"auth.events.login.failed.>","ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.DURABLE.CREATE.AUTH_EVENTS.snoop", `{"stream_name":"AUTH_EVENTS","config":{"durable_name":"snoop","ack_policy":"none"}}`},
	}
	for _, r := range refused {
		attempts.Go(func() {
			if msg, err := svc.Request(r.subject, []byte(r.body), 500*time.Millisecond); err == nil {
				keep(msg)
				t.Errorf("%s %s: answered %s", r.subject, r.body, msg.Data)
			}
		})
	}
	attempts.Wait()
	for _, r := range refused {
		v.wait(t, "publish", r.subject)
	}

	// The one consumer subject allowed checks that the configured filter
	// is the one in the subject: smuggling a wider filter in the body is
	// refused by the server. So is a filter that the permission's tokens
	// match but that is not a valid subject (wildcards as literal tokens).
	rev := events.SubjectRevocations
	for _, r := range []struct{ subject, config string }{
		{rev, `{"name":"snoop","ack_policy":"none"}`},
		{rev, `{"name":"snoop","filter_subject":"auth.events.>","ack_policy":"none"}`},
		{rev, `{"name":"snoop","filter_subject":"auth.events.login.failed.unknown","ack_policy":"none"}`},
		{rev, `{"name":"snoop","filter_subjects":["auth.events.*.revoked.>","auth.events.login.>"],"ack_policy":"none"}`},
		{"auth.events.>.revoked.>", `{"name":"snoop","filter_subject":"auth.events.>.revoked.>","ack_policy":"none"}`},
		{"auth.events.>.revoked.>", `{"name":"snoop","ack_policy":"none"}`},
	} {
		subject := "$JS.API.CONSUMER.CREATE.AUTH_EVENTS.snoop." + r.subject
		msg, err := svc.Request(subject, []byte(`{"stream_name":"AUTH_EVENTS","config":`+r.config+`}`), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		keep(msg)
		var resp struct {
			Error *struct {
				Code int `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil || resp.Error == nil {
			t.Errorf("%s with %s: %s, want an error", subject, r.config, msg.Data)
		}
	}

	// What services need works. An ordered consumer filtered on the
	// revocations reads them, from the start of the stream.
	oc, err := sjs.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectRevocations}})
	if err != nil {
		t.Fatalf("ordered consumer on the revocations: %v", err)
	}
	if _, err := oc.Info(ctx); err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	// The deny-list, on an anonymous connection, applies a revocation.
	list, err := denylist.New(denylist.Config{JetStream: sjs, Heartbeat: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The key set fetches the JWKS and refreshes on a key.rotated fact
	// (no periodic refresh within the test).
	keys, err := httpauth.NewKeySet(httpauth.KeySetConfig{Source: httpauth.NATSSource(svc, "/roles-test"), Watch: svc, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := list.Run(rctx); err != nil {
			t.Errorf("deny-list: %v", err)
		}
	})
	wg.Go(func() {
		if err := keys.Run(rctx); err != nil {
			t.Errorf("key set: %v", err)
		}
	})
	t.Cleanup(func() { rcancel(); wg.Wait() })
	if err := list.WaitReady(ctx); err != nil {
		t.Fatalf("deny-list not ready: %v", err)
	}
	var tok events.TokenReply
	if err := events.Request(ctx, svc, events.SubjectLogin, "/roles-test", events.LoginRequest{Username: "alice", Password: "correct horse battery"}, &tok); err != nil {
		t.Fatalf("login: %v", err)
	}
	if err := events.Request(ctx, m.NC, events.SubjectRevoke, "/roles-test", events.RevokeRequest{SessionID: tok.SessionID, Reason: "admin"}, nil); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	for ok, _ := list.Denied(denylist.Token{SessionID: tok.SessionID}); !ok; ok, _ = list.Denied(denylist.Token{SessionID: tok.SessionID}) {
		if ctx.Err() != nil {
			t.Fatal("the deny-list never applied the revocation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if msg, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || msg.Subject() != "auth.events.session.revoked."+tok.SessionID {
		t.Errorf("ordered consumer on the revocations: %v", err)
	} else {
		keep(&nats.Msg{Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data()})
	}
	select {
	case msg := <-revocations:
		if msg.Subject != "auth.events.session.revoked."+tok.SessionID {
			t.Errorf("core subscription to the revocations got %s", msg.Subject)
		}
	case <-ctx.Done():
		t.Fatal("the core subscription to the revocations got nothing")
	}
	for len(keys.KeyIDs()) == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	before := keys.KeyIDs()
	if err := events.Request(ctx, m.NC, events.SubjectKeysRotate, "/roles-test", struct{}{}, nil); err != nil {
		t.Fatalf("rotate keys: %v", err)
	}
	select {
	case msg := <-keyFacts:
		if !strings.HasPrefix(msg.Subject, "auth.events.key.rotated.") {
			t.Errorf("core subscription to the key facts got %s", msg.Subject)
		}
	case <-ctx.Done():
		t.Fatal("the core subscription to the key facts got nothing")
	}
	for ids := keys.KeyIDs(); !slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(before, id) }); ids = keys.KeyIDs() {
		if ctx.Err() != nil {
			t.Fatalf("the key set did not pick up the rotated key: %q", ids)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Nothing an anonymous connection received is a login fact or tells
	// the two failed logins apart.
	for _, sub := range subs {
		if msg, err := sub.NextMsg(10 * time.Millisecond); err == nil {
			keep(msg)
		}
	}
	_ = spy.Flush()
	seenMu.Lock()
	defer seenMu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the anonymous connections received nothing at all: the check proves nothing")
	}
	for _, msg := range seen {
		if strings.HasPrefix(msg.Subject, "auth.events.login.") || msg.Header.Get("ce-type") == string(events.TypeLoginFailed) {
			t.Errorf("an anonymous connection received a login fact on %s: %s", msg.Subject, msg.Data)
		}
		for _, s := range secrets {
			if bytes.Contains(msg.Data, s) || bytes.Contains([]byte(strings.Join(slices.Collect(headerValues(msg.Header)), "\n")), s) {
				t.Errorf("an anonymous connection received %q on %s", s, msg.Subject)
			}
		}
	}
}

func jsonNum(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func headerValues(h nats.Header) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, vs := range h {
			for _, v := range vs {
				if !yield(v) {
					return
				}
			}
		}
	}
}
