// Package fakeclock is a clock for tests that moves only when told, so
// that a test of a rate limit, an expiry or a backoff moves time instead
// of sleeping through it.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a fake clock, safe for concurrent use. Pass its Now where a
// component takes a `func() time.Time`.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a Clock that reads start until moved.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
