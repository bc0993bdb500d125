package kvstore_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/kvstore"
)

// open runs the setup step (setup role) and opens two stores on manager
// connections, as two managers sharing the buckets.
func open(t *testing.T) (a, b *kvstore.Store) {
	t.Helper()
	srv := natstest.Start(t)
	ctx := context.Background()
	setup := srv.SetupJetStream()
	for range 2 { // idempotent: serve runs it at every start
		if err := kvstore.Setup(ctx, setup, kvstore.Config{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []**kvstore.Store{&a, &b} {
		js, err := jetstream.New(srv.Connect())
		if err != nil {
			t.Fatal(err)
		}
		if *s, err = kvstore.Open(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func TestOpenBeforeSetup(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kvstore.Open(context.Background(), js); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("Open = %v, want ErrBucketNotFound", err)
	}
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	s, other := open(t)
	now := time.Now().UTC().Truncate(time.Second)
	alice := session.User{ID: events.NewID(), Username: "Alice", PasswordHash: "h1", CreatedAt: now, UpdatedAt: now}

	if _, err := s.ByName(ctx, "alice"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("ByName before Create = %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, "alice", alice); err != nil {
		t.Fatal(err)
	}
	t.Run("a second Create of the name, by any manager, is ErrExists", func(t *testing.T) {
		dup := alice
		dup.ID = events.NewID()
		if err := other.Create(ctx, "alice", dup); !errors.Is(err, session.ErrExists) {
			t.Fatalf("Create = %v, want ErrExists", err)
		}
	})
	t.Run("by name and by id, with the revision", func(t *testing.T) {
		byName, err := other.ByName(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		byID, err := other.ByID(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if byName != byID || byName.Revision == 0 {
			t.Fatalf("ByName %+v, ByID %+v", byName, byID)
		}
		want := alice
		want.Revision = byName.Revision
		if byName != want {
			t.Fatalf("got %+v, want %+v", byName, want)
		}
	})
	t.Run("unknown or invalid ids are ErrNotFound", func(t *testing.T) {
		for _, id := range []string{events.NewID(), "", "a.b", "*", "name.x"} {
			if _, err := s.ByID(ctx, id); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("ByID(%q) = %v, want ErrNotFound", id, err)
			}
		}
	})
	t.Run("Update is compare-and-set on the revision", func(t *testing.T) {
		u, err := s.ByID(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		stale := u
		u.Disabled = true
		if err := s.Update(ctx, u); err != nil {
			t.Fatal(err)
		}
		stale.PasswordHash = "h2"
		if err := other.Update(ctx, stale); !errors.Is(err, session.ErrConflict) {
			t.Fatalf("Update at a stale revision = %v, want ErrConflict", err)
		}
		got, err := other.ByName(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Disabled || got.PasswordHash != "h1" || got.Revision <= u.Revision {
			t.Fatalf("after the updates: %+v", got)
		}
		if err := s.Update(ctx, session.User{ID: events.NewID()}); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Update of an unknown user = %v, want ErrNotFound", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		bob := session.User{ID: events.NewID(), Username: "bob", PasswordHash: "h", CreatedAt: now, UpdatedAt: now}
		if err := other.Create(ctx, "bob", bob); err != nil {
			t.Fatal(err)
		}
		l, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range l {
			names = append(names, u.Username)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"Alice", "bob"}) {
			t.Fatalf("List = %q", names)
		}
	})
}

func TestListEmpty(t *testing.T) {
	s, _ := open(t)
	l, err := s.List(context.Background())
	if err != nil || len(l) != 0 {
		t.Fatalf("List = %v, %v; want none", l, err)
	}
	active, keys, err := s.Keys(context.Background())
	if err != nil || active != "" || len(keys) != 0 {
		t.Fatalf("Keys = %q, %v, %v; want none", active, keys, err)
	}
}

func TestAccountSecretIsSharedAndStable(t *testing.T) {
	ctx := context.Background()
	a, b := open(t)
	s1, err := a.AccountSecret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.AccountSecret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 32 || !bytes.Equal(s1, s2) {
		t.Fatalf("secrets %x and %x, want the same 32 bytes", s1, s2)
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	s, other := open(t)
	t0 := time.Now().UTC().Truncate(time.Second)
	k1 := session.SigningKey{KID: "k1", Alg: "ES256", PrivateKey: []byte("p1"), CreatedAt: t0, ActivatedAt: t0}
	k2 := session.SigningKey{KID: "k2", Alg: "EdDSA", PrivateKey: []byte("p2"), CreatedAt: t0, ActivatedAt: t0.Add(time.Hour)}

	prev, err := s.Activate(ctx, k1, true)
	if err != nil || prev != nil {
		t.Fatalf("first Activate = %v, %v; want nil, nil", prev, err)
	}
	if _, err := other.Activate(ctx, k2, true); !errors.Is(err, session.ErrExists) {
		t.Fatalf("Activate onlyIfNone with a key active = %v, want ErrExists", err)
	}
	prev, err = other.Activate(ctx, k2, false)
	if err != nil {
		t.Fatal(err)
	}
	if prev == nil || prev.KID != "k1" || !prev.RetiredAt.Equal(k2.ActivatedAt) {
		t.Fatalf("Activate k2 returned %+v, want k1 retired at k2's activation", prev)
	}
	active, keys, err := s.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if active != "k2" || len(keys) != 2 {
		t.Fatalf("Keys = %q, %+v", active, keys)
	}

	if err := s.Revoke(ctx, "nope", t0); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Revoke unknown = %v, want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, "a.b", t0); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Revoke invalid kid = %v, want ErrNotFound", err)
	}
	at := t0.Add(2 * time.Hour)
	if err := s.Revoke(ctx, "k1", at); err != nil {
		t.Fatal(err)
	}
	if err := other.Revoke(ctx, "k1", at.Add(time.Hour)); err != nil { // keeps the first time
		t.Fatal(err)
	}
	_, keys, err = other.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.KID == "k1" && !k.RevokedAt.Equal(at) {
			t.Fatalf("k1 revoked at %v, want %v", k.RevokedAt, at)
		}
		if k.KID == "k2" && !k.RevokedAt.IsZero() {
			t.Fatalf("k2 revoked: %+v", k)
		}
	}
}

func TestWatchKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, other := open(t)
	changed := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- s.WatchKeys(ctx, func() { changed <- struct{}{} }) }()
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("no call for %s", what)
		}
	}
	wait("the start")
	t0 := time.Now().UTC()
	if _, err := other.Activate(ctx, session.SigningKey{KID: "k1", Alg: "ES256", CreatedAt: t0, ActivatedAt: t0}, true); err != nil {
		t.Fatal(err)
	}
	wait("an activation by another manager")
	if err := other.Revoke(ctx, "k1", t0); err != nil {
		t.Fatal(err)
	}
	wait("a revocation")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WatchKeys = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchKeys did not return")
	}
}
