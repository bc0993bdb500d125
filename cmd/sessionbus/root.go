package main

import (
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/internal/cli"
)

// envPrefix starts the environment variable of every flag:
// --access-ttl is SESSIONBUS_ACCESS_TTL.
const envPrefix = "SESSIONBUS_"

// globalFlags are shared by every command.
type globalFlags struct {
	logLevel  string
	logFormat string
}

var globals globalFlags

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "sessionbus",
		Short: "Event-driven session manager: logins, refresh and revocation as CloudEvents on NATS JetStream",
		Long: `sessionbus logs users in, issues short-lived JWT access tokens and rotating
refresh tokens, and publishes every login, refresh and revocation as a
CloudEvent on the NATS JetStream stream AUTH_EVENTS. Services keep a local
deny-list from the revocation events, so a revoked session is refused
everywhere within milliseconds.

Every connection and server setting can also be set with the environment
variable SESSIONBUS_<FLAG>, upper case with dashes as underscores
(--access-ttl is SESSIONBUS_ACCESS_TTL, --data-dir SESSIONBUS_DATA_DIR); a
flag on the command line wins. Switches of one invocation (--json, --all,
--out, --user, …) are never taken from the environment. --help names the
variable of each flag that has one.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), globals.logLevel, globals.logFormat)
			if err != nil {
				return err
			}
			slog.SetDefault(logger)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&globals.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&globals.logFormat, "log-format", "text", "log format: text or json")
	for _, add := range commands {
		root.AddCommand(add())
	}
	cli.NoEnv(root, switches...)
	annotateEnv(root)
	return root
}

// switches are the flags of one invocation, never taken from the
// environment: a SESSIONBUS_JSON or SESSIONBUS_USER exported for one
// command must not silently change another.
var switches = []string{
	"json", "all", "out", "count", "since", "until", "from-seq", "subject", "type",
	"password-stdin", "role", "alg", "session", "user", "jti", "reason", "client-id",
	"against-stream", "complete", "prev-hash", "expect-hash",
	"workers", "duration", "kind", "sessions", "services", "rounds", "gates",
}

// commands are the constructors of the top-level commands, all in one
// place: each lives in a file of its own.
var commands = []func() *cobra.Command{
	newServeCmd, newSetupCmd, newUsersCmd, newKeysCmd, newServicesCmd, newAuthCmd, newCertsCmd,
	newLoginCmd, newRefreshCmd, newLogoutCmd, newRevokeCmd, newSessionsCmd,
	newEventsCmd, newAuditCmd, newBenchCmd, newGateCmd,
}

func envName(flag string) string { return cli.EnvName(envPrefix, flag) }

func bindEnv(cmd *cobra.Command) error { return cli.BindEnv(cmd, envPrefix) }

func annotateEnv(c *cobra.Command) { cli.AnnotateEnv(c, envPrefix) }

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	return cli.NewLogger(w, level, format)
}
