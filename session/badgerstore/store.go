package badgerstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

// Store is the Badger view. It implements session.View.
type Store struct {
	db      *badger.DB
	log     *slog.Logger
	applied atomic.Uint64
	skipped atomic.Uint64

	mu     sync.Mutex
	notify chan struct{} // closed and replaced after each applied batch
}

var _ session.View = (*Store)(nil)

// Options of Open.
type Options struct {
	// Logger receives warnings about skipped facts and Badger's own
	// warnings; nil discards them.
	Logger *slog.Logger
	// InMemory keeps the view in memory only (benchmarks).
	InMemory bool
}

// Open opens (or creates) the view in dir.
func Open(dir string, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithInMemory(o.InMemory).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2)
	if o.InMemory {
		opts.Dir, opts.ValueDir = "", ""
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open view %s: %w", dir, err)
	}
	s := &Store{db: db, log: log, notify: make(chan struct{})}
	err = db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(keySeq)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if len(v) != 8 {
				return errors.New("corrupt sequence record")
			}
			s.applied.Store(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open view: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// AppliedSeq implements session.View.
func (s *Store) AppliedSeq() uint64 { return s.applied.Load() }

// Skipped is the number of stream messages skipped as unreadable or of an
// unknown type.
func (s *Store) Skipped() uint64 { return s.skipped.Load() }

// WaitApplied implements session.View.
func (s *Store) WaitApplied(ctx context.Context, seq uint64) error {
	for {
		if s.applied.Load() >= seq {
			return nil
		}
		s.mu.Lock()
		ch := s.notify
		s.mu.Unlock()
		if s.applied.Load() >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for view to apply %d (at %d): %w", seq, s.applied.Load(), ctx.Err())
		}
	}
}

// Apply applies a batch of stream messages in order, in one transaction
// with the new last sequence. Messages at or below the last applied
// sequence are ignored, so a batch may be applied twice.
func (s *Store) Apply(batch []events.Stored) error {
	err := s.applyTxn(batch)
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		h := len(batch) / 2
		if err := s.Apply(batch[:h]); err != nil {
			return err
		}
		return s.Apply(batch[h:])
	}
	return err
}

func (s *Store) applyTxn(batch []events.Stored) error {
	last := s.applied.Load()
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	w := &writer{txn: txn}
	for _, st := range batch {
		if st.Seq <= last {
			continue
		}
		if err := s.applyOne(w, st); err != nil {
			return fmt.Errorf("apply seq %d: %w", st.Seq, err)
		}
		last = st.Seq
	}
	if last == s.applied.Load() {
		return nil
	}
	if err := s.commit(txn, last); err != nil {
		return err
	}
	s.skipped.Add(w.skipped)
	return nil
}

