package badgerstore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/ristretto/v2/z"
)

// FormatVersion is the version of the view's keys and records. Change it
// with any change to them: a snapshot of another version is refused
// (ErrBadSnapshot) and the view is rebuilt from the stream instead.
const FormatVersion = 1

// ErrBadSnapshot is returned by Restore for a snapshot that does not
// verify: not a view snapshot, another format or view version, of
// another stream, cut short, a checksum that does not match, records out
// of order. Nothing of it is kept.
var ErrBadSnapshot = errors.New("the view snapshot does not verify")

// A snapshot is
//
//	header   snapshotMagic, uint32 snapshot format, uint32 FormatVersion,
//	         uint64 stream sequence, uint64 stream tag (big-endian)
//	records  uvarint key length (> 0), key, uvarint value length, value,
//	         uvarint expiry (Unix seconds, 0: none), byte user meta;
//	         keys in strictly ascending order
//	end      uvarint 0, uint64 number of records
//	digest   SHA-256 of everything before it
//
// It holds the latest version of every live record, read in one
// transaction, so it is the view exactly as it was after the sequence it
// names.
const (
	snapshotMagic  = "sessionbus view snapshot\n"
	snapshotFormat = 1
	maxRecordLen   = 1 << 20 // far above any record the view writes
)

// SnapshotHeaderLen is the length of a snapshot's header.
const SnapshotHeaderLen = len(snapshotMagic) + 4 + 4 + 8 + 8

// SnapshotSeq returns the stream sequence named in a snapshot's header,
// or 0 if hdr is not one (it is not verified: Restore does that).
func SnapshotSeq(hdr []byte) uint64 {
	if len(hdr) < SnapshotHeaderLen || string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return 0
	}
	return binary.BigEndian.Uint64(hdr[len(snapshotMagic)+8:])
}

// SnapshotInfo describes a snapshot.
type SnapshotInfo struct {
	// Seq is the last stream sequence the view had applied.
	Seq uint64
	// Stream tags the stream the view followed (the caller's choice,
	// e.g. its creation time): Restore refuses a snapshot of another.
	Stream uint64
	// Records is the number of records.
	Records uint64
}

// WriteSnapshot writes the view as it is now to w, tagged with stream,
// and returns what it wrote. It reads one consistent state while facts
// go on being applied. (Badger's own Backup reads each key range in a
// transaction of its own, which is not one state of a view that is being
// written.)
func (s *Store) WriteSnapshot(w io.Writer, stream uint64) (SnapshotInfo, error) {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	seq, err := readSeq(txn)
	if err != nil {
		return SnapshotInfo{}, s.check(err)
	}
	info := SnapshotInfo{Seq: seq, Stream: stream}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 256<<10)
	var hdr []byte
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, snapshotFormat)
	hdr = binary.BigEndian.AppendUint32(hdr, FormatVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, seq)
	hdr = binary.BigEndian.AppendUint64(hdr, stream)
	if _, err := bw.Write(hdr); err != nil {
		return info, err
	}
	it := txn.NewIterator(badger.DefaultIteratorOptions)
	defer it.Close()
	var rec []byte
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		rec = binary.AppendUvarint(rec[:0], uint64(len(item.Key())))
		rec = append(rec, item.Key()...)
		err := item.Value(func(v []byte) error {
			rec = binary.AppendUvarint(rec, uint64(len(v)))
			rec = append(rec, v...)
			return nil
		})
		if err != nil {
			return info, s.check(err)
		}
		rec = binary.AppendUvarint(rec, item.ExpiresAt())
		rec = append(rec, item.UserMeta())
		if _, err := bw.Write(rec); err != nil {
			return info, err
		}
		info.Records++
	}
	rec = binary.AppendUvarint(rec[:0], 0)
	rec = binary.BigEndian.AppendUint64(rec, info.Records)
	if _, err := bw.Write(rec); err != nil {
		return info, err
	}
	if err := bw.Flush(); err != nil {
		return info, err
	}
	_, err = w.Write(h.Sum(nil))
	return info, err
}

// Restore builds a new view in dir from the snapshot read from r, which
// must be of the stream tagged stream, and returns what it held. dir
// must not exist or be empty. The view is built beside dir and renamed
// into place only once the whole snapshot has verified, so that a
// snapshot that does not verify (ErrBadSnapshot) or an error leaves no
// dir. Open it with Open.
func Restore(dir string, r io.Reader, stream uint64, log *slog.Logger) (SnapshotInfo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return SnapshotInfo{}, fmt.Errorf("restore the view: %s is not empty", dir)
	}
	tmp := filepath.Clean(dir) + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore the view: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore the view: %w", err)
	}
	info, err := restoreInto(tmp, r, stream, log)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, markerView), []byte("sessionbus view (Badger)\n"), 0o600)
	}
	if err == nil {
		_ = os.Remove(dir) // empty, or absent
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return SnapshotInfo{}, fmt.Errorf("restore the view: %w", err)
	}
	return info, nil
}

