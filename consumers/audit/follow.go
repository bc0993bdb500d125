package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
)

// FollowConfig configures a Follower.
type FollowConfig struct {
	// Durable is the name of the JetStream durable consumer. Required.
	Durable string
	// Out is the audit file to extend (created when missing), or, with
	// rotation, the first part of the chain. Required.
	Out string
	// MaxFileSize starts a new part before a line when the current part
	// has reached this many bytes; 0 never rotates. A replay with the
	// same MaxFileSize cuts the same parts.
	MaxFileSize int64
	// Stream is the stream to follow (default events.StreamName).
	Stream string
	// AckWait is how long the server waits for an ack before it
	// redelivers (default 30s).
	AckWait time.Duration
	// Batch is the most lines written between two fsyncs (default 256).
	Batch int
	// IdleCheck is how often, when no message comes, follow checks that
	// the server has not delivered a message it never received (default
	// 5s).
	IdleCheck time.Duration
}

// Validate reports every problem with c, each wrapping ErrInvalidConfig.
func (c FollowConfig) Validate() error {
	var errs []error
	if c.Durable == "" {
		errs = append(errs, fmt.Errorf("%w: Durable is required", ErrInvalidConfig))
	}
	if c.Out == "" {
		errs = append(errs, fmt.Errorf("%w: Out is required", ErrInvalidConfig))
	}
	if c.MaxFileSize < 0 {
		errs = append(errs, fmt.Errorf("%w: negative MaxFileSize", ErrInvalidConfig))
	}
	if c.AckWait < 0 || c.Batch < 0 || c.IdleCheck < 0 {
		errs = append(errs, fmt.Errorf("%w: negative AckWait, Batch or IdleCheck", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

func (c FollowConfig) withDefaults() FollowConfig {
	if c.Stream == "" {
		c.Stream = events.StreamName
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Batch == 0 {
		c.Batch = 256
	}
	if c.IdleCheck == 0 {
		c.IdleCheck = 5 * time.Second
	}
	return c
}

// Follower appends every new event of the stream to an audit file, through
// a durable consumer, acknowledging each message only once its line is on
// disk.
type Follower struct {
	js   jetstream.JetStream
	cfg  FollowConfig
	opts options
	m    *metrics

	mu    sync.Mutex
	stats Stats
}

// NewFollower returns a Follower reading through js. It returns
// ErrInvalidConfig for a bad cfg.
func NewFollower(js jetstream.JetStream, cfg FollowConfig, opts ...Option) (*Follower, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.reg, "follow")
	if err != nil {
		return nil, fmt.Errorf("audit: metrics: %w", err)
	}
	return &Follower{js: js, cfg: cfg, opts: o, m: m}, nil
}

// Stats returns what this Follower has written so far (LastSeq and
// LastHash include the lines found in the file on start).
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// errReposition asks Run to position the consumer again after the file's
// last line.
var errReposition = errors.New("reposition consumer")

// Run follows until ctx ends, then syncs the file and returns nil. On
// start it removes an incomplete last line (a crash in the middle of a
// write) and positions the durable consumer just after the file's last
// line. NATS failures are retried; it returns an error for what retrying
// cannot fix: ErrNotAuditFile, ErrNotFollowable, ErrFileAhead, ErrLocked
// (another follow writes the file), or a file that cannot be written.
func (f *Follower) Run(ctx context.Context) error {
	log := f.opts.logger.With("durable", f.cfg.Durable, "out", f.cfg.Out)
	lock, err := lockChain(f.cfg.Out)
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	defer lock.Close()
	st, file, size, repaired, err := openChain(f.cfg.Out, f.cfg.Stream)
	if err != nil {
		return err
	}
	if repaired > 0 {
		f.m.repairs.Inc()
		log.Warn("removed an incomplete last line left by a crash", "bytes", repaired, "part", st.part)
	}
	out := newFileSink(f.cfg.Out, file, size)
	w := &chainWriter{
		st: st, stream: f.cfg.Stream, maxSize: f.cfg.MaxFileSize, out: out,
		onRot: f.m.rotations.Inc,
	}
	f.setStats(func(s *Stats) { s.LastSeq, s.LastHash, s.Part = st.lastSeq, st.prevHash(), st.part })
	log.Info("follow starts", "after_seq", st.lastSeq, "part", st.part)
	err = f.loop(ctx, w, log)
	if cerr := out.close(); err == nil {
		err = cerr
	}
	return err
}

func (f *Follower) setStats(fn func(*Stats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

func (f *Follower) loop(ctx context.Context, w *chainWriter, log interface {
	Warn(string, ...any)
	Info(string, ...any)
}) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, cons, err := f.position(ctx, w.st.lastSeq)
		if err == nil {
			err = f.consume(ctx, stream, cons, w)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errReposition):
			f.m.resets.Inc()
			log.Info("repositioning the consumer after the file's last line", "after_seq", w.st.lastSeq)
			backoff = 100 * time.Millisecond
			continue
		case errors.Is(err, ErrFileAhead), errors.Is(err, errWrite):
			return err
		}
		log.Warn("follow interrupted; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

// errWrite marks a failure to write the file: fatal.
var errWrite = errors.New("audit file")

// position returns the durable consumer, delivering from lastSeq+1. It
// keeps the existing durable when its state already says exactly that,
// and otherwise recreates it there: the file, not the server, knows what
// is on disk (a crash between fsync and ack leaves acks missing; a
// crash before fsync leaves deliveries the file never got).
func (f *Follower) position(ctx context.Context, lastSeq uint64) (jetstream.Stream, jetstream.Consumer, error) {
	stream, err := f.js.Stream(ctx, f.cfg.Stream)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", f.cfg.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("stream info: %w", err)
	}
	if info.State.LastSeq < lastSeq {
		return nil, nil, fmt.Errorf("%w: the file ends at sequence %d, the stream %s at %d", ErrFileAhead, lastSeq, f.cfg.Stream, info.State.LastSeq)
	}
	cons, err := stream.Consumer(ctx, f.cfg.Durable)
	switch {
	case err == nil:
		ci := cons.CachedInfo()
		if ci.Config.AckPolicy == jetstream.AckExplicitPolicy && ci.Config.FilterSubject == "" &&
			len(ci.Config.FilterSubjects) == 0 && ci.Config.AckWait == f.cfg.AckWait &&
			ci.Delivered.Stream == lastSeq && ci.AckFloor.Stream == lastSeq && ci.NumAckPending == 0 {
			return stream, cons, nil
		}
		if err := stream.DeleteConsumer(ctx, f.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, nil, fmt.Errorf("delete consumer %s: %w", f.cfg.Durable, err)
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, nil, fmt.Errorf("consumer %s: %w", f.cfg.Durable, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       f.cfg.Durable,
		Description:   "sessionbus audit follow into " + f.cfg.Out,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       f.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * f.cfg.Batch,
	}
	if lastSeq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, lastSeq+1
	}
	cons, err = stream.CreateConsumer(ctx, cc)
	if err != nil {
		return nil, nil, fmt.Errorf("create consumer %s: %w", f.cfg.Durable, err)
	}
	return stream, cons, nil
}

// consume writes what cons delivers until ctx ends (nil), the consumer
// must be repositioned (errReposition), or an error.
func (f *Follower) consume(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer, w *chainWriter) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(f.cfg.Batch))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	enc := newEncoder(f.cfg.Stream)
	var body []byte
	var pending []jetstream.Msg // on the file, not yet synced nor acked
	var stats Stats
	lastAck := time.Now()
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := w.out.sync(); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		for _, m := range pending {
			_ = m.Ack() // a lost ack means a redelivery, skipped as a duplicate
		}
		pending = pending[:0]
		lastAck = time.Now()
		f.setStats(func(s *Stats) {
			s.Lines += stats.Lines
			s.Unreadable += stats.Unreadable
			s.Foreign += stats.Foreign
			s.Gaps += stats.Gaps
			s.LastSeq, s.LastHash, s.Part = w.st.lastSeq, w.st.prevHash(), w.st.part
		})
		stats = Stats{}
		f.m.lastSeq.Set(float64(w.st.lastSeq))
		return nil
	}
	write := func(b []byte, seq uint64, k kind) error {
		if err := w.writeBody(b, seq); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		stats.count(k)
		f.m.count(k)
		return nil
	}
	defer func() { _ = flush() }()
	for {
		wait := f.cfg.IdleCheck
		if len(pending) > 0 {
			wait = 2 * time.Millisecond
		}
		m, err := it.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			if len(pending) > 0 {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			if time.Since(lastAck) >= f.cfg.IdleCheck {
				// A message delivered while the connection was down is
				// neither here nor redelivered before AckWait: go get it.
				if ci, err := cons.Info(ctx); err == nil && ci.Delivered.Stream > w.st.lastSeq {
					return errReposition
				}
				lastAck = time.Now()
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		switch {
		case seq <= w.st.lastSeq:
			f.m.duplicates.Inc()
			pending = append(pending, m) // acked once what it duplicates is synced
			continue
		case seq > w.st.lastSeq+1:
			if err := flush(); err != nil {
				return err
			}
			nm, err := stream.GetMsg(ctx, w.st.lastSeq+1, jetstream.WithGetMsgSubject(">"))
			if err != nil {
				return fmt.Errorf("look for sequence %d: %w", w.st.lastSeq+1, err)
			}
			if nm.Sequence == w.st.lastSeq+1 || nm.Sequence > seq {
				return errReposition // a delivery was lost in transit
			}
			body = appendGap(body[:0], f.cfg.Stream, w.st.lastSeq+1, nm.Sequence-1)
			if err := write(body, nm.Sequence-1, kindGap); err != nil {
				return err
			}
			if nm.Sequence != seq {
				if err := flush(); err != nil {
					return err
				}
				return errReposition
			}
		}
		st := stored{Seq: seq, Time: meta.Timestamp, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
		var k kind
		body, k, _ = enc.appendBody(body[:0], &st)
		if err := write(body, seq, k); err != nil {
			return err
		}
		pending = append(pending, m)
		if len(pending) >= f.cfg.Batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// lockChain creates the first part of the chain at base if it is missing
// and locks it (see lockFile).
func lockChain(base string) (*os.File, error) {
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		f, err := createPart(base, 0)
		if err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if f != nil {
			f.Close()
		}
	}
	return lockFile(base)
}

// openChain opens the last part of the chain at base for appending. It
// removes an incomplete last line (returning its length) and returns the
// chain's state after the last complete line; a missing base starts a new
// chain.
func openChain(base, stream string) (chainState, *os.File, int64, int64, error) {
	var n uint64
	if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
		file, err := createPart(base, 0)
		if err != nil {
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
		}
		return newChainState(Filter{}.String()), file, 0, 0, nil
	} else if err != nil {
		return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
	}
	for {
		if _, err := os.Stat(PartPath(base, n+1)); err != nil {
			break
		}
		n++
	}
	path := PartPath(base, n)
	file, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
	}
	size, repaired, last, err := repairTail(file)
	if err != nil {
		file.Close()
		return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w", path, err)
	}
	st := newChainState(Filter{}.String())
	st.part = n
	headPath := path
	if last == nil && n > 0 {
		// An empty part after a rotation: the chain goes on from the
		// previous part's last line.
		headPath = PartPath(base, n-1)
		prev, err := os.Open(headPath)
		if err != nil {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %w", err)
		}
		fi, err := prev.Stat()
		if err == nil {
			last, err = lastLine(prev, fi.Size())
		}
		prev.Close()
		if err != nil || last == nil {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: no complete last line before the empty part %s", headPath, ErrNotAuditFile, path)
		}
	}
	if last != nil {
		l, err := ParseLine(last)
		if err != nil || !l.HashOK() {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: its last line is not an intact audit line (run verify)", path, ErrNotAuditFile)
		}
		head, err := firstHead(headPath)
		if err != nil {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w", headPath, err)
		}
		wantPart := n
		if headPath != path {
			wantPart = n - 1
		}
		if head.Part != wantPart {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: its %s is %d, want %d", headPath, ErrNotAuditFile, AttrPart, head.Part, wantPart)
		}
		if head.Stream != stream || !head.Filter.Contiguous() || !head.Filter.Until.IsZero() {
			file.Close()
			return chainState{}, nil, 0, 0, fmt.Errorf("follow: %s: %w: it copies stream %s with filter %q", headPath, ErrNotFollowable, head.Stream, head.RawFilter)
		}
		st.setPrev(l.ChainHash)
		st.lastSeq, st.filter = l.Seq, head.RawFilter
		if size > 0 {
			st.partLines = 1 // not empty: no head on the next line
		}
	}
	return st, file, size, repaired, nil
}

// repairTail truncates what follows the last newline of f and fsyncs;
// it returns the new size, the bytes removed and the last complete line
// (nil when none).
func repairTail(f *os.File) (size, removed int64, last []byte, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	size = fi.Size()
	end, err := lastNewline(f, size)
	if err != nil {
		return 0, 0, nil, err
	}
	if end < size {
		if err := f.Truncate(end); err != nil {
			return 0, 0, nil, fmt.Errorf("truncate: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, nil, fmt.Errorf("sync: %w", err)
		}
		removed, size = size-end, end
	}
	last, err = lastLine(f, size)
	return size, removed, last, err
}

// lastNewline returns the offset just after the last newline in the first
// size bytes of f (0 when there is none).
func lastNewline(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// lastLine returns the last line of the first size bytes of f, which end
// with a newline, without it; nil when size is 0.
func lastLine(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	start, err := lastNewline(f, size-1)
	if err != nil {
		return nil, err
	}
	if size-start > maxLine {
		return nil, fmt.Errorf("last line longer than %d bytes", maxLine)
	}
	b := make([]byte, size-start)
	if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, errors.New("file does not end with a newline")
	}
	return b[:len(b)-1], nil
}

// firstHead reads the head of the file at path from its first line.
func firstHead(path string) (*Head, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line, complete, err := newLineReader(f).next()
	if err != nil || !complete {
		return nil, fmt.Errorf("%w: no complete first line", ErrNotAuditFile)
	}
	l, err := ParseLine(line)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAuditFile, err)
	}
	if l.Head == nil {
		return nil, fmt.Errorf("%w: its first line has no %s attribute", ErrNotAuditFile, AttrFormat)
	}
	return l.Head, nil
}
