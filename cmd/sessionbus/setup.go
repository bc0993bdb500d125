package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/node"
)

func newSetupCmd() *cobra.Command {
	var f managerFlags
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create or upgrade the streams and buckets in a cluster (the setup identity; serve does it on the embedded server)",
		Long: `Create or upgrade the stream AUTH_EVENTS, the revocations stream sourced
from it and the managers' key-value buckets, in the cluster at --nats-url,
as the setup identity (--nats-creds: a credential of role setup, from
sessionbus services add NAME --role setup --auth-dir DIR).

Managers (serve --nats-url) only bind to what this step made: their
identity may not create, change, purge or delete streams. Run it once
before the first manager starts, and again to change --stream-replicas or
--stream-max-age. It never deletes or purges anything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.nats.url == "" {
				return errors.New("setup is for a cluster: --nats-url is required (serve sets up the embedded server itself)")
			}
			if f.nats.creds == "" {
				return errors.New("--nats-creds is required: a credential of role setup")
			}
			return runSetup(cmd.Context(), &f)
		},
	}
	f.add(cmd.Flags())
	return cmd
}

func runSetup(ctx context.Context, f *managerFlags) error {
	nc, err := f.nats.connect(ctx, "sessionbus-setup")
	if err != nil {
		return err
	}
	defer nc.Close()
	cfg := f.nodeConfig("")
	if err := cfg.Session.Validate(); err != nil {
		return err
	}
	// A cluster still electing its leaders answers 503 for a while.
	if err := whileTransient(ctx, func(ctx context.Context) error { return node.Setup(ctx, nc, cfg) }); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	slog.Info("streams and buckets ready", "stream", events.StreamName, "replicas", f.streamRepl, "max_age", f.streamMaxAge)
	return nil
}
