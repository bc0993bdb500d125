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
	Revoke(name string) (natsauth.Identity, error)
}

// errNoIdentities answers the services commands of a manager that does
// not hold the bus's authority (a cluster's identities are the NATS
// operator's to manage).
var errNoIdentities = fmt.Errorf("%w: this manager does not manage the bus identities", session.ErrForbidden)

func serviceInfo(id natsauth.Identity) events.ServiceInfo {
	return events.ServiceInfo{Name: id.Name, Role: string(id.Role), Key: id.Key, Issued: id.Issued, Revoked: id.Revoked}
}

// identityError maps the authority's errors to the domain's.
func identityError(err error) error {
	switch {
	case errors.Is(err, natsauth.ErrBadName), errors.Is(err, natsauth.ErrUnknownRole):
		return fmt.Errorf("%w: %w", session.ErrInvalidInput, err)
	case errors.Is(err, natsauth.ErrExists):
		return fmt.Errorf("%w: %w", session.ErrExists, err)
	case errors.Is(err, natsauth.ErrNoIdentity):
		return fmt.Errorf("%w: %w", session.ErrNotFound, err)
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
	creds, id, err := a.cfg.Identities.Add(req.Name, role)
	if err != nil {
		return nil, identityError(err)
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
	id, err := a.cfg.Identities.Revoke(req.Name)
	if err != nil {
		return nil, identityError(err)
	}
	a.cfg.Logger.Info("identity revoked", "name", id.Name, "role", id.Role, "key", id.Key, "actor", by(ctx))
	return serviceInfo(id), nil
}
