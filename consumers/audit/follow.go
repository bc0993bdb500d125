package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/backoff"
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
	defer func() { _ = lock.Unlock() }()
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
	b := backoff.New(100*time.Millisecond, 5*time.Second)
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
			b.Reset()
			continue
		case errors.Is(err, ErrFileAhead), errors.Is(err, errWrite):
			return err
		}
		d := b.Next()
		log.Warn("follow interrupted; retrying", "err", err, "in", d)
		if b.Sleep(ctx, d) != nil {
			return nil
		}
	}
	return nil
}

// errWrite marks a failure to write the file: fatal.
var errWrite = errors.New("audit file")
