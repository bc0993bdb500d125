package audit

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Replayer or a Follower.
type Option func(*options) error

type options struct {
	logger   *slog.Logger
	reg      prometheus.Registerer
	progress func(Progress)
}

func buildOptions(opts []Option) (options, error) {
	o := options{}
	for _, fn := range opts {
		if err := fn(&o); err != nil {
			return o, err
		}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// WithLogger sends logs to l (default: discarded).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("audit: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithRegisterer registers the metrics on r (default: not registered).
// Registering twice on the same r reuses the first collectors.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) error {
		if r == nil {
			return errors.New("audit: nil registerer")
		}
		o.reg = r
		return nil
	}
}

// WithProgress calls fn about ten times a second while a replay runs, and
// once at its end, from the replay's own goroutine: fn must be quick.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) error {
		if fn == nil {
			return errors.New("audit: nil progress func")
		}
		o.progress = fn
		return nil
	}
}

// Progress is how far a replay has got.
type Progress struct {
	// Lines written so far.
	Lines int64
	// Seq is the last stream sequence written; FirstSeq and EndSeq bound
	// the range being copied (EndSeq is the stream's last sequence, or
	// its last one matching the subject filter, when the replay started).
	Seq, FirstSeq, EndSeq uint64
	Elapsed               time.Duration
	Done                  bool
}

// Fraction is the part of the sequence range done, from 0 to 1.
func (p Progress) Fraction() float64 {
	if p.Done || p.EndSeq < p.FirstSeq {
		return 1
	}
	if p.Seq < p.FirstSeq {
		return 0
	}
	return float64(p.Seq-p.FirstSeq+1) / float64(p.EndSeq-p.FirstSeq+1)
}

// ETA estimates the time left from the rate so far (0 when unknown).
func (p Progress) ETA() time.Duration {
	f := p.Fraction()
	if f <= 0 || f >= 1 {
		return 0
	}
	return time.Duration(float64(p.Elapsed) * (1 - f) / f)
}

// Rate is the lines written per second so far.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Lines) / p.Elapsed.Seconds()
}
