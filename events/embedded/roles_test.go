package embedded_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/internal/natstest"
)

// The service role reads facts but cannot forge them, cannot read the
// manager's buckets, cannot delete consumers, and cannot see replies to
// manager connections (private inbox).
func TestServiceRole(t *testing.T) {
	srv := natstest.Start(t, natstest.WithAuth("manager-secret-0123456789"))
	js := srv.JetStream() // manager: creates AUTH_EVENTS
	_ = js
	mgr := srv.Connect()
	svcErrs := make(chan error, 16)
	svc := srv.ConnectService(nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { svcErrs <- err }))

	// Forging a fact is refused.
	if err := svc.Publish("auth.events.session.revoked.X", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	_ = svc.Flush()
	select {
	case err := <-svcErrs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("publish: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("forged fact was not refused")
	}
	// Reading the users bucket is refused.
	if _, err := svc.Request("$JS.API.STREAM.INFO.KV_sessionbus_users", nil, time.Second); err == nil {
		t.Fatal("service read the users bucket")
	}
	// Snooping on the manager's replies is refused.
	if _, err := svc.SubscribeSync("_INBOX_sessionbus.>"); err != nil {
		t.Fatal(err)
	}
	_ = svc.Flush()
	select {
	case err := <-svcErrs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("subscribe: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("service may subscribe to the manager's inbox")
	}
	// The manager's requests use its private inbox.
	if p := mgr.NewRespInbox(); len(p) < 17 || p[:17] != "_INBOX_sessionbus" {
		t.Fatalf("manager inbox %q", p)
	}
	// Reading the stream is allowed.
	if _, err := svc.Request("$JS.API.STREAM.INFO.AUTH_EVENTS", nil, 2*time.Second); err != nil {
		t.Fatalf("stream info: %v", err)
	}
}
