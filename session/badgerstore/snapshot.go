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
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
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
	// No compression: the restore is paid for at start-up, where time
	// counts; compactions later compress what they write (Open's
	// options). The StreamWriter writes to the last level, whose tables
	// are BaseTableSize*TableSizeMultiplier^(MaxLevels-2) long: tables
	// of restoreTables batches, each written to its file while the next
	// is built (rather than one table of everything, built in memory and
	// written at the end).
	opts := badgerOptions(dir, log, false).WithCompression(options.None)
	table := int64(restoreTables * restoreBatch)
	for range opts.MaxLevels - 2 {
		table /= int64(opts.TableSizeMultiplier)
	}
	db, err := openBadger(opts.WithBaseTableSize(table))
	if err != nil {
		return info, err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	sw := db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		return info, err
	}
	defer func() {
		if err != nil {
			sw.Cancel()
		}
	}()
	// The snapshot is read, verified and encoded here while a goroutine
	// hands the previous batch to the StreamWriter, whose decoding of it
	// and table building then run beside the reading.
	w := startBatchWriter(sw)
	info, err = readSnapshot(r, stream, w)
	if werr := w.close(err == nil); err == nil {
		err = werr
	}
	if err != nil {
		return info, err
	}
	if err := sw.Flush(); err != nil {
		return info, err
	}
	var seq uint64
	if err := db.View(func(txn *badger.Txn) (err error) { seq, err = readSeq(txn); return err }); err != nil {
		return info, err
	}
	if seq != info.Seq {
		return info, fmt.Errorf("%w: holds sequence %d, the header says %d", ErrBadSnapshot, seq, info.Seq)
	}
	return info, nil
}

