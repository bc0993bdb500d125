// Package cli holds what the two commands (sessionbus and
// example-service) share: every setting doubles as an environment
// variable, and logs are structured with log/slog.
package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// EnvName returns the environment variable of a flag: prefix + the flag
// in upper case with dashes as underscores.
func EnvName(prefix, flag string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// noEnv is the annotation of a flag that no environment variable sets.
const noEnv = "cli_no_env"

// NoEnv keeps the flags of c and its sub-commands with these names from
// the environment: per-invocation switches (--json, --all, --out) that a
// variable exported for another command must not set silently.
func NoEnv(c *cobra.Command, names ...string) {
	mark := func(f *pflag.Flag) {
		for _, n := range names {
			if f.Name == n {
				if f.Annotations == nil {
					f.Annotations = map[string][]string{}
				}
				f.Annotations[noEnv] = []string{"true"}
			}
		}
	}
	c.LocalFlags().VisitAll(mark)
	c.PersistentFlags().VisitAll(mark)
	for _, sub := range c.Commands() {
		NoEnv(sub, names...)
	}
}

// FromEnv reports whether an environment variable may set the flag.
func FromEnv(f *pflag.Flag) bool {
	return f.Name != "help" && f.Annotations[noEnv] == nil
}

// BindEnv sets every flag of cmd that was not given on the command line
// from its environment variable, if that is set, except the NoEnv ones.
// A bad value is an error naming the variable.
func BindEnv(cmd *cobra.Command, prefix string) error {
	var errs []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || !FromEnv(f) {
			return
		}
		name := EnvName(prefix, f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			return
		}
		f.Changed = true
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// AnnotateEnv adds "(env PREFIX_X)" to the usage of every flag of c and its
// sub-commands, so --help shows the variables.
func AnnotateEnv(c *cobra.Command, prefix string) {
	mark := func(f *pflag.Flag) {
		if !FromEnv(f) || strings.Contains(f.Usage, "(env ") {
			return
		}
		f.Usage += " (env " + EnvName(prefix, f.Name) + ")"
	}
	c.Flags().VisitAll(mark)
	c.PersistentFlags().VisitAll(mark)
	for _, sub := range c.Commands() {
		AnnotateEnv(sub, prefix)
	}
}

// NewLogger returns a text or JSON slog logger at the given level.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
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
