package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
)

// defaultResolverDir is where a cluster node's full resolver keeps the
// account JWTs it was given (on the node's volume, beside JetStream).
const defaultResolverDir = "/var/lib/nats/jwt"

func newAuthCmd() *cobra.Command {
	var authDir string
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "The NATS authority of a cluster: create it, write the servers' trust config, push account updates",
		Long: `The NATS authority of a sessionbus cluster: the operator key, the
accounts SYS, AUTH and CLIENTS (their nkey seeds, 0600 in --auth-dir, 0700)
and the register of the identities it issued. The embedded server keeps its
own in <data-dir>/nats-auth; a cluster has one authority, kept by whoever
administers the cluster, never on the NATS servers.

  sessionbus auth init --auth-dir DIR
  sessionbus auth nats-config --auth-dir DIR --out auth.conf      # for every NATS server
  sessionbus auth routes-config --routes nats-1:6222,... --out routes.conf
  sessionbus services add NAME --role service --auth-dir DIR      # a .creds file
  sessionbus services revoke NAME --auth-dir DIR --nats-url URL   # pushed at once

The servers trust the operator and keep the account JWTs in a full
(nats-based) resolver, so a revocation pushed to one server reaches every
server and closes the revoked identity's open connections.`,
	}
	cmd.PersistentFlags().StringVar(&authDir, "auth-dir", "", "directory of the cluster's NATS authority (keys 0600, dir 0700); keep it off the NATS servers")

	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the authority in --auth-dir (operator and account keys); an existing one is kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if authDir == "" {
				return errors.New("--auth-dir is required")
			}
			_, err := natsauth.Open(authDir, false)
			existed := err == nil
			if err != nil && !errors.Is(err, natsauth.ErrNoAuthority) {
				return err
			}
			a, err := natsauth.Open(authDir, true)
			if err != nil {
				return err
			}
			oj, err := a.OperatorJWT()
			if err != nil {
				return err
			}
			oc, err := jwt.DecodeOperatorClaims(oj)
			if err != nil {
				return err
			}
			verb := "created"
			if existed {
				verb = "kept the existing"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s authority in %s\n", verb, authDir)
			fmt.Fprintf(w, "operator %s\n", oc.Subject)
			for _, acc := range []string{natsauth.AccountSys, natsauth.AccountAuth, natsauth.AccountClients} {
				fmt.Fprintf(w, "account  %-7s %s\n", acc, a.AccountKey(acc))
			}
			return nil
		},
	}

	var out, resolverDir string
	natsConfig := &cobra.Command{
		Use:   "nats-config",
		Short: "Write the include file every NATS server of the cluster needs: operator, system account, resolver and account JWTs",
		Long: `Write the nats-server include file of the authority: the operator JWT
the servers trust, the system account, a full (nats-based) resolver keeping
the account JWTs in --resolver-dir, and the account JWTs themselves as
resolver_preload. It holds no secret (JWTs are signed, public claims).

Regenerate it after revocations only for servers that start from scratch:
a running cluster gets them pushed live (services revoke --auth-dir), and a
server keeps the newest JWT it has seen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := openAuthority(authDir)
			if err != nil {
				return err
			}
			b, err := natsAuthConfig(a, resolverDir)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			return writeFileAtomic(out, b, 0o644)
		},
	}
	natsConfig.Flags().StringVarP(&out, "out", "o", "", "file to write (default: stdout)")
	natsConfig.Flags().StringVar(&resolverDir, "resolver-dir", defaultResolverDir, "where each server's resolver keeps the account JWTs (on its own volume)")

	var routes []string
	var routesOut, routeUser string
	routesCmd := &cobra.Command{
		Use:   "routes-config",
		Short: "Write a secret include file for the cluster block: the route user and password, and the routes that use them",
		Long: `Write the route credentials of the cluster, to include in every server's
cluster block (include ./routes.conf): an authorization block with a new
random password, and the routes with that user and password in their
URLs, so a server that has not got the file cannot join. The file is a
secret (written 0600): mount it like one, the same file on every server.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(routes) == 0 {
				return errors.New("--routes is required (host:port of every server's route listener)")
			}
			b, err := routesConfig(routeUser, routes)
			if err != nil {
				return err
			}
			if routesOut == "" || routesOut == "-" {
				_, err := cmd.OutOrStdout().Write(b)
				return err
			}
			return writeFileAtomic(routesOut, b, 0o600)
		},
	}
	routesCmd.Flags().StringSliceVar(&routes, "routes", nil, "host:port of each server's route listener, comma separated (e.g. nats-1:6222,nats-2:6222,nats-3:6222)")
	routesCmd.Flags().StringVar(&routeUser, "route-user", "route", "user name of the routes")
	routesCmd.Flags().StringVarP(&routesOut, "out", "o", "", "file to write, 0600 (default: stdout)")

	push := &cobra.Command{
		Use:   "push",
		Short: "Push the current account JWTs (with every revocation) to the cluster over --nats-url",
		Long: `Push the account JWTs of the authority to the running cluster, signed by
the operator and sent on $SYS.REQ.CLAIMS.UPDATE by a short-lived system
account credential minted for this run. Every server stores them and closes
the connections of revoked identities. services revoke --auth-dir does this
itself; push repeats it (after a failed push, or for a server that was
down).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := openAuthority(authDir)
			if err != nil {
				return err
			}
			if nf.url == "" {
				return errors.New("--nats-url is required")
			}
			n, err := pushAccounts(cmd.Context(), a, &nf, natsauth.AccountSys, natsauth.AccountAuth, natsauth.AccountClients)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed 3 account JWTs; %d server answers\n", n)
			return nil
		},
	}
	push.Flags().StringVar(&nf.url, "nats-url", "", "NATS server URL(s) of the cluster, comma separated")
	push.Flags().StringVar(&nf.ca, "nats-ca", "", "CA certificate (PEM) the servers' TLS certificates are checked against")
	push.Flags().DurationVar(&nf.timeout, "timeout", 10*time.Second, "how long to wait for the servers")

	cmd.AddCommand(initCmd, natsConfig, routesCmd, push)
	return cmd
}

func openAuthority(dir string) (*natsauth.Authority, error) {
	if dir == "" {
		return nil, errors.New("--auth-dir is required")
	}
	return natsauth.Open(dir, false)
}

// natsAuthConfig renders the nats-server include file of the authority.
func natsAuthConfig(a *natsauth.Authority, resolverDir string) ([]byte, error) {
	oj, err := a.OperatorJWT()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Trust of the sessionbus cluster, generated by
#   sessionbus auth nats-config --auth-dir ... --out auth.conf
# on %s. Every server includes it (include ./auth.conf). It holds
# signed JWTs and public keys only, no secret.
#
# The servers trust the sessionbus operator; the accounts are SYS (the
# system account), AUTH (streams, buckets; manager, setup and audit
# identities) and CLIENTS (services, gateways, operators; no JetStream,
# reaching AUTH only through its exports). Users are not listed here:
# every client brings a user JWT signed by its account (a .creds file).

operator: %q
system_account: %s

# A full resolver: each server keeps every account JWT in dir and takes
# updates pushed on $SYS.REQ.CLAIMS.UPDATE (signed by the operator) from
# the others; a revocation pushed to one server closes the revoked
# identity's connections on all of them. Deleting accounts is not allowed.
resolver {
  type: full
  dir: %q
  allow_delete: false
  interval: "2m"
  timeout: "5s"
}

# The account JWTs as of this file; a server keeps any newer one it has
# been pushed.
resolver_preload {
`, time.Now().UTC().Format(time.RFC3339), oj, a.AccountKey(natsauth.AccountSys), resolverDir)
	for _, name := range []string{natsauth.AccountSys, natsauth.AccountAuth, natsauth.AccountClients} {
		j, err := a.AccountJWT(name)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "  # %s\n  %s: %q\n", name, a.AccountKey(name), j)
	}
	b.WriteString("}\n")
	return []byte(b.String()), nil
}

