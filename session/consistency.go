package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// barrier shares the read of the stream's last sequence between requests:
// a request may use a read that started after it arrived, never one that
// started before (that read might miss a write acknowledged in between).
// So at most one read is in flight, however many unknown tokens arrive.
type barrier struct {
	mu  sync.Mutex
	cur *barrierRead
}

type barrierRead struct {
	started time.Time
	done    chan struct{}
	seq     uint64
	err     error
}

func (b *barrier) lastSeq(ctx context.Context, read func(context.Context) (uint64, error)) (uint64, error) {
	arrived := time.Now()
	for {
		b.mu.Lock()
		r := b.cur
		if r == nil {
			r = &barrierRead{started: time.Now(), done: make(chan struct{})}
			b.cur = r
			b.mu.Unlock()
			r.seq, r.err = read(ctx)
			b.mu.Lock()
			b.cur = nil
			b.mu.Unlock()
			close(r.done)
			return r.seq, r.err
		}
		b.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if !r.started.Before(arrived) {
			return r.seq, r.err
		}
	}
}

// settle waits until the view has applied seq, so that the caller's next
// request sees it. The fact is already durable: a timeout here is logged,
// not returned.
func (m *Manager) settle(ctx context.Context, seq uint64) {
	if err := m.d.View.WaitApplied(ctx, seq); err != nil {
		m.log.Warn("view lags behind the stream", "seq", seq, "err", err)
	}
}

// caughtUp makes the view apply everything the stream acknowledged before
// now. A manager calls it before answering "unknown" for a token or id
// that another manager may have just created.
func (m *Manager) caughtUp(ctx context.Context) error {
	seq, err := m.barrier.lastSeq(ctx, m.d.Publisher.LastSeq)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	if err := m.d.View.WaitApplied(ctx, seq); err != nil {
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	return nil
}

// sessionByDigest is View.SessionByDigest with a read barrier on a miss.
func (m *Manager) sessionByDigest(ctx context.Context, digest string) (Session, uint64, error) {
	s, gen, err := m.d.View.SessionByDigest(ctx, digest)
	if !errors.Is(err, ErrNotFound) {
		return s, gen, err
	}
	if err := m.caughtUp(ctx); err != nil {
		return Session{}, 0, err
	}
	return m.d.View.SessionByDigest(ctx, digest)
}

// session is View.Session with a read barrier on a miss.
func (m *Manager) session(ctx context.Context, id string) (Session, error) {
	s, err := m.d.View.Session(ctx, id)
	if !errors.Is(err, ErrNotFound) {
		return s, err
	}
	if err := m.caughtUp(ctx); err != nil {
		return Session{}, err
	}
	return m.d.View.Session(ctx, id)
}

// token is View.Token with a read barrier on a miss.
func (m *Manager) token(ctx context.Context, jti string) (TokenInfo, error) {
	t, err := m.d.View.Token(ctx, jti)
	if !errors.Is(err, ErrNotFound) {
		return t, err
	}
	if err := m.caughtUp(ctx); err != nil {
		return TokenInfo{}, err
	}
	return m.d.View.Token(ctx, jti)
}

// conflictRetries bounds how often one request re-decides after losing a
// conditional write.
const conflictRetries = 8

// reread waits for the view to catch up with the write that beat us.
func (m *Manager) reread(ctx context.Context, err error) error {
	var ce *events.ConflictError
	if errors.As(err, &ce) {
		if werr := m.d.View.WaitApplied(ctx, ce.LastSeq); werr != nil {
			return fmt.Errorf("%w: %w", ErrOverloaded, werr)
		}
	}
	return nil
}
