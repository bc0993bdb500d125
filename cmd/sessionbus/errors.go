package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// What a command's credential must be, for the sentence that says so when
// the server refuses it.
const (
	needsOperator = "an operator credential (the server's <data-dir>/operator.creds, or --nats-creds FILE of an identity with the operator role)"
	needsAudit    = "an audit credential (the server's <data-dir>/audit.creds, or --nats-creds FILE of an identity with the audit role)"
	needsAny      = "a credential of the bus (--nats-creds FILE; `sessionbus services add` issues one)"
)

// permGuard ends a command at once when the server refuses one of its
// publishes or subscriptions, instead of letting it wait for a reply that
// cannot come, and says which credential the command needs.
type permGuard struct {
	needs  string
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	denied error
}

// guardPermissions returns a context that ends on a permission
// violation, and the guard whose option watches the connection.
func guardPermissions(ctx context.Context, needs string) (context.Context, *permGuard) {
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, &permGuard{needs: needs, cancel: cancel}
}

// option is the connection's error handler.
func (g *permGuard) option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			return
		}
		g.mu.Lock()
		if g.denied == nil {
			g.denied = err
		}
		g.mu.Unlock()
		g.cancel(err)
	})
}

// explain turns the error of a command that the server refused into a
// sentence that names the credential it needs; other errors pass.
func (g *permGuard) explain(err error) error {
	g.mu.Lock()
	denied := g.denied
	g.mu.Unlock()
	if err == nil || denied == nil {
		return err
	}
	detail := strings.TrimPrefix(denied.Error(), nats.ErrPermissionViolation.Error()+": ")
	return fmt.Errorf("not allowed for this identity (%s): this command needs %s", detail, g.needs)
}

// refused reports whether the server refused something.
func (g *permGuard) refused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.denied != nil
}

func (g *permGuard) stop() { g.cancel(nil) }

// userError makes an error read as a sentence for a person at a
// terminal: the server's answer without its status number, and, when the
// connection was refused, what to do about it.
func userError(err error) error {
	var ce *events.CommandError
	switch {
	case errors.As(err, &ce):
		msg := ce.Message
		switch ce.Code {
		case 403:
			if strings.Contains(msg, "operator role") || strings.Contains(msg, "no identity") {
				msg += ": this command needs " + needsOperator
			}
		case 429, 503:
			if ce.RetryAfter > 0 {
				msg += fmt.Sprintf(" (try again in %s)", ce.RetryAfter.Round(time.Second))
			}
		}
		return errors.New(msg)
	case errors.Is(err, nats.ErrAuthorization):
		return fmt.Errorf("%w: the NATS server takes no connection without a credential of the bus: use --nats-creds FILE, or --data-dir of the running server (whose operator.creds and audit.creds the local commands use)", err)
	}
	return err
}