// routesConfig renders the route credentials include file.
func routesConfig(user string, routes []string) ([]byte, error) {
	if !nameOK(user) {
		return nil, fmt.Errorf("--route-user %q: letters, digits, '-' and '_' only", user)
	}
	p := make([]byte, 32)
	if _, err := rand.Read(p); err != nil {
		return nil, err
	}
	pw := hex.EncodeToString(p)
	var b strings.Builder
	b.WriteString(`# Route credentials of the sessionbus cluster, generated by
#   sessionbus auth routes-config --routes ... --out routes.conf
# SECRET: mount it 0600 on every server (the same file), never in a
# ConfigMap or an image. Included in the cluster block.
authorization {
`)
	fmt.Fprintf(&b, "  user: %q\n  password: %q\n  timeout: 2\n}\nroutes: [\n", user, pw)
	for _, r := range routes {
		host, port, ok := strings.Cut(strings.TrimSpace(r), ":")
		if _, err := strconv.Atoi(port); !ok || host == "" || err != nil || strings.ContainsAny(host, "/@ ") {
			return nil, fmt.Errorf("--routes: %q is not host:port", r)
		}
		fmt.Fprintf(&b, "  %q\n", "nats-route://"+user+":"+pw+"@"+host+":"+port)
	}
	b.WriteString("]\n")
	return []byte(b.String()), nil
}

