package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
)

// operator sends the users and keys commands to a manager: the running
// server over NATS, or, when the server is stopped, a manager started
// in-process on its data dir, serving the same NATS API on an in-process
// connection. Either way the commands take one path.
type operator struct {
	nc   *nats.Conn
	stop func()
	// guard, over NATS, ends a call the server refuses (see permGuard);
	// ctx is the context it ends.
	guard *permGuard
	ctx   context.Context
}

func (o operator) call(ctx context.Context, subject string, req, reply any) error {
	if o.guard == nil {
		return events.Request(ctx, o.nc, subject, cliSource, req, reply)
	}
	return o.guard.explain(events.Request(o.ctx, o.nc, subject, cliSource, req, reply))
}

func (o operator) close() { o.stop() }

// openOperator picks remote or local: --nats-url means remote; otherwise a
// locked data dir means a local server is running (remote to it), an
// unlocked one means stopped (local, in-process).
func openOperator(ctx context.Context, f *managerFlags) (operator, error) {
	if err := f.validate(); err != nil {
		return operator{}, err
	}
	if f.nats.url == "" {
		if err := haveData(f.nats.dataDir); err != nil {
			return operator{}, err
		}
		unlock, err := lockDataDir(f.nats.dataDir)
		if err == nil {
			return openLocal(ctx, f, unlock)
		}
		if !errors.Is(err, errLocked) {
			return operator{}, err
		}
	}
	gctx, guard := guardPermissions(ctx, needsOperator)
	nc, err := f.nats.connect(gctx, "sessionbus-cli", guard.option())
	if err != nil {
		guard.stop()
		return operator{}, err
	}
	return operator{nc: nc, stop: func() { nc.Close(); guard.stop() }, guard: guard, ctx: gctx}, nil
}

// haveData refuses a data dir that serve never made: an operator command
// run from another directory must not create a store of its own, which
// the running server would never see.
func haveData(dir string) error {
	st, err := os.Stat(filepath.Join(dir, "nats"))
	if err == nil && st.IsDir() {
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	return fmt.Errorf("no sessionbus data in %s: is the server running elsewhere? use --data-dir or --nats-url (only serve creates a data dir)", dir)
}

func openLocal(ctx context.Context, f *managerFlags, unlock func()) (operator, error) {
	mc, srv, shutdown, err := f.openNATS(ctx, true)
	if err != nil {
		unlock()
		return operator{}, err
	}
	cfg := f.nodeConfig(filepath.Join(f.nats.dataDir, "view"))
	withIdentities(&cfg, srv)
	// A one-shot command: only what goes wrong is worth a line.
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.Start(ctx, mc, cfg)
	if err != nil {
		shutdown()
		unlock()
		return operator{}, err
	}
	stop := func() {
		_ = n.Close(context.Background())
		shutdown()
		unlock()
	}
	if err := n.WaitReady(ctx); err != nil {
		stop()
		return operator{}, err
	}
	// The commands go as the local operator would send them, from its
	// own identity.
	nc, err := srv.ConnectAs(natsauth.RoleOperator)
	if err != nil {
		stop()
		return operator{}, err
	}
	return operator{nc: nc, stop: func() { nc.Close(); stop() }}, nil
}

// readSecret reads a password from stdin (--password-stdin) or asks for
// it on the terminal without echo.
func readSecret(cmd *cobra.Command, fromStdin bool, prompt string) (string, error) {
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no terminal to ask for the password: use --password-stdin")
	}
	fmt.Fprint(cmd.ErrOrStderr(), prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(cmd.ErrOrStderr())
	return string(b), err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newUsersCmd() *cobra.Command {
	var f managerFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage users: add, list, disable, enable, passwd",
		Long: `Manage users. Users and their argon2id hashes live in the JetStream
key-value bucket sessionbus_users, which only managers may read; never on
the event stream.

With the server running, these commands go over NATS (to --nats-url, or to
the local embedded server as the local operator, <data-dir>/operator.creds).
With the server stopped, they open --data-dir themselves.`,
	}
	f.addForOperator(cmd.PersistentFlags())
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	run := func(cmd *cobra.Command, subject string, req events.UserRequest, reply any) error {
		op, err := openOperator(cmd.Context(), &f)
		if err != nil {
			return err
		}
		defer op.close()
		return op.call(cmd.Context(), subject, req, reply)
	}
	var pwStdin bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user (password from the terminal, or stdin with --password-stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readSecret(cmd, pwStdin, "Password for "+args[0]+": ")
			if err != nil {
				return err
			}
			var u session.UserInfo
			if err := run(cmd, events.SubjectUsersAdd, events.UserRequest{Username: args[0], Password: pw}, &u); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), u)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added user %s (id %s)\n", u.Username, u.ID)
			return nil
		},
	}
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from stdin")
	passwd := &cobra.Command{
		Use:   "passwd USER",
		Short: "Set a user's password (by id or name); ends the user's sessions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readSecret(cmd, pwStdin, "New password for "+args[0]+": ")
			if err != nil {
				return err
			}
			if err := run(cmd, events.SubjectUsersPasswd, events.UserRequest{User: args[0], Password: pw}, &struct{}{}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed; its sessions are revoked\n", args[0])
			return nil
		},
	}
	passwd.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from stdin")
	list := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Users []session.UserInfo `json:"users"`
			}
			if err := run(cmd, events.SubjectUsersList, events.UserRequest{}, &out); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSERNAME\tSTATUS\tCREATED")
			for _, u := range out.Users {
				status := "enabled"
				if u.Disabled {
					status = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.ID, u.Username, status, u.CreatedAt)
			}
			return tw.Flush()
		},
	}
	toggle := func(use, short, subject string) *cobra.Command {
		return &cobra.Command{
			Use: use + " USER", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var u session.UserInfo
				if err := run(cmd, subject, events.UserRequest{User: args[0]}, &u); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %sd\n", u.Username, use)
				return nil
			},
		}
	}
	cmd.AddCommand(add, list, passwd,
		toggle("disable", "Disable a user (by id or name) and revoke all its sessions", events.SubjectUsersDisable),
		toggle("enable", "Enable a disabled user", events.SubjectUsersEnable))
	return cmd
}

