package embedded

import (
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/sessionbus/sessionbus/events/natsauth"
)

// trust makes the server trust the authority's operator and preloads its
// account JWTs into an in-memory resolver.
func trust(opts *server.Options, a *natsauth.Authority) error {
	oj, err := a.OperatorJWT()
	if err != nil {
		return fmt.Errorf("embedded: operator: %w", err)
	}
	oc, err := jwt.DecodeOperatorClaims(oj)
	if err != nil {
		return fmt.Errorf("embedded: operator: %w", err)
	}
	accounts, err := a.AccountJWTs()
	if err != nil {
		return fmt.Errorf("embedded: accounts: %w", err)
	}
	res := &server.MemAccResolver{}
	for pub, j := range accounts {
		if err := res.Store(pub, j); err != nil {
			return fmt.Errorf("embedded: accounts: %w", err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	opts.AccountResolver = res
	opts.SystemAccount = a.AccountKey(natsauth.AccountSys)
	return nil
}

// UpdateAccount gives the running server the current JWT of the named
// account, as after a revocation: connections of identities it revokes
// are closed at once.
func (s *Server) UpdateAccount(name string) error {
	a := s.cfg.Auth
	if a == nil {
		return nil
	}
	j, err := a.AccountJWT(name)
	if err != nil {
		return err
	}
	ac, err := jwt.DecodeAccountClaims(j)
	if err != nil {
		return err
	}
	if err := s.ns.AccountResolver().Store(ac.Subject, j); err != nil {
		return err
	}
	acc, err := s.ns.LookupAccount(ac.Subject)
	if err != nil {
		return err
	}
	s.ns.UpdateAccountClaims(acc, ac)
	return nil
}

// Identities manages the bus identities of this server's authority:
// issuing them, listing them and revoking them, the revocation taking
// effect at once on open connections too.
type Identities struct{ s *Server }

// Identities returns the server's identity manager, or nil when the
// server has no authority.
func (s *Server) Identities() *Identities {
	if s.cfg.Auth == nil {
		return nil
	}
	return &Identities{s: s}
}

// Add issues an identity and returns its .creds file.
func (i *Identities) Add(name string, role natsauth.Role) ([]byte, natsauth.Identity, error) {
	return i.s.cfg.Auth.Issue(name, role)
}

// List returns every identity issued, revoked ones too.
func (i *Identities) List() []natsauth.Identity { return i.s.cfg.Auth.Identities() }

// Revoke revokes the identity and closes its connections.
func (i *Identities) Revoke(name string) (natsauth.Identity, error) {
	id, enforce, err := i.RevokeThen(name)
	if err != nil {
		return id, err
	}
	return id, enforce()
}

// RevokeThen records name's credential as revoked in the authority and
// returns the step that gives the server the account's new JWT, for a
// caller that must reply before it (natsapi: the new JWT of the AUTH
// account drops the replies in flight from it).
func (i *Identities) RevokeThen(name string) (natsauth.Identity, func() error, error) {
	id, err := i.s.cfg.Auth.Revoke(name)
	if err != nil {
		return natsauth.Identity{}, nil, err
	}
	return id, func() error {
		if err := i.s.UpdateAccount(id.Role.Account()); err != nil {
			return fmt.Errorf("embedded: revoke %s: %w", name, err)
		}
		return nil
	}, nil
}