// readSnapshot reads and verifies a snapshot of the stream tagged
// stream, handing its records to w. It returns ErrBadSnapshot for one
// that does not verify; records handed over before that are the
// caller's to throw away.
func readSnapshot(r io.Reader, stream uint64, w *batchWriter) (info SnapshotInfo, err error) {
	lh := newLagHasher(r)
	br := bufio.NewReaderSize(lh, 256<<10)
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

	var key, val, last []byte
	for {
		klen, err := binary.ReadUvarint(br)
		if err != nil {
			return info, bad("record %d: %w", info.Records, err)
		}
		if klen == 0 {
			break
		}
		if key, err = readInto(br, key, klen); err != nil {
			return info, bad("record %d: %w", info.Records, err)
		}
		if info.Records > 0 && bytes.Compare(key, last) <= 0 {
			return info, bad("record %d out of order", info.Records)
		}
		last = append(last[:0], key...)
		vlen, err := binary.ReadUvarint(br)
		if err == nil {
			val, err = readInto(br, val, vlen)
		}
		var expires uint64
		if err == nil {
			expires, err = binary.ReadUvarint(br)
		}
		var meta byte
		if err == nil {
			meta, err = br.ReadByte()
		}
		if err != nil {
			return info, bad("record %d: %w", info.Records, err)
		}
		if err := w.add(key, val, expires, meta); err != nil {
			return info, err
		}
		info.Records++
	}
	var tail [8]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil {
		return info, bad("end: %w", err)
	}
	if n := binary.BigEndian.Uint64(tail[:]); n != info.Records {
		return info, bad("%d records, the snapshot says %d", info.Records, n)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, want); err != nil {
		return info, bad("digest: %w", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return info, bad("data after the digest")
	}
	// Everything has been read: the hasher held back the digest.
	if !bytes.Equal(lh.sum(), want) {
		return info, bad("checksum does not match")
	}
	return info, nil
}

// batchWriter fills batches of records for a StreamWriter, which a
// goroutine of its own writes: the StreamWriter decodes a batch and
// builds tables of it while the next one is read. (One stream: several
// streams, a batch each, decoded side by side, were slower on two cores,
// as closing a stream holds up the others.)
type batchWriter struct {
	sw     *badger.StreamWriter
	buf    *z.Buffer // being filled
	todo   chan *z.Buffer
	free   chan *z.Buffer
	done   chan struct{} // closed when the goroutine returns
	failed atomic.Bool   // err is set
	err    error
}

// restoreBatch is the size of a batch handed to the StreamWriter (tests
// make it small); the tables it builds are restoreTables batches long.
var restoreBatch = 4 << 20

const restoreTables = 8

func startBatchWriter(sw *badger.StreamWriter) *batchWriter {
	w := &batchWriter{sw: sw, todo: make(chan *z.Buffer, 1), free: make(chan *z.Buffer, 3), done: make(chan struct{})}
	for range 2 {
		w.free <- z.NewBuffer(restoreBatch+restoreBatch/4, "badgerstore.Restore")
	}
	w.buf = z.NewBuffer(restoreBatch+restoreBatch/4, "badgerstore.Restore")
	go func() {
		defer close(w.done)
		for b := range w.todo {
			if !w.failed.Load() {
				if err := w.sw.Write(b); err != nil {
					w.err = err
					w.failed.Store(true)
				}
			}
			b.Reset()
			w.free <- b
		}
	}()
	return w
}

// add encodes a record as a pb.KV of version 1, as badger.KVToBuffer
// does, without its reflection: key (field 1), value (2), user meta (3),
// version (4), expiry (5).
func (w *batchWriter) add(key, val []byte, expires uint64, meta byte) error {
	n := 1 + uvarintLen(uint64(len(key))) + len(key) + 3 + 2
	if len(val) > 0 {
		n += 1 + uvarintLen(uint64(len(val))) + len(val)
	}
	if expires != 0 {
		n += 1 + uvarintLen(expires)
	}
	b := w.buf.SliceAllocate(n)[:0]
	b = append(b, 1<<3|2)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	if len(val) > 0 {
		b = append(b, 2<<3|2)
		b = binary.AppendUvarint(b, uint64(len(val)))
		b = append(b, val...)
	}
	b = append(b, 3<<3|2, 1, meta, 4<<3|0, 1)
	if expires != 0 {
		b = append(b, 5<<3|0)
		b = binary.AppendUvarint(b, expires)
	}
	if len(b) != n {
		panic("badgerstore: record encoded to the wrong length")
	}
	if w.buf.LenNoPadding() < restoreBatch {
		return nil
	}
	return w.flush()
}

// flush hands the batch being filled to the goroutine. It returns the
// StreamWriter's error, if it had one.
func (w *batchWriter) flush() error {
	if w.failed.Load() {
		return w.err
	}
	w.todo <- w.buf
	w.buf = <-w.free
	return nil
}

// close writes what is left (unless !flush), waits for the goroutine
// and frees the batches.
func (w *batchWriter) close(flush bool) error {
	var err error
	if flush && w.buf.LenNoPadding() > 0 {
		err = w.flush()
	}
	close(w.todo)
	<-w.done
	_ = w.buf.Release()
	for range 2 {
		_ = (<-w.free).Release()
	}
	if w.failed.Load() {
		return w.err
	}
	return err
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// lagHasher hashes what is read through it but the last sha256.Size
// bytes: once the whole snapshot has been read, its sum is that of
// everything before the digest, which is what it held back. The records
// are then read from a plain bufio.Reader, and hashed in large pieces.
type lagHasher struct {
	r    io.Reader
	h    hash.Hash
	back []byte // the last bytes read, not hashed yet: at most sha256.Size
	buf  [2 * sha256.Size]byte
}

func newLagHasher(r io.Reader) *lagHasher {
	l := &lagHasher{r: r, h: sha256.New()}
	l.back = l.buf[:0]
	return l
}

func (l *lagHasher) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if n >= sha256.Size {
		l.h.Write(l.back)
		l.h.Write(p[:n-sha256.Size])
		l.back = append(l.buf[:0], p[n-sha256.Size:n]...)
	} else if n > 0 {
		l.back = append(l.back, p[:n]...)
		if k := len(l.back) - sha256.Size; k > 0 {
			l.h.Write(l.back[:k])
			l.back = append(l.buf[:0], l.back[k:]...)
		}
	}
	return n, err
}

// sum is the SHA-256 of what was read but the last sha256.Size bytes.
func (l *lagHasher) sum() []byte { return l.h.Sum(nil) }

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