func newKeysCmd() *cobra.Command {
	var f managerFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage signing keys: list, rotate, revoke",
		Long: `Manage the signing keys of access tokens. Keys live in the JetStream
key-value bucket sessionbus_keys, which only managers may read. A rotated
key stays in the JWKS until no token it signed can be valid; a revoked key
leaves it at once and services deny every token it signed.`,
	}
	f.addForOperator(cmd.PersistentFlags())
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	run := func(cmd *cobra.Command, subject string, req events.KeyRequest, reply any) error {
		op, err := openOperator(cmd.Context(), &f)
		if err != nil {
			return err
		}
		defer op.close()
		return op.call(cmd.Context(), subject, req, reply)
	}
	list := &cobra.Command{
		Use: "list", Short: "List signing keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Keys []session.KeyInfo `json:"keys"`
			}
			if err := run(cmd, events.SubjectKeysList, events.KeyRequest{}, &out); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALG\tSTATUS\tACTIVATED\tRETIRED")
			for _, k := range out.Keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.KID, k.Alg, k.Status, k.ActivatedAt, k.RetiredAt)
			}
			return tw.Flush()
		},
	}
	var alg string
	rotate := &cobra.Command{
		Use: "rotate", Short: "Make a new signing key active (publishes key.rotated)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var k session.KeyInfo
			if err := run(cmd, events.SubjectKeysRotate, events.KeyRequest{Alg: alg}, &k); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), k)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new active key %s (%s)\n", k.KID, k.Alg)
			return nil
		},
	}
	rotate.Flags().StringVar(&alg, "alg", "", "algorithm of the new key (default: the server's --signing-alg)")
	var reason string
	revoke := &cobra.Command{
		Use: "revoke KID", Short: "Withdraw a signing key and deny every token it signed (publishes key.revoked)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := run(cmd, events.SubjectKeysRevoke, events.KeyRequest{KID: args[0], Reason: reason}, &struct{}{}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s revoked\n", args[0])
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", events.ReasonKeyCompromised, "reason recorded in key.revoked: 1 to 64 of [a-z0-9_], starting with a letter")
	cmd.AddCommand(list, rotate, revoke)
	return cmd
}
