package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
)

// ReplayConfig configures a replay.
type ReplayConfig struct {
	// Filter selects the events; the zero Filter copies the whole stream
	// from sequence 1.
	Filter Filter
	// Out is the file to create; it must not exist. With MaxFileSize set,
	// later parts are Out.000001, Out.000002… (PartPath).
	Out string
	// Writer receives the lines instead of a file (standard output):
	// buffered, never rotated nor synced. Exactly one of Out and Writer.
	Writer io.Writer
	// MaxFileSize starts a new part before a line when the current part
	// has reached this many bytes; 0 never rotates.
	MaxFileSize int64
	// Stream is the stream to copy (default events.StreamName).
	Stream string
}

// Validate reports every problem with c, each wrapping ErrInvalidConfig.
func (c ReplayConfig) Validate() error {
	var errs []error
	if (c.Out == "") == (c.Writer == nil) {
		errs = append(errs, fmt.Errorf("%w: exactly one of Out and Writer is required", ErrInvalidConfig))
	}
	if c.MaxFileSize < 0 {
		errs = append(errs, fmt.Errorf("%w: negative MaxFileSize", ErrInvalidConfig))
	}
	if c.MaxFileSize > 0 && c.Writer != nil {
		errs = append(errs, fmt.Errorf("%w: MaxFileSize needs a file (Out)", ErrInvalidConfig))
	}
	if !c.Filter.Until.IsZero() && c.Filter.Until.Before(c.Filter.Since) {
		errs = append(errs, fmt.Errorf("%w: until is before since", ErrInvalidConfig))
	}
	if s := c.Filter.Subject; s != "" && s != events.SubjectAll && !strings.HasPrefix(s, events.SubjectPrefix) {
		errs = append(errs, fmt.Errorf("%w: subject filter %q is not within %s", ErrInvalidConfig, s, events.SubjectAll))
	}
	return errors.Join(errs...)
}

// Stats summarises what a replay or a follow wrote.
type Stats struct {
	Lines, Unreadable, Foreign, Gaps int64
	// MsgIDMismatch counts, among the Unreadable, the messages whose
	// Nats-Msg-Id is not their ce-id (events.ErrMsgIDMismatch): not
	// copied as facts, since their publisher is not the one the ce-id
	// names; Verify flags their lines.
	MsgIDMismatch int64
	// LastSeq and LastHash are the last line's streamseq and chainhash.
	LastSeq  uint64
	LastHash string
	// Part is the index of the last file written.
	Part uint64
}

func (s *Stats) count(k kind) {
	s.Lines++
	switch k {
	case kindUnreadable:
		s.Unreadable++
	case kindMsgIDMismatch:
		s.Unreadable++
		s.MsgIDMismatch++
	case kindForeign:
		s.Foreign++
	case kindGap:
		s.Gaps++
	}
}

// Replayer copies the stream, or the part a Filter selects, into an audit
// file.
type Replayer struct {
	js   jetstream.JetStream
	cfg  ReplayConfig
	opts options
	m    *metrics
}

// NewReplayer returns a Replayer reading through js. It returns
// ErrInvalidConfig for a bad cfg.
func NewReplayer(js jetstream.JetStream, cfg ReplayConfig, opts ...Option) (*Replayer, error) {
	if cfg.Stream == "" {
		cfg.Stream = events.StreamName
	}
	cfg.Filter = cfg.Filter.normalized()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.reg, "replay")
	if err != nil {
		return nil, fmt.Errorf("audit: metrics: %w", err)
	}
	return &Replayer{js: js, cfg: cfg, opts: o, m: m}, nil
}

// record is one encoded line body in a batch.
type record struct {
	end int // end of the body in batch.buf
	seq uint64
	k   kind
}

// batch carries encoded bodies from a reader to the writer.
type batch struct {
	buf  []byte
	recs []record
	// stop: the reader stopped at Until (no trailing gap line).
	untilStop bool
}

const batchLen = 512

var batchPool = sync.Pool{New: func() any {
	return &batch{buf: make([]byte, 0, batchLen*1024), recs: make([]record, 0, batchLen)}
}}

