package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/klauspost/compress/snappy"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
)

// ErrCorrupt is returned when the view on disk is damaged: a table file
// whose checksums do not match or that is cut short, a MANIFEST that does
// not read, a record that does not decode, or a view that an earlier run
// marked corrupt. The view must then not be served: move it aside (or
// delete it) and rebuild it from the stream. Once a running Store has
// returned ErrCorrupt, Corrupted is closed and the directory is marked so
// that the next Open returns ErrCorrupt too.
var ErrCorrupt = errors.New("the view is corrupt; rebuild it from the stream")

// Why not Badger alone (v4.9.6, tried with one bit flipped or a table cut
// short; the tests in corrupt_test.go fail without the checks below):
//   - Without checksum verification (Badger's default), a flipped bit in a
//     table is served: a changed value, or a key that no longer matches so
//     that an older version of it is read instead.
//   - A table file cut short panics while Badger opens it, in a goroutine
//     of its own, so no recover in the caller can catch it.
//   - ChecksumVerificationMode OnTableRead refuses to open a table whose
//     blocks do not match, but it reads a table's footer without bounds
//     checks first, so a truncated file still panics.
//   - OnBlockRead checks a block when it is loaded, but a Get that meets a
//     bad block treats the table as not having the key: the read returns
//     ErrKeyNotFound or an older version from a lower level, never an
//     error.
//
// So Open checks every table itself before Badger sees it (checkTables,
// which never panics), Badger then verifies blocks as it loads them (so
// damage is never parsed or served as a value), and a running Store checks
// its tables again every VerifyEvery, which turns damage that appears
// while it runs into ErrCorrupt.

// checkTables verifies, under the directory lock, every table the view's
// MANIFEST lists: that the file exists and that its index and every block
// match their checksums, as Badger's OnTableRead would, without panicking
// on a damaged footer. It returns the compression of each table, for
// Verify. A directory without a MANIFEST has no tables (Badger starts a new
// view and removes table files it does not know).
func checkTables(dir string, opts badger.Options) (map[uint64]options.CompressionType, error) {
	if _, err := os.Stat(filepath.Join(dir, markerCorrupt)); err == nil {
		why, _ := os.ReadFile(filepath.Join(dir, markerCorrupt))
		return nil, fmt.Errorf("%w: marked corrupt by an earlier run: %s", ErrCorrupt, strings.TrimSpace(string(why)))
	}
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	mf, _, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: MANIFEST: %w", ErrCorrupt, err)
	}
	comp := make(map[uint64]options.CompressionType, len(mf.Tables))
	for id, t := range mf.Tables {
		if t.KeyID != 0 {
			return nil, fmt.Errorf("%w: table %d is encrypted, which the view never does", ErrCorrupt, id)
		}
		comp[id] = t.Compression
	}
	// One table per core at a time: the check decompresses every block,
	// and the start of a manager waits for it.
	ids := make(chan uint64)
	var g errgroup.Group
	for range min(runtime.GOMAXPROCS(0), max(len(comp), 1)) {
		g.Go(func() error {
			var v verifier
			for id := range ids {
				data, err := v.read(table.NewFilename(id, dir))
				if err != nil {
					return fmt.Errorf("%w: table %d of the MANIFEST: %w", ErrCorrupt, id, err)
				}
				if err := v.table(data, comp[id]); err != nil {
					return fmt.Errorf("%w: %s: %w", ErrCorrupt, table.IDToFilename(id), err)
				}
			}
			return nil
		})
	}
	go func() {
		defer close(ids)
		for id := range comp {
			ids <- id
		}
	}()
	if err := g.Wait(); err != nil {
		// The feeder may be blocked on a worker that has returned.
		for range ids {
		}
		return nil, err
	}
	return comp, nil
}

// verifier reuses its buffers from one table to the next.
type verifier struct{ file, block []byte }

// read reads a whole file into the verifier's buffer.
func (v *verifier) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if int64(cap(v.file)) < fi.Size() {
		v.file = make([]byte, fi.Size())
	}
	n, err := io.ReadFull(f, v.file[:fi.Size()])
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil // cut short while being read: the checks say so
	}
	return v.file[:n], err
}