func (s *Store) commit(txn *badger.Txn, seq uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	if err := txn.Set(keySeq, b[:]); err != nil {
		return fmt.Errorf("record sequence: %w", err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit view: %w", err)
	}
	s.applied.Store(seq)
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (s *Store) skip(w *writer, st events.Stored, why error) error {
	w.skipped++
	s.log.Warn("view skipped a stream message", "seq", st.Seq, "subject", st.Subject, "err", why)
	// A fact the view cannot read still moves its session's subjects: the
	// session's last sequence must follow, or every conditional write on
	// the session (refresh, revoke) would conflict for ever.
	agg, _, id, ok := events.ParseSubject(st.Subject)
	if !ok || agg != "session" {
		return nil
	}
	var sess session.Session
	found, err := w.get(kSession(id), &sess)
	if err != nil || !found || sess.LastSeq >= st.Seq {
		return err
	}
	sess.LastSeq = st.Seq
	return w.put(kSession(id), sess, sess.ExpiresAt.Add(retention))
}

// Keys. Ids are subject-safe ([A-Za-z0-9_-]), digests hex, so ':' can
// separate parts.
var keySeq = []byte("m:seq")

func kSession(id string) []byte           { return []byte("s:" + id) }
func kDigest(d string) []byte             { return []byte("d:" + d) }
func kToken(jti string) []byte            { return []byte("j:" + jti) }
func kUser(id string) []byte              { return []byte("u:" + id) }
func kUserSession(uid, sid string) []byte { return []byte("us:" + uid + ":" + sid) }
func kKey(kid string) []byte              { return []byte("k:" + kid) }
func kAddr(acct, addr string) []byte      { return []byte("ta:" + acct + ":" + addrKey(addr)) }
func kAccount(acct string) []byte         { return []byte("tc:" + acct) }
func kAddrAll(addr string) []byte         { return []byte("tg:" + addr) }

// kDue is a deadline index entry: sorted by time, so the sweeper scans a
// prefix.
func kDue(at time.Time, sid string) []byte {
	return []byte(fmt.Sprintf("x:%020d:%s", max(at.UnixNano(), 0), sid))
}

func addrKey(addr string) string {
	if addr == "" {
		return "-"
	}
	return addr
}

// retention keeps records a little past the moment they stop mattering.
const retention = time.Hour

// writer wraps a transaction with typed reads and writes.
type writer struct {
	txn     *badger.Txn
	skipped uint64
}

func (w *writer) get(key []byte, v any) (bool, error) {
	return getJSON(w.txn, key, v)
}

// put stores v until expires (zero: forever). A record already past its
// expiry is not written.
func (w *writer) put(key []byte, v any, expires time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.set(key, b, expires)
}

func (w *writer) set(key, val []byte, expires time.Time) error {
	e := badger.NewEntry(key, val)
	if !expires.IsZero() {
		if !expires.After(time.Now()) {
			return nil
		}
		e.ExpiresAt = uint64(expires.Unix())
	}
	return w.txn.SetEntry(e)
}

func (w *writer) del(key []byte) error { return w.txn.Delete(key) }

func getJSON(txn *badger.Txn, key []byte, v any) (bool, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, it.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// applyOne applies one message. Unreadable messages, unknown types and
// data that does not fit are skipped and counted: the sequence still
// advances.
func (s *Store) applyOne(w *writer, st events.Stored) error {
	if st.Err != nil {
		return s.skip(w, st, st.Err)
	}
	data, err := st.Event.DecodeData()
	if err != nil {
		return s.skip(w, st, err)
	}
	switch d := data.(type) {
	case *events.SessionCreated:
		return s.applyCreated(w, st, d)
	case *events.SessionRefreshed:
		return s.applyRefreshed(w, st, d)
	case *events.SessionRevoked:
		return s.applySessionRevoked(w, st, d)
	case *events.UserRevoked:
		if !events.ValidID(d.UserID) {
			return s.skip(w, st, errBadIDs)
		}
		var u session.UserState
		if _, err := w.get(kUser(d.UserID), &u); err != nil {
			return err
		}
		u.RevokedBefore = later(u.RevokedBefore, d.RevokedBefore)
		return w.put(kUser(d.UserID), u, time.Time{})
	case *events.TokenRevoked:
		if !events.ValidID(d.JTI) {
			return s.skip(w, st, errBadIDs)
		}
		var t session.TokenInfo
		found, err := w.get(kToken(d.JTI), &t)
		if err != nil {
			return err
		}
		if !found {
			t = session.TokenInfo{JTI: d.JTI, SessionID: d.SessionID, UserID: d.UserID, ExpiresAt: d.DenyUntil}
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt = d.RevokedAt
		}
		return w.put(kToken(d.JTI), t, later(t.ExpiresAt, d.DenyUntil).Add(retention))
	case *events.LoginFailed:
		return s.applyLoginFailed(w, d)
	case *events.KeyRevoked:
		if !events.ValidID(d.KeyID) {
			return s.skip(w, st, errBadIDs)
		}
		var k session.KeyState
		if _, err := w.get(kKey(d.KeyID), &k); err != nil {
			return err
		}
		if k.RevokedAt.IsZero() {
			k.RevokedAt = d.RevokedAt
		}
		return w.put(kKey(d.KeyID), k, time.Time{})
	case *events.KeyRotated:
		return nil // keys live in the key store; the JWKS follows it
	}
	return s.skip(w, st, fmt.Errorf("no view rule for %s", st.Event.Type))
}

var errBadIDs = errors.New("ids are not subject-safe")

func (s *Store) applyCreated(w *writer, st events.Stored, d *events.SessionCreated) error {
	if !events.ValidID(d.SessionID) || !events.ValidID(d.UserID) || d.RefreshDigest == "" {
		return s.skip(w, st, errBadIDs)
	}
	var cur session.Session
	found, err := w.get(kSession(d.SessionID), &cur)
	if err != nil {
		return err
	}
	if found {
		cur.LastSeq = max(cur.LastSeq, st.Seq)
		return w.put(kSession(cur.ID), cur, cur.ExpiresAt.Add(retention))
	}
	sess := session.Session{
		ID: d.SessionID, UserID: d.UserID, AccountKey: d.AccountKey, ClientID: d.ClientID,
		IP: d.IP, UserAgent: d.UserAgent, Generation: d.Generation, RefreshDigest: d.RefreshDigest,
		CreatedAt: d.CreatedAt, IdleExpiresAt: d.IdleExpiresAt, ExpiresAt: d.ExpiresAt,
		MaxAccessExp: d.AccessExpiresAt, LastSeq: st.Seq,
	}
	until := sess.ExpiresAt.Add(retention)
	if err := w.put(kSession(sess.ID), sess, until); err != nil {
		return err
	}
	if err := w.set(kDigest(d.RefreshDigest), digestRef(sess.ID, sess.Generation), until); err != nil {
		return err
	}
	if err := w.set(kUserSession(sess.UserID, sess.ID), nil, until); err != nil {
		return err
	}
	if err := w.set(kDue(sess.IdleExpiresAt, sess.ID), nil, until); err != nil {
		return err
	}
	if err := w.set(kDue(sess.ExpiresAt, sess.ID), nil, until); err != nil {
		return err
	}
	if err := s.recordAccess(w, sess, d.AccessJTI, d.KeyID, d.AccessExpiresAt); err != nil {
		return err
	}
	var th session.Throttle
	if _, err := w.get(kAddr(d.AccountKey, d.IP), &th); err != nil {
		return err
	}
	th = session.ApplySuccess(th, d.CreatedAt)
	return w.put(kAddr(d.AccountKey, d.IP), addrRecord(th), addrExpiry(th))
}

// recordAccess records an issued access token and raises the latest
// access expiry of its user and key.
func (s *Store) recordAccess(w *writer, sess session.Session, jti, kid string, exp time.Time) error {
	if events.ValidID(jti) {
		t := session.TokenInfo{JTI: jti, SessionID: sess.ID, UserID: sess.UserID, KeyID: kid, ExpiresAt: exp}
		if err := w.put(kToken(jti), t, exp.Add(retention)); err != nil {
			return err
		}
	}
	var u session.UserState
	if _, err := w.get(kUser(sess.UserID), &u); err != nil {
		return err
	}
	if exp.After(u.MaxAccessExp) {
		u.MaxAccessExp = exp.Add(maxExpStep)
		if err := w.put(kUser(sess.UserID), u, time.Time{}); err != nil {
			return err
		}
	}
	if !events.ValidID(kid) {
		return nil
	}
	var k session.KeyState
	if _, err := w.get(kKey(kid), &k); err != nil {
		return err
	}
	if exp.After(k.MaxAccessExp) {
		k.MaxAccessExp = exp.Add(maxExpStep)
		return w.put(kKey(kid), k, time.Time{})
	}
	return nil
}

// maxExpStep rounds the latest access expiry of a user or key up, so that
// a busy user's refreshes rewrite it once a minute, not every time. The
// recorded value is an upper bound: a deny_until computed from it covers
// every token, by up to this much more.
const maxExpStep = time.Minute

func (s *Store) applyRefreshed(w *writer, st events.Stored, d *events.SessionRefreshed) error {
	if d.RefreshDigest == "" {
		return s.skip(w, st, errBadIDs)
	}
	sess, ok, err := s.knownSession(w, st, d.SessionID)
	if !ok {
		return err
	}
	until := sess.ExpiresAt.Add(retention)
	if d.Generation <= sess.Generation {
		return w.put(kSession(sess.ID), sess, until)
	}
	if err := w.del(kDue(sess.IdleExpiresAt, sess.ID)); err != nil {
		return err
	}
	sess.PreviousDigest = d.PreviousRefreshDigest
	sess.RefreshDigest = d.RefreshDigest
	sess.Generation = d.Generation
	// The rotation counts from when the stream stored it: a request that
	// arrived before then could not have known of it.
	sess.RotatedAt = st.Time
	if sess.RotatedAt.IsZero() {
		sess.RotatedAt = d.RefreshedAt
	}
	sess.LastRefreshedAt = d.RefreshedAt
	sess.IdleExpiresAt = d.IdleExpiresAt
	sess.MaxAccessExp = later(sess.MaxAccessExp, d.AccessExpiresAt)
	if err := w.put(kSession(sess.ID), sess, until); err != nil {
		return err
	}
	if err := w.set(kDigest(d.RefreshDigest), digestRef(sess.ID, sess.Generation), until); err != nil {
		return err
	}
	if sess.RevokedAt.IsZero() {
		if err := w.set(kDue(sess.IdleExpiresAt, sess.ID), nil, until); err != nil {
			return err
		}
	}
	return s.recordAccess(w, sess, d.AccessJTI, d.KeyID, d.AccessExpiresAt)
}

// knownSession loads the session a fact is about and records the fact's
// sequence on it; ok is false (and the fact skipped) for a bad id or a
// session the view does not have.
func (s *Store) knownSession(w *writer, st events.Stored, id string) (session.Session, bool, error) {
	var sess session.Session
	if !events.ValidID(id) {
		return sess, false, s.skip(w, st, errBadIDs)
	}
	found, err := w.get(kSession(id), &sess)
	if err != nil || !found {
		if err == nil {
			err = s.skip(w, st, errUnknownSession)
		}
		return sess, false, err
	}
	sess.LastSeq = max(sess.LastSeq, st.Seq)
	return sess, true, nil
}

var errUnknownSession = errors.New("fact about a session the view does not have")

func (s *Store) applySessionRevoked(w *writer, st events.Stored, d *events.SessionRevoked) error {
	sess, ok, err := s.knownSession(w, st, d.SessionID)
	if !ok {
		return err
	}
	if sess.RevokedAt.IsZero() {
		sess.RevokedAt = d.RevokedAt
		sess.RevokeReason = d.Reason
	}
	if err := w.del(kDue(sess.IdleExpiresAt, sess.ID)); err != nil {
		return err
	}
	if err := w.del(kDue(sess.ExpiresAt, sess.ID)); err != nil {
		return err
	}
	return w.put(kSession(sess.ID), sess, sess.ExpiresAt.Add(retention))
}

// Throttle records are stored in two parts: per account and address, and
// per account.
type addrRec struct {
	Failures      int       `json:"f,omitempty"`
	LastFailureAt time.Time `json:"l,omitzero"`
	KnownAt       time.Time `json:"k,omitzero"`
}

func addrRecord(t session.Throttle) addrRec {
	return addrRec{Failures: t.Failures, LastFailureAt: t.LastFailureAt, KnownAt: t.KnownAt}
}

// addrExpiry keeps an address record while its failures or its being
// known can matter.
func addrExpiry(t session.Throttle) time.Time {
	return later(t.LastFailureAt.Add(session.FailureMemory), t.KnownAt.Add(maxKnownAddressTTL)).Add(retention)
}

// maxKnownAddressTTL bounds how long the view keeps a known address; the
// configured KnownAddressTTL may not be longer to be fully honoured.
const maxKnownAddressTTL = 90 * 24 * time.Hour

func (s *Store) applyLoginFailed(w *writer, d *events.LoginFailed) error {
	if d.AccountKey == "" || len(d.AccountKey) > 128 || strings.ContainsAny(d.AccountKey, ":") || len(d.IP) > 64 || strings.ContainsAny(d.IP, ": ") && !isIPv6(d.IP) {
		return nil
	}
	var a addrRec
	if _, err := w.get(kAddr(d.AccountKey, d.IP), &a); err != nil {
		return err
	}
	var c accountRec
	if _, err := w.get(kAccount(d.AccountKey), &c); err != nil {
		return err
	}
	var g accountRec
	if d.IP != "" {
		if _, err := w.get(kAddrAll(d.IP), &g); err != nil {
			return err
		}
	}
	th := session.ApplyFailure(session.Throttle{Failures: a.Failures, LastFailureAt: a.LastFailureAt, KnownAt: a.KnownAt,
		AccountFailures: c.Failures, AddressFailures: g.Failures}, d.FailedAt)
	if err := w.put(kAddr(d.AccountKey, d.IP), addrRecord(th), addrExpiry(th)); err != nil {
		return err
	}
	if d.IP != "" {
		g.Failures = th.AddressFailures
		if err := w.put(kAddrAll(d.IP), g, g.Failures[len(g.Failures)-1].Add(session.FailureMemory+retention)); err != nil {
			return err
		}
	}
	c.Failures = th.AccountFailures
	return w.put(kAccount(d.AccountKey), c, c.Failures[len(c.Failures)-1].Add(session.FailureMemory+retention))
}

type accountRec struct {
	Failures []time.Time `json:"f"`
}

func digestRef(sid string, gen uint64) []byte {
	return []byte(sid + ":" + strconv.FormatUint(gen, 10))
}

// ---- reads ----

// read decodes the record at key; missing is returned when there is none
// (nil: the zero value).
func read[T any](s *Store, key []byte, missing error) (T, error) {
	var v T
	err := s.db.View(func(txn *badger.Txn) error {
		found, err := getJSON(txn, key, &v)
		if err == nil && !found {
			return missing
		}
		return err
	})
	return v, err
}

// Session implements session.View.
func (s *Store) Session(_ context.Context, id string) (session.Session, error) {
	return read[session.Session](s, kSession(id), session.ErrNotFound)
}

// SessionByDigest implements session.View.
func (s *Store) SessionByDigest(_ context.Context, digest string) (session.Session, uint64, error) {
	var sess session.Session
	var gen uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(kDigest(digest))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return session.ErrNotFound
		}
		if err != nil {
			return err
		}
		var ref string
		if err := it.Value(func(v []byte) error { ref = string(v); return nil }); err != nil {
			return err
		}
		sid, g, ok := strings.Cut(ref, ":")
		if gen, err = strconv.ParseUint(g, 10, 64); !ok || err != nil {
			return errors.New("corrupt digest record")
		}
		found, err := getJSON(txn, kSession(sid), &sess)
		if err == nil && !found {
			return session.ErrNotFound
		}
		return err
	})
	return sess, gen, err
}