// Run copies the events and returns what it wrote. The copy covers the
// stream up to its last sequence (or last one matching the subject
// filter) when Run starts. It returns ErrExists when Out exists, and
// ctx's error when ctx ends first (the lines written by then are a valid,
// verifiable prefix).
func (r *Replayer) Run(ctx context.Context) (Stats, error) {
	f := r.cfg.Filter
	stream, err := r.js.Stream(ctx, r.cfg.Stream)
	if err != nil {
		return Stats{}, fmt.Errorf("replay: stream %s: %w", r.cfg.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("replay: stream info: %w", err)
	}
	endSeq := info.State.LastSeq
	if f.Subject != "" {
		m, err := stream.GetLastMsgForSubject(ctx, f.Subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			endSeq = 0
		case err != nil:
			return Stats{}, fmt.Errorf("replay: last message on %s: %w", f.Subject, err)
		default:
			endSeq = m.Sequence
		}
	}

	var out sink
	if r.cfg.Writer != nil {
		out = newWriterSink(r.cfg.Writer)
	} else {
		file, err := createPart(r.cfg.Out, 0)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return Stats{}, fmt.Errorf("%w: %s", ErrExists, r.cfg.Out)
			}
			return Stats{}, fmt.Errorf("replay: %w", err)
		}
		out = newFileSink(r.cfg.Out, file, 0)
	}
	var stats Stats
	w := &chainWriter{
		st:      newChainState(f.String()),
		stream:  r.cfg.Stream,
		maxSize: r.cfg.MaxFileSize,
		out:     out,
		onRot:   r.m.rotations.Inc,
	}
	err = r.copy(ctx, stream, w, &stats, info.State.FirstSeq, endSeq)
	if cerr := out.close(); err == nil {
		err = cerr
	}
	stats.LastSeq, stats.LastHash, stats.Part = w.st.lastSeq, w.st.prevHash(), w.st.part
	if w.st.lastSeq == 0 {
		stats.LastHash = ""
	}
	r.m.lastSeq.Set(float64(w.st.lastSeq))
	return stats, err
}

func (r *Replayer) copy(ctx context.Context, stream jetstream.Stream, w *chainWriter, stats *Stats, streamFirst, endSeq uint64) error {
	f := r.cfg.Filter
	start := time.Now()
	firstSeq := max(f.FromSeq, streamFirst)
	prog := Progress{FirstSeq: firstSeq, EndSeq: endSeq}
	report := func(done bool) {
		if r.opts.progress == nil {
			return
		}
		prog.Lines, prog.Seq, prog.Elapsed, prog.Done = stats.Lines, w.st.lastSeq, time.Since(start), done
		r.opts.progress(prog)
	}
	var gapBuf []byte
	writeGap := func(first, last uint64) error {
		gapBuf = appendGap(gapBuf[:0], r.cfg.Stream, first, last)
		if err := w.writeBody(gapBuf, last); err != nil {
			return err
		}
		stats.count(kindGap)
		r.m.count(kindGap)
		return nil
	}
	// next is the sequence the next line must start at, in a contiguous
	// copy; 0 until known (a copy that starts at a time).
	var next uint64
	if f.FromSeq > 0 {
		next = f.FromSeq
		if !f.Contiguous() && f.FromSeq < streamFirst && f.FromSeq <= endSeq {
			// A filtered copy cannot show holes by its sequences: say
			// once that its start was gone from the stream.
			if err := writeGap(f.FromSeq, streamFirst-1); err != nil {
				return err
			}
		}
	}
	untilStop := false
	if endSeq > 0 && (f.FromSeq == 0 || f.FromSeq <= endSeq) {
		batches := make(chan *batch, 4)
		rctx, cancel := context.WithCancel(ctx)
		var rerr error
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(batches)
			rerr = r.read(rctx, stream, endSeq, batches)
		})
		var werr error
		lastReport := time.Now()
		for b := range batches {
			if werr != nil {
				batchPool.Put(b)
				continue // drain until the reader stops
			}
			untilStop = untilStop || b.untilStop
			from := 0
			for _, rec := range b.recs {
				if f.Contiguous() {
					if next != 0 && rec.seq > next {
						if werr = writeGap(next, rec.seq-1); werr != nil {
							break
						}
					}
					next = rec.seq + 1
				}
				if werr = w.writeBody(b.buf[from:rec.end], rec.seq); werr != nil {
					break
				}
				from = rec.end
				stats.count(rec.k)
				r.m.count(rec.k)
			}
			batchPool.Put(b)
			if werr != nil {
				cancel()
				continue
			}
			if r.opts.progress != nil && time.Since(lastReport) >= 100*time.Millisecond {
				lastReport = time.Now()
				report(false)
			}
		}
		cancel()
		wg.Wait()
		if werr != nil {
			return fmt.Errorf("replay: %w", werr)
		}
		if rerr != nil {
			return fmt.Errorf("replay: %w", rerr)
		}
	}
	if f.Contiguous() && !untilStop && next != 0 && next <= endSeq {
		// The stream's last messages are gone (aged out): say so rather
		// than end early without a trace.
		if err := writeGap(next, endSeq); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
	}
	report(true)
	return nil
}

