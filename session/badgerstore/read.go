package badgerstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/sessionbus/sessionbus/session"
)

// read decodes the record at key; missing is returned when there is none
// (nil: the zero value).
func read[T any](s *Store, key []byte, missing error) (T, error) {
	var v T
	err := s.db.View(func(txn *badger.Txn) error {
		found, err := getRecord(txn, key, &v)
		if err == nil && !found {
			return missing
		}
		return err
	})
	return v, s.check(err)
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
			return fmt.Errorf("%w: digest record %q", ErrCorrupt, ref)
		}
		found, err := getRecord(txn, kSession(sid), &sess)
		if err == nil && !found {
			return session.ErrNotFound
		}
		return err
	})
	return sess, gen, s.check(err)
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
		if _, err := getRecord(txn, kAddr(accountKey, addr), &a); err != nil {
			return err
		}
		if addr != "" {
			if _, err := getRecord(txn, kAddrAll(addr), &g); err != nil {
				return err
			}
		}
		_, err := getRecord(txn, kAccount(accountKey), &c)
		return err
	})
	return session.Throttle{Failures: a.Failures, LastFailureAt: a.LastFailureAt, KnownAt: a.KnownAt,
		AccountFailures: c.Failures, AddressFailures: g.Failures}, s.check(err)
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
			found, err := getRecord(txn, kSession(sid), &sess)
			if err != nil {
				return err
			}
			if found {
				out = append(out, sess)
			}
		}
		return nil
	})
	return out, s.check(err)
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
			found, err := getRecord(txn, kSession(sid), &sess)
			if err != nil {
				return err
			}
			if found && sess.RevokedAt.IsZero() && sess.Status(now, time.Time{}) == session.StatusExpired {
				out = append(out, sess)
			}
		}
		return nil
	})
	return out, s.check(err)
}

// Fingerprint returns the number of live records of the view and a
// SHA-256 over them (key, value, expiry and user meta, in key order),
// read in one transaction: two views with the same fingerprint hold the
// same records. Tests of rebuilds and snapshots compare views by it.
func (s *Store) Fingerprint() (records uint64, sum [sha256.Size]byte, err error) {
	h := sha256.New()
	var b []byte
	err = s.db.View(func(txn *badger.Txn) error {
		records, err = eachRecord(txn, func(key, val []byte, expires uint64, meta byte) error {
			b = appendRecord(b[:0], key, val, expires, meta)
			h.Write(b)
			return nil
		})
		return err
	})
	h.Sum(sum[:0])
	return records, sum, s.check(err)
}

// Compacting tells whether Badger has compactions to do: some level of
// the view holds more than its target (after a large replay, a restore,
// or under heavy writes). Reads then search more tables than they will
// once it is done.
func (s *Store) Compacting() bool {
	_, compacting := s.tables()
	return compacting
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
	return out, s.check(err)
}
