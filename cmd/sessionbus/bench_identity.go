package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
)

// issueBenchIdentity issues an identity of the role for the run over nc
// (which needs the operator role) and writes its .creds file into dir.
func issueBenchIdentity(ctx context.Context, nc *nats.Conn, dir string, role natsauth.Role, i int) (name, path string, err error) {
	id := events.NewID()
	name = fmt.Sprintf("bench-%s-%s-%d", role, strings.ToLower(id[len(id)-6:]), i) // names are lower case
	var r events.ServiceCreds
	if err := events.Request(ctx, nc, events.SubjectServicesAdd, "/sessionbus/bench", events.ServiceRequest{Name: name, Role: string(role)}, &r); err != nil {
		return "", "", fmt.Errorf("issue a %s identity: %w", role, err)
	}
	path = filepath.Join(dir, name+".creds")
	return name, path, os.WriteFile(path, []byte(r.Creds), 0o600)
}

// revokeBenchIdentities revokes what the run issued.
func revokeBenchIdentities(nc *nats.Conn, names []string) {
	for _, name := range names {
		_ = events.Request(context.Background(), nc, events.SubjectServicesRevoke, "/sessionbus/bench", events.ServiceRequest{Name: name}, nil)
	}
}

// benchIdentity connects with an identity of the role issued for the run,
// and returns a cleanup that closes the connection and revokes it. Logins
// that state the client's address must come from a gateway.
func (f *benchFlags) benchIdentity(ctx context.Context, nc *nats.Conn, role natsauth.Role) (*nats.Conn, func(), error) {
	dir, err := os.MkdirTemp("", "sessionbus-bench-")
	if err != nil {
		return nil, func() {}, err
	}
	defer os.RemoveAll(dir)
	name, path, err := issueBenchIdentity(ctx, nc, dir, role, 0)
	revoke := func() {
		if name != "" {
			revokeBenchIdentities(nc, []string{name})
		}
	}
	if err != nil {
		revoke()
		return nil, func() {}, err
	}
	opts, err := natsauth.Options(path)
	if err != nil {
		revoke()
		return nil, func() {}, err
	}
	if f.nats.ca != "" {
		opts = append(opts, nats.RootCAs(f.nats.ca))
	}
	gc, err := nats.Connect(f.nats.effectiveURL(), append(opts, nats.Name(name))...)
	if err != nil {
		revoke()
		return nil, func() {}, err
	}
	return gc, func() { gc.Close(); revoke() }, nil
}
