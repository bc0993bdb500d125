package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

const cliSource = "/sessionbus/cli"

// request sends one command over a fresh connection and decodes the reply.
func request(cmd *cobra.Command, nf *natsFlags, subject string, req, reply any) error {
	return withConn(cmd, nf, needsFor(subject), func(ctx context.Context, nc *nats.Conn) error {
		return events.Request(ctx, nc, subject, cliSource, req, reply)
	})
}

// withConn runs fn on a fresh connection whose context ends at once if
// the server refuses the identity something; the error then names the
// credential needed.
func withConn(cmd *cobra.Command, nf *natsFlags, needs string, fn func(context.Context, *nats.Conn) error) error {
	ctx, guard := guardPermissions(cmd.Context(), needs)
	defer guard.stop()
	nc, err := nf.connect(ctx, "sessionbus-cli", guard.option())
	if err != nil {
		return err
	}
	defer nc.Close()
	return guard.explain(fn(ctx, nc))
}

// needsFor is the credential a command needs.
func needsFor(subject string) string {
	switch subject {
	case events.SubjectLogin, events.SubjectRefresh, events.SubjectLogout, events.SubjectJWKS:
		return needsAny
	}
	return needsOperator
}

// resolveUser returns the id of a user given by id or name (the operator
// command users.get); "no such user" is an error.
func resolveUser(ctx context.Context, nc *nats.Conn, user string) (string, error) {
	var u session.UserInfo
	if err := events.Request(ctx, nc, events.SubjectUsersGet, cliSource, events.UserRequest{User: user}, &u); err != nil {
		return "", err
	}
	return u.ID, nil
}

func printTokens(cmd *cobra.Command, asJSON bool, r events.TokenReply) error {
	if asJSON {
		return printJSON(cmd.OutOrStdout(), r)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "session:       %s\nexpires in:    %ds\naccess token:  %s\nrefresh token: %s\n",
		r.SessionID, r.ExpiresIn, r.AccessToken, r.RefreshToken)
	return nil
}

func newLoginCmd() *cobra.Command {
	var nf natsFlags
	var asJSON, pwStdin bool
	var clientID string
	cmd := &cobra.Command{
		Use:   "login USERNAME",
		Short: "Log in over NATS and print the tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readSecret(cmd, pwStdin, "Password: ")
			if err != nil {
				return err
			}
			var r events.TokenReply
			if err := request(cmd, &nf, events.SubjectLogin,
				events.LoginRequest{Username: args[0], Password: pw, ClientID: clientID}, &r); err != nil {
				return err
			}
			return printTokens(cmd, asJSON, r)
		},
	}
	nf.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from stdin")
	cmd.Flags().StringVar(&clientID, "client-id", "", "client id to record with the session")
	return cmd
}

func newRefreshCmd() *cobra.Command {
	var nf natsFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "refresh REFRESH_TOKEN",
		Short: "Exchange a refresh token for new tokens over NATS",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r events.TokenReply
			if err := request(cmd, &nf, events.SubjectRefresh, events.RefreshRequest{RefreshToken: args[0]}, &r); err != nil {
				return err
			}
			return printTokens(cmd, asJSON, r)
		},
	}
	nf.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "logout TOKEN",
		Short: "End the session of a refresh or access token over NATS",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := events.LogoutRequest{AccessToken: args[0]}
			if strings.HasPrefix(args[0], "sbr_") {
				req = events.LogoutRequest{RefreshToken: args[0]}
			}
			if err := request(cmd, &nf, events.SubjectLogout, req, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "logged out")
			return nil
		},
	}
	nf.add(cmd.Flags())
	return cmd
}

func newRevokeCmd() *cobra.Command {
	var nf natsFlags
	var req events.RevokeRequest
	cmd := &cobra.Command{
		Use:   "revoke (--session ID | --user USER | --jti JTI)",
		Short: "Revoke a session, every session of a user, or one access token (admin, over NATS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := withConn(cmd, &nf, needsOperator, func(ctx context.Context, nc *nats.Conn) error {
				r := req
				if r.UserID != "" {
					id, err := resolveUser(ctx, nc, r.UserID)
					if err != nil {
						return err
					}
					r.UserID = id
				}
				return events.Request(ctx, nc, events.SubjectRevoke, cliSource, r, nil)
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked")
			return nil
		},
	}
	nf.add(cmd.Flags())
	cmd.Flags().StringVar(&req.SessionID, "session", "", "session id")
	cmd.Flags().StringVar(&req.UserID, "user", "", "user, by id or name: revokes every session of the user")
	cmd.Flags().StringVar(&req.JTI, "jti", "", "access token id")
	cmd.Flags().StringVar(&req.Reason, "reason", events.ReasonAdmin, "reason recorded in the fact: 1 to 64 of [a-z0-9_], starting with a letter (e.g. laptop_stolen); the fact also names who revoked")
	cmd.MarkFlagsOneRequired("session", "user", "jti")
	cmd.MarkFlagsMutuallyExclusive("session", "user", "jti")
	return cmd
}

func newSessionsCmd() *cobra.Command {
	var nf natsFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions USER",
		Short: "List a user's sessions, by user id or name (admin, over NATS)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r events.SessionsReply
			err := withConn(cmd, &nf, needsOperator, func(ctx context.Context, nc *nats.Conn) error {
				id, err := resolveUser(ctx, nc, args[0])
				if err != nil {
					return err
				}
				return events.Request(ctx, nc, events.SubjectSessions, cliSource, events.SessionsRequest{UserID: id}, &r)
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tSTATUS\tCREATED\tIP\tCLIENT\tGEN")
			for _, s := range r.Sessions {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", s.SessionID, s.Status, s.CreatedAt.Format("2006-01-02 15:04:05"), s.IP, s.ClientID, s.Generation)
			}
			return tw.Flush()
		},
	}
	nf.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