func restoreInto(dir string, r io.Reader, stream uint64, log *slog.Logger) (info SnapshotInfo, err error) {
	// Large tables: fewer files to build and sync.
	db, err := openBadger(badgerOptions(dir, log, false).WithBaseTableSize(32 << 20))
	if err != nil {
		return info, err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	raw := bufio.NewReaderSize(r, 256<<10)
	br := &hashingReader{r: raw, h: sha256.New()}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, a...)...)
	}
	hdr := make([]byte, SnapshotHeaderLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return info, bad("header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return info, bad("not a view snapshot")
	}
	p := hdr[len(snapshotMagic):]
	if f := binary.BigEndian.Uint32(p); f != snapshotFormat {
		return info, bad("snapshot format %d, this version reads %d", f, snapshotFormat)
	}
	if v := binary.BigEndian.Uint32(p[4:]); v != FormatVersion {
		return info, bad("view format %d, this version keeps %d", v, FormatVersion)
	}
	info.Seq, info.Stream = binary.BigEndian.Uint64(p[8:]), binary.BigEndian.Uint64(p[16:])
	if info.Stream != stream {
		return info, bad("of another stream (tag %d, the stream's is %d)", info.Stream, stream)
	}

	sw := db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return info, err
	}
	defer func() {
		if err != nil {
			sw.Cancel()
		}
	}()
	buf := z.NewBuffer(8<<20, "badgerstore.Restore")
	defer func() { _ = buf.Release() }()
	// KVToBuffer copies the record: kv and its key and value buffers are
	// reused.
	kv := &pb.KV{Version: 1, UserMeta: []byte{0}}
	var last []byte
	for {
		klen, err := binary.ReadUvarint(br)
		if err != nil {
			return info, bad("record %d: %w", info.Records, err)
		}
		if klen == 0 {
			break
		}
		if kv.Key, err = readInto(br, kv.Key, klen); err != nil {
			return info, bad("record %d: %w", info.Records, err)
		}
		if info.Records > 0 && bytes.Compare(kv.Key, last) <= 0 {
			return info, bad("record %d out of order", info.Records)
		}
		last = append(last[:0], kv.Key...)
		vlen, err := binary.ReadUvarint(br)
		if err == nil {
			kv.Value, err = readInto(br, kv.Value, vlen)
		}
		if err == nil {
			kv.ExpiresAt, err = binary.ReadUvarint(br)
		}
		if err == nil {
			kv.UserMeta[0], err = br.ReadByte()
		}
		if err != nil {
			return info, bad("record %d: %w", info.Records, err)
		}
		badger.KVToBuffer(kv, buf)
		info.Records++
		if buf.LenNoPadding() >= 4<<20 {
			if err := sw.Write(buf); err != nil {
				return info, err
			}
			buf.Reset()
		}
	}
	var tail [8]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil {
		return info, bad("end: %w", err)
	}
	if n := binary.BigEndian.Uint64(tail[:]); n != info.Records {
		return info, bad("%d records, the snapshot says %d", info.Records, n)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(raw, want); err != nil {
		return info, bad("digest: %w", err)
	}
	if !bytes.Equal(br.sum(), want) {
		return info, bad("checksum does not match")
	}
	if _, err := raw.ReadByte(); err != io.EOF {
		return info, bad("data after the digest")
	}
	if buf.LenNoPadding() > 0 {
		if err := sw.Write(buf); err != nil {
			return info, err
		}
	}
	if err := sw.Flush(); err != nil {
		return info, err
	}
	var seq uint64
	if err := db.View(func(txn *badger.Txn) (err error) { seq, err = readSeq(txn); return err }); err != nil {
		return info, err
	}
	if seq != info.Seq {
		return info, bad("holds sequence %d, the header says %d", seq, info.Seq)
	}
	return info, nil
}

// hashingReader hashes what is read through it.
type hashingReader struct {
	r    *bufio.Reader
	h    hash.Hash
	pend []byte // bytes read one by one, not hashed yet
}

func (hr *hashingReader) ReadByte() (byte, error) {
	b, err := hr.r.ReadByte()
	if err == nil {
		hr.pend = append(hr.pend, b)
		if len(hr.pend) >= 4<<10 {
			hr.flush()
		}
	}
	return b, err
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	hr.flush()
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	return n, err
}

func (hr *hashingReader) flush() {
	hr.h.Write(hr.pend)
	hr.pend = hr.pend[:0]
}

func (hr *hashingReader) sum() []byte {
	hr.flush()
	return hr.h.Sum(nil)
}

// readInto reads n bytes into b's storage (grown if need be).
func readInto(r io.Reader, b []byte, n uint64) ([]byte, error) {
	if n > maxRecordLen {
		return b, fmt.Errorf("length %d", n)
	}
	b = slices.Grow(b[:0], int(n))[:n]
	_, err := io.ReadFull(r, b)
	return b, err
}

// readSeq reads the last applied sequence recorded in the view (0 for a
// new view).
func readSeq(txn *badger.Txn) (uint64, error) {
	it, err := txn.Get(keySeq)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var seq uint64
	err = it.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: sequence record of %d bytes", ErrCorrupt, len(v))
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, err
}