func nameOK(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// writeFileAtomic writes b to path through a temp file in the same dir.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// pushAccounts sends the named accounts' current JWTs to the cluster as
// a short-lived system account identity, and returns how many server
// answers it got.
func pushAccounts(ctx context.Context, a *natsauth.Authority, nf *natsFlags, names ...string) (int, error) {
	j, seed, err := a.SysUser("sessionbus-push", 5*time.Minute)
	if err != nil {
		return 0, err
	}
	co, err := natsauth.JWTOptions(j, seed)
	if err != nil {
		return 0, err
	}
	timeout := nf.timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	opts := append([]nats.Option{nats.Name("sessionbus-push"), nats.Timeout(timeout)}, co...)
	if nf.ca != "" {
		opts = append(opts, nats.RootCAs(nf.ca))
	}
	nc, err := nats.Connect(nf.url, opts...)
	if err != nil {
		return 0, fmt.Errorf("connect to NATS at %s as the system account: %w", nf.url, err)
	}
	defer nc.Close()
	total := 0
	for _, name := range names {
		aj, err := a.AccountJWT(name)
		if err != nil {
			return total, err
		}
		n, err := pushJWT(ctx, nc, aj, timeout)
		total += n
		if err != nil {
			return total, fmt.Errorf("push account %s: %w", name, err)
		}
	}
	return total, nil
}

// pushJWT publishes one account JWT on the claims update subject and
// collects the answers: the first within timeout, the others (one per
// server with a full resolver) shortly after.
func pushJWT(ctx context.Context, nc *nats.Conn, accountJWT string, timeout time.Duration) (int, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(natsauth.ClaimsUpdateSubject, inbox, []byte(accountJWT)); err != nil {
		return 0, err
	}
	if err := nc.Flush(); err != nil {
		return 0, err
	}
	var n int
	var errs []error
	for {
		wait := timeout
		if n > 0 || len(errs) > 0 {
			wait = 500 * time.Millisecond
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			wait = time.Until(d)
		}
		m, err := sub.NextMsg(wait)
		if err != nil {
			break
		}
		var r struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
			Data *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"data"`
			Error *struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			errs = append(errs, fmt.Errorf("unreadable answer: %w", err))
			continue
		}
		if r.Error != nil {
			errs = append(errs, fmt.Errorf("server %s: %s (%d)", r.Server.Name, r.Error.Description, r.Error.Code))
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, errors.Join(errs...)
	}
	if n == 0 {
		return 0, errors.New("no server answered (do the servers use the full resolver of `sessionbus auth nats-config`?)")
	}
	return n, nil
}

// authorityServices runs a services command on a cluster's authority
// (--auth-dir) instead of over NATS: add and list work on the files;
// revoke also pushes the account's new JWT to --nats-url, which closes the
// identity's open connections.
func authorityServices(cmd *cobra.Command, dir string, nf *natsFlags, subject string, req events.ServiceRequest, reply any) error {
	if _, err := openAuthority(dir); err != nil {
		return err
	}
	// One writer of the register at a time.
	unlock, err := lockDataDir(dir)
	if err != nil {
		if errors.Is(err, errLocked) {
			return fmt.Errorf("the authority in %s is in use by another sessionbus command", dir)
		}
		return err
	}
	defer unlock()
	a, err := natsauth.Open(dir, false)
	if err != nil {
		return err
	}
	switch subject {
	case events.SubjectServicesAdd:
		role := natsauth.RoleService
		if req.Role != "" {
			if role, err = natsauth.ParseRole(req.Role); err != nil {
				return err
			}
		}
		creds, id, err := a.Issue(req.Name, role)
		if err != nil {
			return err
		}
		*reply.(*events.ServiceCreds) = events.ServiceCreds{ServiceInfo: serviceInfo(id), Creds: string(creds)}
	case events.SubjectServicesList:
		var out []events.ServiceInfo
		for _, id := range a.Identities() {
			out = append(out, serviceInfo(id))
		}
		*reply.(*[]events.ServiceInfo) = out
	case events.SubjectServicesRevoke:
		id, err := a.Revoke(req.Name)
		if err != nil {
			return err
		}
		*reply.(*events.ServiceInfo) = serviceInfo(id)
		if nf.url == "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "sessionbus: %s is revoked in the register only: the servers learn it from `sessionbus auth push --nats-url ...` (or a regenerated nats-config for new servers)\n", id.Name)
			return nil
		}
		if _, err := pushAccounts(cmd.Context(), a, nf, id.Role.Account()); err != nil {
			return fmt.Errorf("%s is revoked in the register, but the servers did not take it (retry with `sessionbus auth push`): %w", id.Name, err)
		}
	default:
		return fmt.Errorf("unknown services command %s", subject)
	}
	return nil
}

func serviceInfo(id natsauth.Identity) events.ServiceInfo {
	return events.ServiceInfo{Name: id.Name, Role: string(id.Role), Key: id.Key, Issued: id.Issued, Revoked: id.Revoked}
}
