package natsapi

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/micro"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/session"
)

// requestInfoHeader is where the NATS server states who sent a request
// that crossed from the CLIENTS account into the manager's (the import
// shares it). The server sets it; a client cannot forge it.
const requestInfoHeader = "Nats-Request-Info"

// caller is the bus identity that sent a command.
type caller struct {
	name string        // the credential's name
	role natsauth.Role // from its role tag
}

// callerOf reads the identity the server stated. ok is false for a
// request without one: from the manager's own account (nothing there may
// send commands when identities are on), or a server without them.
func callerOf(r micro.Request) (c caller, ok bool, err error) {
	v := r.Headers().Get(requestInfoHeader)
	if v == "" {
		return caller{}, false, nil
	}
	var info struct {
		NameTag string   `json:"name_tag"`
		Tags    []string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(v), &info); err != nil {
		return caller{}, false, fmt.Errorf("%w: unreadable request info", session.ErrForbidden)
	}
	for _, t := range info.Tags {
		if r, found := strings.CutPrefix(t, natsauth.RoleTag); found {
			c.role = natsauth.Role(r)
		}
	}
	c.name = info.NameTag
	if c.name == "" || !c.role.Valid() {
		return caller{}, false, fmt.Errorf("%w: a credential without name or role", session.ErrForbidden)
	}
	if !events.ValidActorName(c.name) {
		// Its name goes into facts and logs as the actor.
		return caller{}, false, fmt.Errorf("%w: a credential whose name is not 1 to 128 characters of [A-Za-z0-9._-]", session.ErrForbidden)
	}
	return c, true, nil
}

// actor is the caller as the actor of the facts its command causes: the
// server-stated identity, whatever the request says. A request without a
// stated identity (only where RequireCaller is off) is "anonymous".
func (c caller) actor() events.Actor {
	if c.name == "" {
		return events.Actor{Kind: events.ActorIdentity, Name: "anonymous"}
	}
	return events.Actor{Kind: events.ActorIdentity, Name: c.name, Role: string(c.role)}
}

// allowed says which roles may send a command. The server's permissions
// already keep every other identity from publishing it; this is the same
// rule once more, so that a mistaken cluster configuration does not open
// the admin commands to services.
func allowed(subject string, role natsauth.Role) bool {
	switch subject {
	case events.SubjectLogin, events.SubjectRefresh, events.SubjectLogout, events.SubjectJWKS:
		return true
	}
	return role == natsauth.RoleOperator
}

// authorize checks the caller of a command. With RequireCaller, a
// request without a stated identity is refused.
func (a *api) authorize(r micro.Request) (caller, error) {
	c, ok, err := callerOf(r)
	switch {
	case err != nil:
		return caller{}, err
	case !ok && a.cfg.RequireCaller:
		return caller{}, fmt.Errorf("%w: no identity", session.ErrForbidden)
	case ok && !allowed(r.Subject(), c.role):
		return caller{}, fmt.Errorf("%w: %s needs the operator role", session.ErrForbidden, r.Subject())
	}
	return c, nil
}
