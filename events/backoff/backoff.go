package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out the delays between the attempts of one operation. It
// is not safe for concurrent use: each retry loop owns one.
type Backoff struct {
	// Initial is the nominal first delay; Max caps the nominal delay.
	Initial, Max time.Duration
	// After waits for a delay, like time.After (the default). Tests pass
	// a fake clock's After to move time themselves.
	After func(time.Duration) <-chan time.Time

	n int // failures since the last Reset
}

// New returns a Backoff from initial doubling up to max (max is raised
// to initial if lower).
func New(initial, max time.Duration) *Backoff {
	return &Backoff{Initial: initial, Max: max}
}

// Nominal returns the delay before jitter after n consecutive failures
// (n ≥ 1): Initial·2^(n-1), at most Max.
func (b *Backoff) Nominal(n int) time.Duration {
	d, ceil := max(b.Initial, 0), max(b.Max, b.Initial)
	for i := 1; i < n && d < ceil; i++ {
		if d > ceil/2 {
			return ceil
		}
		d *= 2
	}
	return min(d, ceil)
}

// Next counts a failure and returns the delay to wait before the next
// attempt: drawn uniformly from [Nominal/2, Nominal].
func (b *Backoff) Next() time.Duration {
	b.n++
	d := b.Nominal(b.n)
	if half := d / 2; half > 0 {
		return half + rand.N(d-half+1)
	}
	return d
}

// Failures returns the failures counted since the last Reset.
func (b *Backoff) Failures() int { return b.n }

// Reset starts again from Initial, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Wait counts a failure and waits the Next delay, or until ctx ends, in
// which case it returns ctx's error.
func (b *Backoff) Wait(ctx context.Context) error {
	return b.Sleep(ctx, b.Next())
}

// Sleep waits d on b's clock, or until ctx ends, in which case it returns
// ctx's error. Loops that log the delay take it from Next and Sleep it.
func (b *Backoff) Sleep(ctx context.Context, d time.Duration) error {
	after := b.After
	if after == nil {
		after = time.After
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-after(d):
		return nil
	}
}
