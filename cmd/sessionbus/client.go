package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
)

func init() {
	register(newLoginCmd)
	register(newRefreshCmd)
	register(newLogoutCmd)
	register(newRevokeCmd)
	register(newSessionsCmd)
}

const cliSource = "/sessionbus/cli"

// request sends one command over a fresh connection and decodes the reply.
func request(cmd *cobra.Command, nf *natsFlags, subject string, req, reply any) error {
	nc, err := nf.connect(cmd.Context(), "sessionbus-cli")
	if err != nil {
		return err
	}
	defer nc.Close()
	return events.Request(cmd.Context(), nc, subject, cliSource, req, reply)
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
		Use:   "revoke (--session ID | --user ID | --jti JTI)",
		Short: "Revoke a session, every session of a user, or one access token (admin, over NATS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := request(cmd, &nf, events.SubjectRevoke, req, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked")
			return nil
		},
	}
	nf.add(cmd.Flags())
	cmd.Flags().StringVar(&req.SessionID, "session", "", "session id")
	cmd.Flags().StringVar(&req.UserID, "user", "", "user id: revokes every session of the user")
	cmd.Flags().StringVar(&req.JTI, "jti", "", "access token id")
	cmd.Flags().StringVar(&req.Reason, "reason", "admin", "reason recorded in the event")
	cmd.MarkFlagsOneRequired("session", "user", "jti")
	cmd.MarkFlagsMutuallyExclusive("session", "user", "jti")
	return cmd
}

func newSessionsCmd() *cobra.Command {
	var nf natsFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions USER_ID",
		Short: "List a user's sessions (admin, over NATS)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r events.SessionsReply
			if err := request(cmd, &nf, events.SubjectSessions, events.SessionsRequest{UserID: args[0]}, &r); err != nil {
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
