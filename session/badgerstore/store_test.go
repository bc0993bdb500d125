package badgerstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

var (
	ctx = context.Background()
	t0  = time.Now().UTC().Truncate(time.Second)
)

func open(t *testing.T, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fact(t *testing.T, seq uint64, typ events.Type, id string, data any) events.Stored {
	t.Helper()
	e, err := events.New(typ, events.Source("t"), id, t0, data)
	if err != nil {
		t.Fatal(err)
	}
	return events.Stored{Seq: seq, Subject: e.NATSSubject(), Time: t0.Add(time.Duration(seq) * time.Millisecond), Event: e}
}

func created(t *testing.T, seq uint64, sid, digest string) events.Stored {
	return fact(t, seq, events.TypeSessionCreated, sid, events.SessionCreated{
		SessionID: sid, UserID: "U1", AccountKey: "K", RefreshDigest: digest, Generation: 1,
		AccessJTI: "J" + sid, AccessExpiresAt: t0.Add(5 * time.Minute), KeyID: "KID",
		CreatedAt: t0, IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(2 * time.Hour),
	})
}

func TestApplyIsIdempotentAndOrdered(t *testing.T) {
	s := open(t, t.TempDir())
	batch := []events.Stored{
		created(t, 1, "S1", "d1"),
		fact(t, 2, events.TypeSessionRefreshed, "S1", events.SessionRefreshed{SessionID: "S1", UserID: "U1", Generation: 2,
			PreviousRefreshDigest: "d1", RefreshDigest: "d2", AccessJTI: "J2", AccessExpiresAt: t0.Add(10 * time.Minute), RefreshedAt: t0, IdleExpiresAt: t0.Add(time.Hour)}),
		fact(t, 3, events.TypeSessionRevoked, "S1", events.SessionRevoked{SessionID: "S1", UserID: "U1", Reason: "logout", RevokedAt: t0, DenyUntil: t0.Add(time.Minute)}),
	}
	if err := s.Apply(batch); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Dump()
	// The same batch again, and an overlapping one, change nothing.
	if err := s.Apply(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(batch[1:]); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Dump()
	if len(before) != len(after) {
		t.Fatalf("re-applying changed the view: %d → %d keys", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("key %s changed", k)
		}
	}
	sess, gen, err := s.SessionByDigest(ctx, "d1")
	if err != nil || gen != 1 || sess.Generation != 2 || sess.RevokedAt.IsZero() || sess.LastSeq != 3 {
		t.Fatalf("session %+v gen %d err %v", sess, gen, err)
	}
	if !sess.RotatedAt.Equal(batch[1].Time) {
		t.Fatalf("rotated at %s, want the stream time %s", sess.RotatedAt, batch[1].Time)
	}
	if sess.MaxAccessExp != t0.Add(10*time.Minute) {
		t.Fatalf("max access exp %s", sess.MaxAccessExp)
	}
	if s.AppliedSeq() != 3 {
		t.Fatalf("applied %d", s.AppliedSeq())
	}
}

// Unknown types, unknown versions and unreadable messages are skipped and
// counted; the sequence still advances and later facts apply.
func TestSkipsWhatItCannotRead(t *testing.T) {
	s := open(t, t.TempDir())
	unknown := created(t, 2, "S9", "d9")
	unknown.Event.Type = "io.sessionbus.session.created.v9"
	badData := created(t, 3, "S8", "d8")
	badData.Event.Data = []byte(`{"session_id": 42}`)
	badIDs := created(t, 4, "S7", "d7")
	badIDs.Event.Data = []byte(`{"session_id":"a.b","user_id":"U1","refresh_digest":"x"}`)
	batch := []events.Stored{
		created(t, 1, "S1", "d1"),
		unknown,
		badData,
		badIDs,
		{Seq: 5, Subject: "auth.events.session.created.X", Err: events.ErrMalformed},
		created(t, 6, "S2", "d2"),
	}
	if err := s.Apply(batch); err != nil {
		t.Fatal(err)
	}
	if s.AppliedSeq() != 6 || s.Skipped() != 4 {
		t.Fatalf("applied %d skipped %d, want 6 and 4", s.AppliedSeq(), s.Skipped())
	}
	for _, id := range []string{"S1", "S2"} {
		if _, err := s.Session(ctx, id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if _, err := s.Session(ctx, "S9"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("unknown version applied: %v", err)
	}
}

// The view resumes from its recorded sequence after reopening, and waits
// wake up when a sequence is applied.
func TestReopenAndWait(t *testing.T) {
	dir := t.TempDir()
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]events.Stored{created(t, 1, "S1", "d1")}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if s.AppliedSeq() != 1 {
		t.Fatalf("reopened at %d", s.AppliedSeq())
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitApplied(ctx, 2) }()
	select {
	case <-done:
		t.Fatal("wait returned before the sequence was applied")
	case <-time.After(20 * time.Millisecond):
	}
	if err := s.Apply([]events.Stored{created(t, 2, "S2", "d2")}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := s.WaitApplied(cctx, 99); err == nil {
		t.Fatal("wait for a future sequence returned")
	}
}

// Revocations only move forward; a user's revoked_before only grows; the
// due index finds expired sessions and forgets revoked ones.
func TestForwardOnlyAndDue(t *testing.T) {
	s := open(t, t.TempDir())
	later, earlier := t0.Add(time.Minute), t0.Add(-time.Minute)
	err := s.Apply([]events.Stored{
		created(t, 1, "S1", "d1"),
		created(t, 2, "S2", "d2"),
		fact(t, 3, events.TypeUserRevoked, "U1", events.UserRevoked{UserID: "U1", Reason: "admin", RevokedBefore: later, DenyUntil: later}),
		fact(t, 4, events.TypeUserRevoked, "U1", events.UserRevoked{UserID: "U1", Reason: "admin", RevokedBefore: earlier, DenyUntil: later}),
		fact(t, 5, events.TypeSessionRevoked, "S2", events.SessionRevoked{SessionID: "S2", UserID: "U1", Reason: "admin", RevokedAt: t0, DenyUntil: later}),
		fact(t, 6, events.TypeSessionRevoked, "S2", events.SessionRevoked{SessionID: "S2", UserID: "U1", Reason: "logout", RevokedAt: later, DenyUntil: later}),
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := s.User(ctx, "U1")
	if !u.RevokedBefore.Equal(later) {
		t.Fatalf("revoked_before went backwards: %s", u.RevokedBefore)
	}
	s2, _ := s.Session(ctx, "S2")
	if s2.RevokeReason != "admin" || !s2.RevokedAt.Equal(t0) {
		t.Fatalf("first revocation must stand: %+v", s2)
	}
	due, err := s.DueSessions(ctx, t0.Add(90*time.Minute), 10)
	if err != nil || len(due) != 1 || due[0].ID != "S1" {
		t.Fatalf("due %+v %v", due, err)
	}
	if due, _ := s.DueSessions(ctx, t0.Add(30*time.Minute), 10); len(due) != 0 {
		t.Fatalf("due before the idle deadline: %+v", due)
	}
}