// table checks a Badger table file: its footer, the checksum of its
// index and the checksum of every block. It never panics. Layout (Badger
// table/builder.go): blocks | index | index length (4) | checksum of the
// index | checksum length (4); a block, once decompressed, is entries |
// entry offsets | their count (4) | checksum | checksum length (4).
func (v *verifier) table(data []byte, comp options.CompressionType) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable table: %v", r)
		}
	}()
	index, indexStart, err := footer(data)
	if err != nil {
		return err
	}
	ti := fb.GetRootAsTableIndex(index, 0)
	var bo fb.BlockOffset
	for i := range ti.OffsetsLength() {
		if !ti.Offsets(&bo, i) {
			return fmt.Errorf("block %d: no offset in the index", i)
		}
		off, n := int(bo.Offset()), int(bo.Len())
		if off < 0 || n < 0 || off+n > indexStart {
			return fmt.Errorf("block %d: [%d, +%d) is outside the table's %d bytes of blocks", i, off, n, indexStart)
		}
		blk, err := v.decompress(data[off:off+n], comp)
		if err == nil {
			var body []byte
			body, err = checksummed(blk)
			if err == nil && len(body) < 4 {
				err = errors.New("no entries")
			}
		}
		if err != nil {
			return fmt.Errorf("block %d at %d: %w", i, off, err)
		}
	}
	return nil
}

// footer returns the index of a table and where it starts, once its
// checksum is verified.
func footer(data []byte) (index []byte, start int, err error) {
	n := len(data)
	if n < 4 {
		return nil, 0, fmt.Errorf("%d bytes: too short", n)
	}
	cl := int(binary.BigEndian.Uint32(data[n-4:]))
	if cl > n-8 {
		return nil, 0, fmt.Errorf("checksum length %d does not fit in %d bytes", cl, n)
	}
	var sum pb.Checksum
	if err := proto.Unmarshal(data[n-4-cl:n-4], &sum); err != nil {
		return nil, 0, fmt.Errorf("index checksum: %w", err)
	}
	p := n - 4 - cl // index length (4) ends here
	il := int(binary.BigEndian.Uint32(data[p-4 : p]))
	if il > p-4 {
		return nil, 0, fmt.Errorf("index length %d does not fit in %d bytes", il, p-4)
	}
	start = p - 4 - il
	index = data[start : p-4]
	if err := verifySum(index, &sum); err != nil {
		return nil, 0, fmt.Errorf("index: %w", err)
	}
	return index, start, nil
}

// checksummed verifies b = body | checksum | checksum length (4), the
// layout of a decompressed block, and returns body.
func checksummed(b []byte) ([]byte, error) {
	n := len(b)
	if n < 4 {
		return nil, fmt.Errorf("%d bytes: too short", n)
	}
	cl := int(binary.BigEndian.Uint32(b[n-4:]))
	if cl > n-4 {
		return nil, fmt.Errorf("checksum length %d does not fit in %d bytes", cl, n)
	}
	var sum pb.Checksum
	if err := proto.Unmarshal(b[n-4-cl:n-4], &sum); err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	body := b[:n-4-cl]
	return body, verifySum(body, &sum)
}

func verifySum(b []byte, sum *pb.Checksum) error {
	switch sum.Algo {
	case pb.Checksum_CRC32C, pb.Checksum_XXHash64:
	default:
		return fmt.Errorf("unknown checksum algorithm %d", sum.Algo)
	}
	if got := y.CalculateChecksum(b, sum.Algo); got != sum.Sum {
		return fmt.Errorf("checksum mismatch: %d, want %d", got, sum.Sum)
	}
	return nil
}

func (v *verifier) decompress(b []byte, comp options.CompressionType) (out []byte, err error) {
	switch comp {
	case options.None:
		return b, nil
	case options.Snappy:
		out, err = snappy.Decode(v.block[:cap(v.block)], b)
	case options.ZSTD:
		out, err = y.ZSTDDecompress(v.block[:0], b)
	default:
		return nil, fmt.Errorf("unknown compression %d", comp)
	}
	if cap(out) > cap(v.block) {
		v.block = out
	}
	return out, err
}

