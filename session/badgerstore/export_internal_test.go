package badgerstore

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"
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

// WriteRecordsSnapshot writes a snapshot of s in format 1 (records), as
// versions before format 2 did, for the tests that restore one.
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
	b := appendHeader(nil, snapshotRecords, info)
	bw.Write(b)
	info.Records, err = eachRecord(txn, func(key, val []byte, expires uint64, meta byte) error {
		_, err := bw.Write(appendRecord(b[:0], key, val, expires, meta))
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
