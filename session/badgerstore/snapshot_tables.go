package badgerstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/ristretto/v2/z"
)

// tableWriter builds a new Badger directory from records handed over in
// key order, through a StreamWriter: the tables are written straight to
// the last level, with no memtable, write-ahead log or compaction.
type tableWriter struct {
	db *badger.DB
	sw *badger.StreamWriter
	*batchWriter
}

// newTableWriter opens the StreamWriter in the empty directory dir. Its
// tables are compressed as comp says. The StreamWriter writes to the
// last level, whose tables are BaseTableSize*TableSizeMultiplier^
// (MaxLevels-2) long: tables of restoreTables batches, each written to
// its file while the next is built (rather than one table of
// everything, built in memory and written at the end).
func newTableWriter(dir string, comp options.CompressionType, log *slog.Logger) (*tableWriter, error) {
	opts := badgerOptions(dir, log, false).WithCompression(comp)
	table := int64(restoreTables * restoreBatch)
	for range opts.MaxLevels - 2 {
		table /= int64(opts.TableSizeMultiplier)
	}
	db, err := openBadger(opts.WithBaseTableSize(table))
	if err != nil {
		return nil, err
	}
	sw := db.NewStreamWriter()
	if err := sw.Prepare(); err != nil {
		db.Close()
		return nil, err
	}
	return &tableWriter{db: db, sw: sw, batchWriter: startBatchWriter(sw)}, nil
}

// finish writes what is left and closes the directory if ok, or throws
// the records away; it returns the first error.
func (t *tableWriter) finish(ok bool) error {
	err := t.close(ok)
	if ok && err == nil {
		err = t.sw.Flush()
	} else {
		t.sw.Cancel()
	}
	if cerr := t.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// buildTables writes every record txn reads, with its expiry and user
// meta, to a new Badger directory dir, and returns how many it wrote.
// The tables are compressed as the view's own: this is done once, by the
// writer of a snapshot, for every manager that restores it.
func buildTables(dir string, txn *badger.Txn, log *slog.Logger) (records uint64, err error) {
	tw, err := newTableWriter(dir, badgerOptions(dir, log, false).Compression, log)
	if err != nil {
		return 0, err
	}
	defer func() {
		if ferr := tw.finish(err == nil); err == nil {
			err = ferr
		}
	}()
	return eachRecord(txn, tw.add)
}

// eachRecord calls fn with every live record txn reads, in key order:
// its key, value, expiry (Unix seconds, 0: none) and user meta, which
// are only valid during the call. It returns how many it read.
func eachRecord(txn *badger.Txn, fn func(key, val []byte, expires uint64, meta byte) error) (records uint64, err error) {
	// Values are read in place, not copied ahead: they are small and in
	// the tables.
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		err := item.Value(func(v []byte) error {
			return fn(item.Key(), v, item.ExpiresAt(), item.UserMeta())
		})
		if err != nil {
			return records, err
		}
		records++
	}
	return records, nil
}

// restoreRecords reads the records of a format 1 snapshot, its end and
// its digest from br into a new Badger directory dir. Its tables are not
// compressed: this is paid for at start-up, where time counts;
// compactions later compress what they write.
func restoreRecords(dir string, br *bufio.Reader, lh *lagHasher, info SnapshotInfo, log *slog.Logger) (_ SnapshotInfo, err error) {
	tw, err := newTableWriter(dir, options.None, log)
	if err != nil {
		return info, err
	}
	defer func() {
		if ferr := tw.finish(err == nil); err == nil {
			err = ferr
		}
	}()
	var key, val, last []byte
	for {
		klen, err := binary.ReadUvarint(br)
		if err != nil {
			return info, badSnapshot("record %d: %w", info.Records, err)
		}
		if klen == 0 {
			break
		}
		if key, err = readInto(br, key, klen); err != nil {
			return info, badSnapshot("record %d: %w", info.Records, err)
		}
		if info.Records > 0 && bytes.Compare(key, last) <= 0 {
			return info, badSnapshot("record %d out of order", info.Records)
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
			return info, badSnapshot("record %d: %w", info.Records, err)
		}
		if err := tw.add(key, val, expires, meta); err != nil {
			return info, err
		}
		info.Records++
	}
	var tail [8]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil {
		return info, badSnapshot("end: %w", err)
	}
	if n := binary.BigEndian.Uint64(tail[:]); n != info.Records {
		return info, badSnapshot("%d records, the snapshot says %d", info.Records, n)
	}
	return info, checkDigest(br, lh)
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
		w.free <- z.NewBuffer(restoreBatch+restoreBatch/4, "badgerstore.tables")
	}
	w.buf = z.NewBuffer(restoreBatch+restoreBatch/4, "badgerstore.tables")
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
