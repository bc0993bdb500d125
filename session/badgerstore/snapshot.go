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
	"regexp"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// FormatVersion is the version of the view's keys and records. Change it
// with any change to them: a snapshot of a later version is refused
// (ErrBadSnapshot) and the view is rebuilt from the stream instead.
// Version 2 writes binary records (codec.go); version 1 wrote JSON,
// which version 2 still reads, so its snapshots are restored too.
const FormatVersion = 2

// OldestFormat is the oldest view format version this version reads.
const OldestFormat = 1

// ErrBadSnapshot is returned by Restore for a snapshot that does not
// verify: not a view snapshot, another format or view version, of
// another stream, cut short, a checksum that does not match, files that
// are not a view's, tables that do not verify, a view that does not hold
// the sequence the header names. Nothing of it is kept.
var ErrBadSnapshot = errors.New("the view snapshot does not verify")

// A snapshot (format 2, written) is
//
//	header   snapshotMagic, uint32 snapshot format, uint32 FormatVersion,
//	         uint64 stream sequence, uint64 stream tag (big-endian)
//	files    uvarint name length (> 0), name, uvarint size, the bytes;
//	         the MANIFEST, KEYREGISTRY, table (.sst) and value log (.vlog)
//	         files of a Badger directory that holds the view, once each
//	end      uvarint 0, uint64 number of files, uint64 number of records
//	digest   SHA-256 of everything before it
//
// The files are those of a new Badger directory the writer builds from
// the latest version of every live record, read in one transaction: the
// view exactly as it was after the sequence the header names, its tables
// already built, so that a restore is a copy and a check rather than a
// rebuild.
//
// Format 1 (read, no longer written) has, between the same header and
// digest, the records themselves:
//
//	records  uvarint key length (> 0), key, uvarint value length, value,
//	         uvarint expiry (Unix seconds, 0: none), byte user meta;
//	         keys in strictly ascending order
//	end      uvarint 0, uint64 number of records
const (
	snapshotMagic   = "sessionbus view snapshot\n"
	snapshotRecords = 1       // format 1: records
	snapshotFiles   = 2       // format 2: Badger's files
	maxRecordLen    = 1 << 20 // far above any record the view writes
	maxFiles        = 1 << 20
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

// snapshotFileRE matches the names of the files a snapshot carries.
var snapshotFileRE = regexp.MustCompile(`^(MANIFEST|KEYREGISTRY|[0-9]{1,12}\.(sst|vlog))$`)

// WriteSnapshot writes the view as it is now to w, tagged with stream,
// and returns what it wrote. It reads one consistent state while facts
// go on being applied (Badger's own Backup reads each key range in a
// transaction of its own, which is not one state of a view that is being
// written), builds the tables of a new Badger directory from it beside
// the view (as much disk again as the view's tables take, for as long as
// the snapshot is written) and writes that directory's files.
func (s *Store) WriteSnapshot(w io.Writer, stream uint64) (SnapshotInfo, error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	seq, err := readSeq(txn)
	if err != nil {
		return SnapshotInfo{}, s.check(err)
	}
	info := SnapshotInfo{Seq: seq, Stream: stream}
	dir, err := s.buildDir()
	if err != nil {
		return info, fmt.Errorf("snapshot: %w", err)
	}
	defer os.RemoveAll(dir)
	if info.Records, err = buildTables(dir, txn, s.log); err != nil {
		return info, fmt.Errorf("snapshot: build tables: %w", s.check(err))
	}
	names, err := filesOf(dir)
	if err != nil {
		return info, fmt.Errorf("snapshot: %w", err)
	}

	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 256<<10)
	b := appendHeader(nil, snapshotFiles, info)
	if _, err := bw.Write(b); err != nil {
		return info, err
	}
	for _, name := range names {
		if err := writeFile(bw, dir, name); err != nil {
			return info, err
		}
	}
	b = binary.AppendUvarint(b[:0], 0)
	b = binary.BigEndian.AppendUint64(b, uint64(len(names)))
	b = binary.BigEndian.AppendUint64(b, info.Records)
	if _, err := bw.Write(b); err != nil {
		return info, err
	}
	if err := bw.Flush(); err != nil {
		return info, err
	}
	_, err = w.Write(h.Sum(nil))
	return info, err
}