// checkView runs checkTables on an existing view directory, holding the
// directory lock so that a view another process has open is not read
// while it changes.
func checkView(dir string, opts badger.Options) (map[uint64]options.CompressionType, error) {
	unlock, err := lockDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	return checkTables(dir, opts)
}

// openBadger opens the database; a panic in the caller's goroutine (the
// tables were checked, but the value log and write-ahead logs are read
// here) is returned as corruption.
func openBadger(opts badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: badger: %v", ErrCorrupt, r)
		}
	}()
	db, err = badger.Open(opts)
	return db, corruption(err, opts.Dir)
}

// corruption wraps err with ErrCorrupt if it is Badger reporting damage.
// Badger does not wrap its causes (y.Wrap formats them), so its messages,
// without the view's path (which may contain anything), are all there is
// to go by; a lock held by another process is not damage.
func corruption(err error, dir string) error {
	if err == nil || errors.Is(err, ErrCorrupt) {
		return err
	}
	msg := err.Error()
	if dir != "" {
		msg = strings.ReplaceAll(msg, dir, "")
		if abs, aerr := filepath.Abs(dir); aerr == nil {
			msg = strings.ReplaceAll(msg, abs, "")
		}
	}
	msg = strings.ToLower(msg)
	for _, s := range []string{"checksum", "corrupt", "manifest", "key registry", "encryption key mismatch", "datakey", "level validation"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	return err
}

// check passes err through; if it is corruption, the Store records it
// (see Corrupted) and marks its directory.
func (s *Store) check(err error) error {
	if err = corruption(err, s.dir); errors.Is(err, ErrCorrupt) {
		s.corruptOnce.Do(func() {
			s.corruptErr = err
			s.log.Error("the view is corrupt: stop serving and rebuild it from the stream", "err", err)
			if s.dir != "" {
				if merr := markCorrupt(s.dir, err); merr != nil {
					s.log.Error("cannot mark the view corrupt", "err", merr)
				}
			}
			close(s.corrupt)
		})
	}
	return err
}

// Corrupted is closed when the running Store has found corruption (a
// record that does not decode, a value or table that fails its checksum).
// The directory is then marked, so the next Open returns ErrCorrupt; the
// owner should stop serving. Corruption says what was found.
func (s *Store) Corrupted() <-chan struct{} { return s.corrupt }

// Corruption is the first corruption found while running, wrapping
// ErrCorrupt, or nil.
func (s *Store) Corruption() error {
	select {
	case <-s.corrupt:
		return s.corruptErr
	default:
		return nil
	}
}

// Verify reads every table file of the running view from disk and checks
// its checksums, as Open does. Badger checks a block only when it loads
// it, and then reads a bad block as a missing key; Verify turns such
// damage into ErrCorrupt (and Corrupted). A table that compaction removes
// while Verify reads it is skipped.
func (s *Store) Verify() error {
	if s.dir == "" {
		return nil
	}
	var v verifier
	for _, t := range s.db.Tables() {
		if err := s.verifyTable(&v, t.ID); err != nil {
			return s.check(fmt.Errorf("%w: %s: %w", ErrCorrupt, table.IDToFilename(t.ID), err))
		}
	}
	return nil
}

func (s *Store) verifyTable(v *verifier, id uint64) error {
	comp, ok := s.comp[id]
	if !ok {
		comp = s.db.Opts().Compression // written since Open
	}
	data, err := v.read(table.NewFilename(id, s.dir))
	if err == nil {
		err = v.table(data, comp)
	}
	if err == nil {
		return nil
	}
	// A table is listed until compaction replaces it, and deleted after:
	// one still listed after the failed read was complete while it was
	// read.
	for _, t := range s.db.Tables() {
		if t.ID == id {
			return err
		}
	}
	return nil
}

func (s *Store) verifyLoop(every time.Duration) {
	defer s.stopped.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.corrupt:
			return
		case <-t.C:
			_ = s.Verify()
		}
	}
}
