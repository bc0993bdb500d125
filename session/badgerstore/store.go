package badgerstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

// Store is the Badger view. It implements session.View.
type Store struct {
	db      *badger.DB
	dir     string // "" in memory
	log     *slog.Logger
	applied atomic.Uint64
	skipped atomic.Uint64

	applyMu sync.Mutex // Apply is the only writer, one batch at a time
	mu      sync.Mutex
	notify  chan struct{} // closed and replaced after each applied batch

	snapMu sync.Mutex // one WriteSnapshot at a time: they share a directory

	comp        map[uint64]options.CompressionType // of the tables at Open
	corruptOnce sync.Once
	corrupt     chan struct{} // closed on the first corruption found
	corruptErr  error
	stop        chan struct{} // stops the periodic verification
	stopped     sync.WaitGroup
	tracer      trace.Tracer
}

var _ session.View = (*Store)(nil)

// Options of Open.
type Options struct {
	// Logger receives warnings about skipped facts and Badger's own
	// warnings; nil discards them.
	Logger *slog.Logger
	// InMemory keeps the view in memory only (benchmarks).
	InMemory bool
	// VerifyEvery is how often a running view checks its table files
	// again (see Verify): 0 means DefaultVerifyEvery, a negative value
	// never.
	VerifyEvery time.Duration
	// TracerProvider makes the spans of applied facts (default: the
	// global provider, a no-op unless the program set one).
	TracerProvider trace.TracerProvider
	// PageOutIdle is how long the view's tables must stay as they are
	// (no memtable flushed, no compaction) before it gives the pages of
	// its mapped files back to the kernel, at most once every PageOutIdle
	// (Linux; see pageOutLoop): 0 means DefaultPageOutIdle, a negative
	// value never.
	PageOutIdle time.Duration
}

// TracerName names the tracer of this package's spans.
const TracerName = "github.com/sessionbus/sessionbus/session/badgerstore"

// DefaultVerifyEvery is how often a running view checks its table files.
const DefaultVerifyEvery = 10 * time.Minute

// DefaultPageOutIdle is how long a view's tables stay as they are before
// it gives back the pages of its mapped files.
const DefaultPageOutIdle = 30 * time.Second

// Open opens (or creates) the view in dir. It first verifies the
// checksums of every table file, and returns an error wrapping ErrCorrupt
// (never a panic, never a view that would serve damaged records) if the
// view is damaged or was marked corrupt by an earlier run; the caller then
// moves it aside or removes it and opens a new one, which is rebuilt from
// the stream.
func Open(dir string, o Options) (*Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := badgerOptions(dir, log, o.InMemory)
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	s := &Store{log: log, notify: make(chan struct{}), corrupt: make(chan struct{}), stop: make(chan struct{}), tracer: tp.Tracer(TracerName)}
	if o.InMemory {
		opts.Dir, opts.ValueDir = "", ""
	} else {
		s.dir = dir
		comp, err := checkView(dir, opts)
		if err != nil {
			return nil, fmt.Errorf("open view %s: %w", dir, err)
		}
		s.comp = comp
	}
	db, err := openBadger(opts)
	if err != nil {
		return nil, fmt.Errorf("open view %s: %w", dir, err)
	}
	s.db = db
	if s.dir != "" {
		if err := os.WriteFile(filepath.Join(dir, markerView), []byte("sessionbus view (Badger)\n"), 0o600); err != nil {
			db.Close()
			return nil, fmt.Errorf("open view %s: %w", dir, err)
		}
	}
	err = db.View(func(txn *badger.Txn) error {
		seq, err := readSeq(txn)
		s.applied.Store(seq)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open view %s: %w", dir, corruption(err, s.dir))
	}
	if s.dir != "" {
		s.every(cmp.Or(o.VerifyEvery, DefaultVerifyEvery), s.verifyLoop)
		s.every(cmp.Or(o.PageOutIdle, DefaultPageOutIdle), s.pageOutLoop)
	}
	return s, nil
}

// every runs loop(d) until Close, unless d is negative (never).
func (s *Store) every(d time.Duration, loop func(time.Duration)) {
	if d > 0 {
		s.stopped.Add(1)
		go loop(d)
	}
}

// badgerOptions are the view's Badger settings. They bound the memory
// Badger's compactions take, which otherwise grows with the view: at a
// million facts, with Badger's defaults and Snappy, the table builders of
// its compactions held up to 600 MiB (docs/design.md, "Cost with
// history, and memory"). A builder reserves twice the size of the table
// it writes and grows by doubling; compressing, it keeps every block
// twice (as read and as compressed, reserved at the compressor's worst
// case). So:
//   - tables are not compressed: a builder holds its table once, and a
//     read takes a block in place from the mapped file, with no block
//     cache to fill (the tables take about a third more disk);
//   - every table is 1 MiB, at every level (Badger doubles the size at
//     each level below the base), and memtables are 4 MiB, so that no
//     builder's buffer, which Badger pools and hands to any builder
//     after, is larger than 8 MiB;
//   - values up to 64 KiB stay in the tables (Badger's default, 1 MiB,
//     is above what a batch of a 4 MiB memtable may hold);
//   - conflicts are not tracked: the view has one writer (Apply).
func badgerOptions(dir string, log *slog.Logger, inMemory bool) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithInMemory(inMemory).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithBaseTableSize(1 << 20).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithValueThreshold(64 << 10).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithDetectConflicts(false).
		// Blocks are checked when loaded, values in the value log when
		// read, so that damage is never parsed or served as a value.
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true)
	o.TableSizeMultiplier = 1 // no setter
	return o
}

