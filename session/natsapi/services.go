package natsapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/session"
)

// Identities manages the bus identities for the services commands
// (internal/embedded.Identities on the embedded server).
type Identities interface {
	Add(name string, role natsauth.Role) ([]byte, natsauth.Identity, error)
	List() []natsauth.Identity
	// RevokeThen records name's credential as revoked (durably) and
	// returns the step that makes the server enforce it, which the
	// caller runs once it has replied (see replyThen).
	RevokeThen(name string) (natsauth.Identity, func() error, error)
}

// authorityOnly are the roles the bus never issues: setup may change the
// streams, which no operator may; a manager reads the KV buckets (password
// hashes, signing keys), so one minted by an operator could forge tokens
// unseen. Only the authority's owner issues them (--auth-dir, or offline).
var authorityOnly = map[natsauth.Role]string{
	natsauth.RoleSetup:   "it may change the streams, which an operator may not",
	natsauth.RoleManager: "it reads the password hashes and signing keys, which an operator may not",
}

// errNoIdentities answers the services commands of a manager that does
// not hold the bus's authority (a cluster's identities are the NATS
// operator's to manage).
var errNoIdentities = fmt.Errorf("%w: this manager does not manage the bus identities", session.ErrForbidden)

func serviceInfo(id natsauth.Identity) events.ServiceInfo {
	return events.ServiceInfo{Name: id.Name, Role: string(id.Role), Key: id.Key, Issued: id.Issued, Revoked: id.Revoked}
}

// identityError maps the authority's errors about the identity name to
// the domain's; the answer names it, as every admin answer does.
func identityError(err error, name string) error {
	switch {
	case errors.Is(err, natsauth.ErrBadName), errors.Is(err, natsauth.ErrUnknownRole):
		return fmt.Errorf("%w: %w", session.ErrInvalidInput, err)
	case errors.Is(err, natsauth.ErrExists):
		return &session.NamedError{Err: session.ErrExists, Msg: fmt.Sprintf("identity %q already exists", name)}
	case errors.Is(err, natsauth.ErrNoIdentity):
		return &session.NamedError{Err: session.ErrNotFound, Msg: fmt.Sprintf("no active identity %q", name)}
	}
	return err
}

// by is the actor of a services command, for its log line.
func by(ctx context.Context) string {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c.actor().String()
}

func (a *api) servicesAdd(ctx context.Context, e events.Event) (any, error) {
	if a.cfg.Identities == nil {
		return nil, errNoIdentities
	}
	var req events.ServiceRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	role := natsauth.RoleService
	if req.Role != "" {
		role = natsauth.Role(req.Role)
	}
	if why, ok := authorityOnly[role]; ok {
		return nil, fmt.Errorf("%w: the %s role is not issued over the bus: %s (a cluster's authority issues it with --auth-dir)", session.ErrInvalidInput, role, why)
	}
	creds, id, err := a.cfg.Identities.Add(req.Name, role)
	if err != nil {
		return nil, identityError(err, req.Name)
	}
	a.cfg.Logger.Info("identity issued", "name", id.Name, "role", id.Role, "key", id.Key, "actor", by(ctx))
	return events.ServiceCreds{ServiceInfo: serviceInfo(id), Creds: string(creds)}, nil
}

func (a *api) servicesList(_ context.Context, _ events.Event) (any, error) {
	if a.cfg.Identities == nil {
		return nil, errNoIdentities
	}
	out := []events.ServiceInfo{}
	for _, id := range a.cfg.Identities.List() {
		out = append(out, serviceInfo(id))
	}
	return out, nil
}

func (a *api) servicesRevoke(ctx context.Context, e events.Event) (any, error) {
	if a.cfg.Identities == nil {
		return nil, errNoIdentities
	}
	var req events.ServiceRequest
	if err := data(e, &req); err != nil {
		return nil, err
	}
	id, enforce, err := a.cfg.Identities.RevokeThen(req.Name)
	if err != nil {
		return nil, identityError(err, req.Name)
	}
	a.cfg.Logger.Info("identity revoked", "name", id.Name, "role", id.Role, "key", id.Key, "actor", by(ctx))
	return replyThen{reply: serviceInfo(id), then: func() {
		if err := enforce(); err != nil {
			a.cfg.Logger.Error("revoked identity not yet enforced: it will be at the next start", "name", id.Name, "err", err)
		}
	}}, nil
}
