package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// Sessions lists a user's sessions that have not reached their absolute
// expiry, newest first. No secrets.
func (m *Manager) Sessions(ctx context.Context, userID string) ([]events.SessionInfo, error) {
	if !events.ValidID(userID) {
		return nil, fmt.Errorf("%w: bad user id", ErrInvalidInput)
	}
	if err := m.notReady(); err != nil {
		return nil, err
	}
	ss, err := m.d.View.UserSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	u, err := m.d.View.User(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	now := m.now()
	out := make([]events.SessionInfo, 0, len(ss))
	for i := len(ss) - 1; i >= 0; i-- { // ids are ULIDs: reverse is newest first
		out = append(out, ss[i].Info(now, u.RevokedBefore))
	}
	return out, nil
}

// Sweep ends, with a session.revoked fact, the sessions whose idle or
// absolute timeout has passed. It returns how many it ended. Several
// managers may sweep at once: the conditional write lets one win.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	due, err := m.d.View.DueSessions(ctx, m.now(), 256)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, s := range due {
		if reason := s.expiryReason(m.now()); reason != "" {
			if err := m.revokeSession(ctx, s, reason, events.System); err != nil {
				errs = append(errs, fmt.Errorf("session %s: %w", s.ID, err))
				continue // one stuck session must not hold up the others
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// RunSweeper sweeps every SweepInterval until ctx ends.
func (m *Manager) RunSweeper(ctx context.Context) error {
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := m.Sweep(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				m.log.Warn("sweep failed", "err", err)
			} else if n > 0 {
				m.log.Info("ended timed-out sessions", "count", n)
			}
		}
	}
}
