package embedded_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

func TestSpikeTrust(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream()
	mgr := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// manager answers login
	infos := make(chan string, 4)
	sub, err := mgr.Subscribe("auth.cmd.login", func(m *nats.Msg) {
		infos <- m.Header.Get("Nats-Request-Info")
		_ = m.Respond([]byte(`{"access_token":"secret"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	mgr.Flush()

	svc := srv.ConnectService()
	spy := srv.ConnectService()
	errs := make(chan error, 10)
	spy.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	stolen, _ := spy.SubscribeSync("_INBOX.>")
	spy.Flush()
	reply, err := svc.Request("auth.cmd.login", []byte(`{}`), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reply %s info %s", reply.Data, <-infos)
	if m, err := stolen.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("stolen %s", m.Data)
	}
	t.Logf("spy err: %v", <-errs)

	// publish a revocation and a session fact
	if _, err := js.Publish(ctx, "auth.events.session.revoked.S1", []byte(`{}`), jetstream.WithMsgID("a1")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "auth.events.session.created.S1", []byte(`{}`), jetstream.WithMsgID("a2")); err != nil {
		t.Fatal(err)
	}
	// direct get batch from the service
	deadline := time.Now().Add(5 * time.Second)
	for {
		inbox := svc.NewInbox()
		s, _ := svc.SubscribeSync(inbox)
		req, _ := json.Marshal(map[string]any{"seq": 1, "batch": 100, "next_by_subj": ">"})
		svc.PublishRequest("$JS.API.DIRECT.GET.AUTH_REVOCATIONS", inbox, req)
		var got []string
		for {
			m, err := s.NextMsg(time.Second)
			if err != nil {
				t.Fatalf("batch: %v", err)
			}
			t.Logf("msg subj=%s hdr=%v data=%q", m.Subject, m.Header, m.Data)
			if m.Header.Get("Status") != "" {
				break
			}
			got = append(got, m.Header.Get("Nats-Subject"))
		}
		s.Unsubscribe()
		if len(got) > 0 || time.Now().After(deadline) {
			t.Logf("got %v", got)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// service may not create consumer
	_, err = svc.Request("$JS.API.CONSUMER.CREATE.AUTH_EVENTS", []byte(`{"stream_name":"AUTH_EVENTS","config":{"durable_name":"x"}}`), time.Second)
	t.Logf("consumer create: %v", err)
	// direct get on AUTH_EVENTS denied
	_, err = svc.Request("$JS.API.DIRECT.GET.AUTH_EVENTS", []byte(`{"seq":2}`), time.Second)
	t.Logf("direct events: %v", err)

	// operator can read events
	op := srv.ConnectIdentity(natsauth.RoleOperator)
	m, err := op.Request("$JS.API.DIRECT.GET.AUTH_EVENTS", []byte(`{"seq":2}`), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("operator direct: %v %q", m.Header, m.Data)
	m, err = op.Request("$JS.API.STREAM.INFO.AUTH_EVENTS", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("operator info: %.200s", m.Data)

	// revoke
	name := ""
	for _, id := range srv.Authority().Identities() {
		if strings.HasPrefix(id.Name, "service") {
			name = id.Name
			break
		}
	}
	if _, err := srv.Authority().Revoke(name); err != nil {
		t.Fatal(err)
	}
	if err := srv.UpdateAccount(natsauth.AccountClients); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	t.Logf("svc status after revoke: %v %v", svc.Status(), spy.Status())
}