// appendHeader appends the header of a snapshot in format to b.
func appendHeader(b []byte, format uint32, info SnapshotInfo) []byte {
	return appendHeaderOf(b, format, FormatVersion, info)
}

// appendHeaderOf appends the header of a snapshot in format of a view of
// format version view to b.
func appendHeaderOf(b []byte, format, view uint32, info SnapshotInfo) []byte {
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint32(b, format)
	b = binary.BigEndian.AppendUint32(b, view)
	b = binary.BigEndian.AppendUint64(b, info.Seq)
	return binary.BigEndian.AppendUint64(b, info.Stream)
}

// appendRecord appends a record as format 1 has it (and Fingerprint
// sums it) to b.
func appendRecord(b, key, val []byte, expires uint64, meta byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(val)))
	b = append(b, val...)
	b = binary.AppendUvarint(b, expires)
	return append(b, meta)
}

// buildDir returns a new, empty directory for the tables of a snapshot:
// beside the view (on its disk; one left by a run that stopped while
// writing one is removed), or a temporary one for a view in memory.
func (s *Store) buildDir() (string, error) {
	if s.dir == "" {
		return os.MkdirTemp("", "sessionbus-snapshot-")
	}
	dir := filepath.Clean(s.dir) + ".snapshot-build"
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.Mkdir(dir, 0o700)
}

// filesOf lists the files of a built directory a snapshot carries,
// in a fixed order; anything else there (Badger's lock, its discard
// stats, which a new view makes anew) is left out.
func filesOf(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && snapshotFileRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// writeFile writes one file of a snapshot: its name, size and bytes.
func writeFile(w io.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(fi.Size()))
	if _, err := w.Write(b); err != nil {
		return err
	}
	if n, err := io.Copy(w, f); err != nil || n != fi.Size() {
		return fmt.Errorf("snapshot: %s: %d of %d bytes copied: %w", name, n, fi.Size(), err)
	}
	return nil
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
		err = checkRestored(tmp, info, log)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, markerView), []byte("sessionbus view (Badger)\n"), 0o600)
	}
	if err == nil {
		err = syncDir(tmp)
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

// restoreInto reads and verifies a snapshot of the stream tagged stream
// into the empty directory dir. It returns ErrBadSnapshot for one that
// does not verify; what it wrote to dir before that is the caller's to
// throw away.
func restoreInto(dir string, r io.Reader, stream uint64, log *slog.Logger) (info SnapshotInfo, err error) {
	lh := newLagHasher(r)
	br := bufio.NewReaderSize(lh, 256<<10)
	hdr := make([]byte, SnapshotHeaderLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return info, badSnapshot("header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return info, badSnapshot("not a view snapshot")
	}
	p := hdr[len(snapshotMagic):]
	format := binary.BigEndian.Uint32(p)
	if format != snapshotRecords && format != snapshotFiles {
		return info, badSnapshot("snapshot format %d, this version reads %d and %d", format, snapshotRecords, snapshotFiles)
	}
	if v := binary.BigEndian.Uint32(p[4:]); v < OldestFormat || v > FormatVersion {
		return info, badSnapshot("view format %d, this version reads %d to %d", v, OldestFormat, FormatVersion)
	}
	info.Seq, info.Stream = binary.BigEndian.Uint64(p[8:]), binary.BigEndian.Uint64(p[16:])
	if info.Stream != stream {
		return info, badSnapshot("of another stream (tag %d, the stream's is %d)", info.Stream, stream)
	}
	if format == snapshotRecords {
		return restoreRecords(dir, br, lh, info, log)
	}
	if info, err = readFiles(dir, br, info); err != nil {
		return info, err
	}
	return info, checkDigest(br, lh)
}

// readFiles reads the files of a format 2 snapshot into dir, and its end.
// Each file is synced and closed by a goroutine while the next is read.
func readFiles(dir string, br *bufio.Reader, info SnapshotInfo) (_ SnapshotInfo, err error) {
	written := make(chan *os.File, 4)
	synced := make(chan error, 1)
	go func() {
		var errs []error
		for f := range written {
			errs = append(errs, f.Sync(), f.Close())
		}
		synced <- errors.Join(errs...)
	}()
	defer func() {
		close(written)
		if serr := <-synced; err == nil {
			err = serr
		}
	}()
	var files uint64
	seen := map[string]bool{}
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return info, badSnapshot("file %d: %w", files, err)
		}
		if n == 0 {
			break
		}
		if n > 64 || files >= maxFiles {
			return info, badSnapshot("file %d: not a file of a view", files)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return info, badSnapshot("file %d: %w", files, err)
		}
		name := string(b)
		if !snapshotFileRE.MatchString(name) || seen[name] {
			return info, badSnapshot("file %d: %q is not a file of a view, or twice", files, name)
		}
		seen[name] = true
		size, err := binary.ReadUvarint(br)
		if err != nil {
			return info, badSnapshot("file %s: %w", name, err)
		}
		f, err := readFile(filepath.Join(dir, name), br, size)
		if err != nil {
			return info, err
		}
		written <- f
		files++
	}
	var end [16]byte
	if _, err := io.ReadFull(br, end[:]); err != nil {
		return info, badSnapshot("end: %w", err)
	}
	if n := binary.BigEndian.Uint64(end[:]); n != files {
		return info, badSnapshot("%d files, the snapshot says %d", files, n)
	}
	info.Records = binary.BigEndian.Uint64(end[8:])
	if !seen[badger.ManifestFilename] {
		return info, badSnapshot("no MANIFEST")
	}
	return info, nil
}

