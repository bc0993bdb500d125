package badgerstore

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

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
		return w.put(kUser(d.UserID), session.ApplyUserRevoked(u, d), time.Time{})
	case *events.TokenRevoked:
		if !events.ValidID(d.JTI) {
			return s.skip(w, st, errBadIDs)
		}
		var t session.TokenInfo
		found, err := w.get(kToken(d.JTI), &t)
		if err != nil {
			return err
		}
		t = session.ApplyTokenRevoked(t, found, d)
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
		return w.put(kKey(d.KeyID), session.ApplyKeyRevoked(k, d), time.Time{})
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
		cur = session.SeenAt(cur, st.Seq)
		return w.put(kSession(cur.ID), cur, cur.ExpiresAt.Add(retention))
	}
	sess := session.NewSession(d, st.Seq)
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
	var a addrRec
	addr := session.ThrottleAddr(d.IP, d.Via)
	if _, err := w.get(kAddr(d.AccountKey, addr), &a); err != nil {
		return err
	}
	th := session.ApplySuccess(session.Throttle{Failures: a.Failures, LastFailureAt: a.LastFailureAt, KnownAt: a.KnownAt}, d.CreatedAt)
	return w.put(kAddr(d.AccountKey, addr), addrRecord(th), addrExpiry(th))
}

// recordAccess records an issued access token and raises the latest
// access expiry of its user and key.
func (s *Store) recordAccess(w *writer, sess session.Session, jti, kid string, exp time.Time) error {
	if events.ValidID(jti) {
		t := session.IssuedToken(sess, jti, kid, exp)
		if err := w.put(kToken(jti), t, exp.Add(retention)); err != nil {
			return err
		}
	}
	var u session.UserState
	if _, err := w.get(kUser(sess.UserID), &u); err != nil {
		return err
	}
	if u, raised := session.RaiseUserAccessExp(u, exp); raised {
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
	if k, raised := session.RaiseKeyAccessExp(k, exp); raised {
		return w.put(kKey(kid), k, time.Time{})
	}
	return nil
}

func (s *Store) applyRefreshed(w *writer, st events.Stored, d *events.SessionRefreshed) error {
	if d.RefreshDigest == "" {
		return s.skip(w, st, errBadIDs)
	}
	sess, ok, err := s.knownSession(w, st, d.SessionID)
	if !ok {
		return err
	}
	until := sess.ExpiresAt.Add(retention)
	next, rotated := session.ApplyRefreshed(sess, d, st.Time)
	if !rotated {
		return w.put(kSession(sess.ID), sess, until)
	}
	// The idle deadline moves: its index entry with it.
	if err := w.del(kDue(sess.IdleExpiresAt, sess.ID)); err != nil {
		return err
	}
	sess = next
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
	return session.SeenAt(sess, st.Seq), true, nil
}

var errUnknownSession = errors.New("fact about a session the view does not have")

func (s *Store) applySessionRevoked(w *writer, st events.Stored, d *events.SessionRevoked) error {
	sess, ok, err := s.knownSession(w, st, d.SessionID)
	if !ok {
		return err
	}
	sess = session.ApplySessionRevoked(sess, d)
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
	addr := session.ThrottleAddr(d.IP, d.Via)
	if d.AccountKey == "" || len(d.AccountKey) > 128 || strings.ContainsAny(d.AccountKey, ":") || len(addr) > 80 || strings.ContainsAny(addr, ": ") && !isIPv6(addr) {
		return nil
	}
	var a addrRec
	if _, err := w.get(kAddr(d.AccountKey, addr), &a); err != nil {
		return err
	}
	var c accountRec
	if _, err := w.get(kAccount(d.AccountKey), &c); err != nil {
		return err
	}
	var g accountRec
	if addr != "" {
		if _, err := w.get(kAddrAll(addr), &g); err != nil {
			return err
		}
	}
	th := session.ApplyFailure(session.Throttle{Failures: a.Failures, LastFailureAt: a.LastFailureAt, KnownAt: a.KnownAt,
		AccountFailures: c.Failures, AddressFailures: g.Failures}, d.FailedAt)
	if err := w.put(kAddr(d.AccountKey, addr), addrRecord(th), addrExpiry(th)); err != nil {
		return err
	}
	if addr != "" {
		g.Failures = th.AddressFailures
		if err := w.put(kAddrAll(addr), g, g.Failures[len(g.Failures)-1].Add(session.FailureMemory+retention)); err != nil {
			return err
		}
	}
	c.Failures = th.AccountFailures
	return w.put(kAccount(d.AccountKey), c, c.Failures[len(c.Failures)-1].Add(session.FailureMemory+retention))
}

type accountRec struct {
	Failures []time.Time `json:"f"`
}

// retention keeps records a little past the moment they stop mattering.
const retention = time.Hour

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

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
