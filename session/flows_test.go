package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

func TestLoginRefreshLogout(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv)
	mgr := m.Manager()
	uid := m.AddUser(t, "Alice", "correct horse battery")

	rep, err := mgr.Login(ctx, session.LoginRequest{Username: "alice", Password: "correct horse battery", IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.TokenType != "Bearer" || rep.ExpiresIn != 300 || !session.IsRefreshToken(rep.RefreshToken) || rep.SessionID == "" {
		t.Fatalf("reply %+v", rep)
	}
	in, err := mgr.Introspect(ctx, rep.AccessToken)
	if err != nil || !in.Active || in.Subject != uid || in.SessionID != rep.SessionID {
		t.Fatalf("introspect %+v %v", in, err)
	}
	rep2, err := mgr.Refresh(ctx, rep.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.RefreshToken == rep.RefreshToken || rep2.SessionID != rep.SessionID {
		t.Fatalf("refresh did not rotate: %+v", rep2)
	}
	if err := mgr.Logout(ctx, session.LogoutRequest{RefreshToken: rep2.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Refresh(ctx, rep2.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("refresh after logout: %v", err)
	}
	in, err = mgr.Introspect(ctx, rep2.AccessToken)
	if err != nil || in.Active {
		t.Fatalf("access token of a logged-out session is active: %+v %v", in, err)
	}
	ss, err := mgr.Sessions(ctx, uid)
	if err != nil || len(ss) != 1 || ss[0].Status != session.StatusRevoked || ss[0].RevokeReason != events.ReasonLogout {
		t.Fatalf("sessions %+v %v", ss, err)
	}
	_ = time.Second
}