// Token implements session.View.
func (s *Store) Token(_ context.Context, jti string) (session.TokenInfo, error) {
	return read[session.TokenInfo](s, kToken(jti), session.ErrNotFound)
}

// User implements session.View.
func (s *Store) User(_ context.Context, id string) (session.UserState, error) {
	return read[session.UserState](s, kUser(id), nil)
}

// Key implements session.View.
func (s *Store) Key(_ context.Context, kid string) (session.KeyState, error) {
	return read[session.KeyState](s, kKey(kid), nil)
}

// Throttle implements session.View.
func (s *Store) Throttle(_ context.Context, accountKey, addr string) (session.Throttle, error) {
	var a addrRec
	var c, g accountRec
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := getJSON(txn, kAddr(accountKey, addr), &a); err != nil {
			return err
		}
		if addr != "" {
			if _, err := getJSON(txn, kAddrAll(addr), &g); err != nil {
				return err
			}
		}
		_, err := getJSON(txn, kAccount(accountKey), &c)
		return err
	})
	return session.Throttle{Failures: a.Failures, LastFailureAt: a.LastFailureAt, KnownAt: a.KnownAt,
		AccountFailures: c.Failures, AddressFailures: g.Failures}, err
}

// UserSessions implements session.View.
func (s *Store) UserSessions(_ context.Context, userID string) ([]session.Session, error) {
	var out []session.Session
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := kUserSession(userID, "")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			sid := string(it.Item().Key()[len(prefix):])
			var sess session.Session
			found, err := getJSON(txn, kSession(sid), &sess)
			if err != nil {
				return err
			}
			if found {
				out = append(out, sess)
			}
		}
		return nil
	})
	return out, err
}

// DueSessions implements session.View.
func (s *Store) DueSessions(_ context.Context, now time.Time, limit int) ([]session.Session, error) {
	var out []session.Session
	end := kDue(now, "")
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("x:")})
		defer it.Close()
		seen := map[string]bool{}
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().Key()
			if string(k) >= string(end) {
				break
			}
			sid := string(k[len("x:00000000000000000000:"):])
			if seen[sid] {
				continue
			}
			seen[sid] = true
			var sess session.Session
			found, err := getJSON(txn, kSession(sid), &sess)
			if err != nil {
				return err
			}
			if found && sess.RevokedAt.IsZero() && sess.Status(now, time.Time{}) == session.StatusExpired {
				out = append(out, sess)
			}
		}
		return nil
	})
	return out, err
}

// Dump returns every live key and value of the view, for comparing two
// views (tests of rebuild).
func (s *Store) Dump() (map[string]string, error) {
	out := map[string]string{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = string(v)
		}
		return nil
	})
	return out, err
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any)  {}
func (b badgerLogger) Debugf(f string, a ...any) {}

// isIPv6 tells an IPv6 address (which has colons) from junk in a key.
func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}