// readFile copies size bytes of r to a new file at path, and returns it
// open, to be synced.
func readFile(path string, r io.Reader, size uint64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	n, err := io.CopyN(f, r, int64(min(size, 1<<62)))
	if err == io.EOF {
		err = badSnapshot("%s cut short at %d of %d bytes", filepath.Base(path), n, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkDigest reads the digest at the end of a snapshot and checks it
// against the sum of everything before it, and that nothing follows.
func checkDigest(br *bufio.Reader, lh *lagHasher) error {
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, want); err != nil {
		return badSnapshot("digest: %w", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return badSnapshot("data after the digest")
	}
	// Everything has been read: the hasher held back the digest.
	if !bytes.Equal(lh.sum(), want) {
		return badSnapshot("checksum does not match")
	}
	return nil
}

// checkRestored checks the view restored in dir as Open would (every
// table against its checksums, without panicking on any damage) and that
// it holds the sequence the snapshot's header names.
func checkRestored(dir string, info SnapshotInfo, log *slog.Logger) error {
	bad := func(err error) error {
		if errors.Is(err, ErrCorrupt) {
			return badSnapshot("%w", err)
		}
		return err
	}
	opts := badgerOptions(dir, log, false)
	if _, err := checkTables(dir, opts); err != nil {
		return bad(err)
	}
	db, err := openBadger(opts)
	if err != nil {
		return bad(err)
	}
	var seq uint64
	err = db.View(func(txn *badger.Txn) (err error) { seq, err = readSeq(txn); return err })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return bad(corruption(err, dir))
	}
	if seq != info.Seq {
		return badSnapshot("holds sequence %d, the header says %d", seq, info.Seq)
	}
	return nil
}

func badSnapshot(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadSnapshot}, a...)...)
}

// syncDir makes the names of the files in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// lagHasher hashes what is read through it but the last sha256.Size
// bytes: once the whole snapshot has been read, its sum is that of
// everything before the digest, which is what it held back. The body is
// then read from a plain bufio.Reader, and hashed in large pieces.
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
