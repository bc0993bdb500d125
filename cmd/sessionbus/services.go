package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
)

func newServicesCmd() *cobra.Command {
	var f managerFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "services",
		Short: "Manage bus identities: add, list, revoke (.creds files for services, gateways, auditors, operators)",
		Long: `Manage the identities that may connect to the bus. Each gets its own
NATS credential (a standard .creds file: a user JWT and its nkey seed), its
own permissions (its role) and its own private inbox.

Roles: service (follow revocations and keys; login, refresh, logout, jwks),
gateway (a service that may state the end user's ip and user_agent on
login), audit (read the whole stream; own durable consumers), operator
(user, key, service and revoke commands; read the stream without
consumers), manager (a session manager joining a cluster), setup (creates
the streams and buckets: sessionbus setup in a cluster; --auth-dir only).

With the server running, these commands go over NATS as the local operator
(<data-dir>/operator.creds) or --nats-creds; with it stopped, they open
--data-dir themselves. A revoked credential stops working at once, on open
connections too.

In a cluster, pass --auth-dir (the authority of sessionbus auth init): the
commands then work on its files, and revoke pushes the account's new JWT to
--nats-url (as a short-lived system account identity), which closes the
identity's connections on every server.`,
	}
	f.addForOperator(cmd.PersistentFlags())
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	var authDir string
	cmd.PersistentFlags().StringVar(&authDir, "auth-dir", "", "a cluster's NATS authority (sessionbus auth init): work on its files instead of over NATS; revoke pushes the change to --nats-url")
	run := func(cmd *cobra.Command, subject string, req events.ServiceRequest, reply any) error {
		if authDir != "" {
			return authorityServices(cmd, authDir, &f.nats, subject, req, reply)
		}
		op, err := openOperator(cmd.Context(), &f)
		if err != nil {
			return err
		}
		defer op.close()
		return op.call(cmd.Context(), subject, req, reply)
	}

	var role, out string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Issue a credential and write its .creds file (--out, default NAME.creds; - for stdout)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := out
			if path == "" {
				path = args[0] + ".creds"
			}
			// Create the file first (O_EXCL: never overwrite another
			// identity's credential), so that an identity is issued only
			// when its credential can be written.
			var fh *os.File
			if path != "-" {
				var err error
				fh, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("credentials file %s already exists: choose another --out, or remove it", path)
				}
				if err != nil {
					return fmt.Errorf("write credentials: %w", err)
				}
			}
			var r events.ServiceCreds
			if err := run(cmd, events.SubjectServicesAdd, events.ServiceRequest{Name: args[0], Role: role}, &r); err != nil {
				if fh != nil {
					fh.Close()
					os.Remove(path)
				}
				return err
			}
			if fh == nil {
				_, err := fmt.Fprint(cmd.OutOrStdout(), r.Creds)
				return err
			}
			if _, err := fh.WriteString(r.Creds); err != nil {
				fh.Close()
				return fmt.Errorf("write credentials: %w", err)
			}
			if err := fh.Close(); err != nil {
				return fmt.Errorf("write credentials: %w", err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r.ServiceInfo)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s %s; credentials in %s (keep them secret)\n", r.Role, r.Name, path)
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", "service", "role: service, gateway, audit, operator or manager (setup too with --auth-dir)")
	add.Flags().StringVarP(&out, "out", "o", "", "file to write the credentials to, 0600 (default NAME.creds; - for stdout)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List identities, revoked ones too",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ids []events.ServiceInfo
			if err := run(cmd, events.SubjectServicesList, events.ServiceRequest{}, &ids); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), ids)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tISSUED\tKEY")
			for _, id := range ids {
				status := "active"
				if !id.Revoked.IsZero() {
					status = "revoked " + id.Revoked.Format("2006-01-02T15:04:05Z")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id.Name, id.Role, status, id.Issued.Format("2006-01-02T15:04:05Z"), id.Key)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke an identity's credential: its connections are closed at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id events.ServiceInfo
			if err := run(cmd, events.SubjectServicesRevoke, events.ServiceRequest{Name: args[0]}, &id); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), id)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s %s\n", id.Role, id.Name)
			return nil
		},
	}
	cmd.AddCommand(add, list, revoke)
	return cmd
}