// Close stops the periodic verification and closes the database.
func (s *Store) Close() error {
	close(s.stop)
	s.stopped.Wait()
	return s.db.Close()
}

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
// sequence are ignored, so a batch may be applied twice. Batches are
// applied one at a time: Apply is the view's only writer.
func (s *Store) Apply(batch []events.Stored) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.apply(batch)
}

func (s *Store) apply(batch []events.Stored) error {
	err := s.applyTxn(batch)
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		h := len(batch) / 2
		if err := s.apply(batch[:h]); err != nil {
			return err
		}
		return s.apply(batch[h:])
	}
	return s.check(err)
}

func (s *Store) applyTxn(batch []events.Stored) (err error) {
	last := s.applied.Load()
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	w := &writer{txn: txn}
	var spans []trace.Span
	defer func() { endSpans(spans, err) }()
	for _, st := range batch {
		if st.Seq <= last {
			continue
		}
		if span := s.span(st); span != nil {
			spans = append(spans, span)
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

// span starts the span of applying a fact that carries a trace context
// (ce-traceparent), as a child of it; a fact without one has nothing to
// continue and gets none (nil), so that replaying untraced history makes
// no spans. The span ends when the batch is committed.
func (s *Store) span(st events.Stored) trace.Span {
	sc := st.Event.Trace()
	if !sc.IsValid() {
		return nil
	}
	_, span := s.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc),
		"view apply "+string(st.Event.Type), trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("sessionbus.stream.sequence", int64(st.Seq)),
			attribute.String("messaging.message.id", st.Event.ID))
	}
	return span
}

func endSpans(spans []trace.Span, err error) {
	for _, span := range spans {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
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

// writer wraps a transaction with typed reads and writes.
type writer struct {
	txn     *badger.Txn
	skipped uint64
}

func (w *writer) get(key []byte, v any) (bool, error) {
	return getRecord(w.txn, key, v)
}

// put stores v until expires (zero: forever). A record already past its
// expiry is not written.
func (w *writer) put(key []byte, v any, expires time.Time) error {
	b, err := encodeRecord(v)
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

func getRecord(txn *badger.Txn, key []byte, v any) (bool, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, it.Value(func(b []byte) error {
		if err := decodeRecord(b, v); err != nil {
			return fmt.Errorf("%w: record %s: %w", ErrCorrupt, key, err)
		}
		return nil
	})
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

// pageOutLoop gives the pages of the view's mapped files back to the
// kernel once its tables have not changed (no memtable flushed, no
// compaction) for quiet, and again at most once every quiet while facts
// arrive or its tables change. Badger maps its files, and its flushes and
// compactions touch every page of the tables they read and write, so
// without this a manager that handled a burst keeps hundreds of
// megabytes resident at a million facts long after (docs/design.md,
// "Cost with history, and memory"). Applying a fact writes a memtable
// and reads a few blocks, so a trickle of facts does not hold the pages
// back; what the view reads again comes back from the file.
func (s *Store) pageOutLoop(quiet time.Duration) {
	defer s.stopped.Done()
	t := time.NewTicker(max(quiet/8, 10*time.Millisecond)) // given back within quiet*5/4
	defer t.Stop()
	tables, _ := s.tables()
	seq := s.applied.Load()
	changed, given := time.Now(), time.Time{}
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if now, compacting := s.tables(); !slices.Equal(now, tables) || compacting {
			tables, changed = now, time.Now()
			continue
		}
		// Something to give back: the tables changed, or facts came,
		// since the last time.
		busy := given.Before(changed) || s.applied.Load() != seq
		if !busy || time.Since(changed) < quiet || time.Since(given) < quiet {
			continue
		}
		seq, given = s.applied.Load(), time.Now()
		n, err := pageOut(s.dir)
		if errors.Is(err, errors.ErrUnsupported) {
			s.log.Debug("view pages are not given back on this system", "err", err)
			return
		}
		if err != nil {
			s.log.Warn("view pages not given back", "err", err)
			continue
		}
		s.log.Debug("view pages given back", "mapped_bytes", n)
	}
}

// tables describes the view's tables level by level (count and size), to
// tell when a flush or a compaction changed them, and whether Badger has
// compactions to do (as Compacting).
func (s *Store) tables() (sig []int64, compacting bool) {
	for _, l := range s.db.Levels() {
		sig = append(sig, int64(l.NumTables), l.Size)
		compacting = compacting || l.Score >= 1
	}
	return sig, compacting
}
