package badgerstore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/sessionbus/sessionbus/session"
)

// SetRestoreBatch makes Restore hand batches of n bytes to Badger until
// the test ends: a small snapshot then goes through many, written by
// several goroutines at once.
func SetRestoreBatch(t testing.TB, n int) {
	t.Helper()
	old := restoreBatch
	restoreBatch = n
	t.Cleanup(func() { restoreBatch = old })
}

// WriteRecordsSnapshot writes a snapshot of s as version 1 did: in
// format 1 (records), of a view of format version 1 (JSON records), for
// the tests that restore one.
func WriteRecordsSnapshot(s *Store, w io.Writer, stream uint64) (SnapshotInfo, error) {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	seq, err := readSeq(txn)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info := SnapshotInfo{Seq: seq, Stream: stream}
	h := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	b := appendHeaderOf(nil, snapshotRecords, 1, info)
	bw.Write(b)
	info.Records, err = eachRecord(txn, func(key, val []byte, expires uint64, meta byte) error {
		j, err := recordAs(key, val, json.Marshal)
		if err != nil {
			return err
		}
		_, err = bw.Write(appendRecord(b[:0], key, j, expires, meta))
		return err
	})
	if err != nil {
		return info, err
	}
	b = binary.AppendUvarint(b[:0], 0)
	b = binary.BigEndian.AppendUint64(b, info.Records)
	bw.Write(b)
	if err := bw.Flush(); err != nil {
		return info, err
	}
	_, err = w.Write(h.Sum(nil))
	return info, err
}

// recordAs decodes the record at key (either encoding) and encodes it
// again with encode; values that are not records (index entries, the
// sequence) are returned as they are.
func recordAs(key, val []byte, encode func(any) ([]byte, error)) ([]byte, error) {
	var v any
	switch k := string(key); {
	case strings.HasPrefix(k, "s:"):
		v = &session.Session{}
	case strings.HasPrefix(k, "j:"):
		v = &session.TokenInfo{}
	case strings.HasPrefix(k, "u:"):
		v = &session.UserState{}
	case strings.HasPrefix(k, "k:"):
		v = &session.KeyState{}
	case strings.HasPrefix(k, "ta:"):
		v = &addrRec{}
	case strings.HasPrefix(k, "tc:"), strings.HasPrefix(k, "tg:"):
		v = &accountRec{}
	default:
		return bytes.Clone(val), nil
	}
	if err := decodeRecord(val, v); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return encode(reflect.ValueOf(v).Elem().Interface())
}

// LogicalFingerprint is Fingerprint with every record in the binary
// encoding, whichever it is stored in: two views with the same one hold
// the same records, values and expiries.
func LogicalFingerprint(s *Store) (records uint64, sum [sha256.Size]byte, err error) {
	h := sha256.New()
	var b []byte
	err = s.db.View(func(txn *badger.Txn) error {
		records, err = eachRecord(txn, func(key, val []byte, expires uint64, meta byte) error {
			v, err := recordAs(key, val, encodeRecord)
			if err != nil {
				return err
			}
			h.Write(appendRecord(b[:0], key, v, expires, meta))
			return nil
		})
		return err
	})
	h.Sum(sum[:0])
	return records, sum, err
}

// RewriteAsJSON rewrites every record of s in JSON, as version 1 wrote
// them, keeping their expiries.
func RewriteAsJSON(s *Store) error {
	return s.db.Update(func(txn *badger.Txn) error {
		type rec struct {
			key, val []byte
			expires  uint64
		}
		var all []rec
		if _, err := eachRecord(txn, func(key, val []byte, expires uint64, _ byte) error {
			j, err := recordAs(key, val, json.Marshal)
			all = append(all, rec{bytes.Clone(key), j, expires})
			return err
		}); err != nil {
			return err
		}
		for _, r := range all {
			if err := txn.SetEntry(&badger.Entry{Key: r.key, Value: r.val, ExpiresAt: r.expires}); err != nil {
				return err
			}
		}
		return nil
	})
}
