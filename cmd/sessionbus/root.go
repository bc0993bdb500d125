package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

Every flag can also be set with the environment variable SESSIONBUS_<FLAG>,
upper case with dashes as underscores (--access-ttl is SESSIONBUS_ACCESS_TTL).
A flag on the command line wins over the environment.`,
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
	annotateEnv(root)
	return root
}

// commands holds the constructors of the top-level commands; each command
// file registers its own in an init function.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

// envName returns the environment variable of a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv sets every flag of cmd that was not given on the command line
// from its environment variable, if that is set.
func bindEnv(cmd *cobra.Command) error {
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", envName(f.Name), err))
			return
		}
		f.Changed = true
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// annotateEnv adds "(env SESSIONBUS_X)" to the usage of every flag of c and
// its sub-commands, so --help shows the variables.
func annotateEnv(c *cobra.Command) {
	mark := func(f *pflag.Flag) {
		if f.Name == "help" || strings.Contains(f.Usage, "(env ") {
			return
		}
		f.Usage += " (env " + envName(f.Name) + ")"
	}
	c.Flags().VisitAll(mark)
	c.PersistentFlags().VisitAll(mark)
	for _, sub := range c.Commands() {
		annotateEnv(sub)
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
}