// idleCheck is how long the reader waits for a message before it checks
// whether the rest of its range is still on the stream.
const idleCheck = 2 * time.Second

// read streams the encoded lines of the range up to endSeq into out, in
// order, with an ordered consumer (which recreates itself rather than let
// a message be skipped).
func (r *Replayer) read(ctx context.Context, stream jetstream.Stream, endSeq uint64, out chan<- *batch) error {
	f := r.cfg.Filter
	cc := jetstream.OrderedConsumerConfig{InactiveThreshold: time.Minute, NamePrefix: jsbus.UnguessableName()}
	if f.Subject != "" {
		cc.FilterSubjects = []string{f.Subject}
	}
	if f.FromSeq > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.FromSeq
	} else {
		since := f.Since
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := stream.OrderedConsumer(ctx, cc)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	enc := newBodyEncoder(r.cfg.Stream)
	b := batchPool.Get().(*batch)
	b.buf, b.recs, b.untilStop = b.buf[:0], b.recs[:0], false
	send := func() bool {
		select {
		case out <- b:
		case <-ctx.Done():
			batchPool.Put(b)
			return false
		}
		b = batchPool.Get().(*batch)
		b.buf, b.recs, b.untilStop = b.buf[:0], b.recs[:0], false
		return true
	}
	nextSeq := max(f.FromSeq, 1)
	var st stored
	for {
		m, err := it.Next(jetstream.NextMaxWait(idleCheck))
		if errors.Is(err, nats.ErrTimeout) {
			more, cerr := r.more(ctx, stream, nextSeq, endSeq)
			if cerr != nil {
				return cerr
			}
			if !more {
				break
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > endSeq {
			break
		}
		nextSeq = seq + 1
		if !f.Until.IsZero() && meta.Timestamp.After(f.Until) {
			b.untilStop = true
			break
		}
		if f.Since.IsZero() || !meta.Timestamp.Before(f.Since) {
			st = stored{Seq: seq, Time: meta.Timestamp, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
			n := len(b.buf)
			var k kind
			var typ string
			b.buf, k, typ = enc.appendBody(b.buf, &st)
			if f.keepsType(typ) {
				b.recs = append(b.recs, record{end: len(b.buf), seq: seq, k: k})
			} else {
				b.buf = b.buf[:n]
			}
		}
		if seq == endSeq || meta.NumPending == 0 {
			break
		}
		if len(b.recs) >= batchLen && !send() {
			return ctx.Err()
		}
	}
	if len(b.recs) > 0 || b.untilStop {
		if !send() {
			return ctx.Err()
		}
	}
	batchPool.Put(b)
	return nil
}

// more reports whether the stream still holds a message of the range
// from next to endSeq (the rest may have aged out while we read).
func (r *Replayer) more(ctx context.Context, stream jetstream.Stream, next, endSeq uint64) (bool, error) {
	subject := r.cfg.Filter.Subject
	if subject == "" {
		subject = ">"
	}
	m, err := stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check stream: %w", err)
	}
	return m.Sequence <= endSeq, nil
}
