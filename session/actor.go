package session

import (
	"context"

	"github.com/sessionbus/sessionbus/events"
)

// actorKey is the context key of the actor of a call.
type actorKey struct{}

// WithActor returns ctx carrying who asks for what the manager is called
// to do with it: the API that took the command sets it from what the
// transport proved (the bus identity the NATS server stated, the admin
// credential that matched), never from the request's content. The
// revocation, user and key facts the call publishes name it; those the
// manager decides on its own name events.System; those a session's own
// password or token asks for (login, refresh, logout, RFC 7009) name the
// session's user (events.ActorUser), with a's name as their via when a
// is a bus identity.
func WithActor(ctx context.Context, a events.Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// actorOf returns the actor ctx carries; without one, the caller is a
// program that called the manager directly (events.ActorLocal).
func actorOf(ctx context.Context) events.Actor {
	if a, ok := ctx.Value(actorKey{}).(events.Actor); ok {
		return a
	}
	return events.Actor{Kind: events.ActorLocal}
}

// holder is the actor of a request made with one of a session's own
// tokens: the session's user, and the bus identity that carried the
// request, if one did.
func holder(ctx context.Context, userID string) events.Actor {
	a := events.Actor{Kind: events.ActorUser, Name: userID}
	if c := actorOf(ctx); c.Kind == events.ActorIdentity {
		a.Via = c.Name
	}
	return a
}

// reasonLabel is a revocation reason as a metric label: the reasons
// sessionbus uses, and "other" for an operator's own, so that the
// label's values stay few whatever operators write.
func reasonLabel(reason string) string {
	switch reason {
	case events.ReasonLogout, events.ReasonAdmin, events.ReasonRefreshReuse, events.ReasonIdleTimeout,
		events.ReasonAbsoluteTimeout, events.ReasonTokenRevocation, events.ReasonUserDisabled,
		events.ReasonKeyCompromised, events.ReasonPasswordChanged:
		return reason
	}
	return "other"
}
