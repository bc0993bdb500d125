package httpauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/backoff"
)

// Run keeps the key set current until ctx ends, then returns nil: it
// fetches it at once (retrying until it succeeds), again every
// RefreshInterval, and at each key.rotated or key.revoked fact on Watch;
// after a rotation it keeps refreshing (every MinRefreshInterval, up to
// five times) until the new kid is in the set. It returns an error when
// the subscription cannot be made.
func (k *KeySet) Run(ctx context.Context) error {
	if !k.running.CompareAndSwap(false, true) {
		return errors.New("httpauth: key set already running")
	}
	defer k.running.Store(false)
	trigger := make(chan string, 1)
	if k.cfg.Watch != nil {
		sub, err := k.cfg.Watch.Subscribe(events.SubjectPrefix+"key.>", func(m *nats.Msg) {
			_, action, kid, _ := events.ParseSubject(m.Subject)
			if action != "rotated" {
				kid = ""
			}
			select {
			case trigger <- kid:
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("httpauth: watch key facts: %w", err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	periodic := time.NewTicker(k.cfg.RefreshInterval)
	defer periodic.Stop()
	retry := time.NewTimer(0) // the first fetch
	defer retry.Stop()
	var (
		waitFor string // kid of a rotation not yet in the set
		tries   int
		b       = backoff.New(100*time.Millisecond, k.cfg.MinRefreshInterval)
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case kid := <-trigger:
			if kid != "" {
				waitFor, tries = kid, 0
			}
		case <-periodic.C:
		case <-retry.C:
		}
		err := k.refresh(ctx, true)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			d := b.Next()
			k.log.Warn("key set refresh failed", "err", err, "retry_in", d)
			retry.Reset(d)
			continue
		case waitFor != "" && !k.has(waitFor) && tries < 5:
			tries++
			retry.Reset(k.cfg.MinRefreshInterval)
		default:
			waitFor = ""
		}
		b.Reset()
	}
}
