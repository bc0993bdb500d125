package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
)

// tailInactive is how long the server keeps the consumer of an `events
// tail` that went away without deleting it (killed, say).
const tailInactive = 10 * time.Second

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Look at the event stream AUTH_EVENTS"}
	nf := natsFlags{localCreds: auditCreds} // reading the stream with a consumer is the auditor's
	var opts tailOptions
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print events as they are published (human-readable or --json)",
		Long: `Print the events of AUTH_EVENTS as they are published: new ones by
default, or from --from-seq, --since or --all. It follows the stream
until interrupted (Ctrl-C), even with --all; -n N stops after N events.
--json prints one structured-mode CloudEvent per line (with the stream
sequence as the string extension "streamseq", as in audit files).

Reading the stream with a consumer is the auditor's: against the local
server it connects with <data-dir>/audit.creds. Its consumer is deleted
when it ends, and forgotten by the server within 10 s if it is killed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, guard := guardPermissions(cmd.Context(), needsAudit)
			defer guard.stop()
			nc, err := nf.connect(ctx, "sessionbus-tail", guard.option())
			if err != nil {
				return err
			}
			defer nc.Close()
			err = tailEvents(ctx, nc, opts, cmd.OutOrStdout())
			if cmd.Context().Err() != nil && !guard.refused() {
				return nil // interrupted
			}
			return guard.explain(err)
		},
	}
	nf.add(tail.Flags())
	tail.Flags().BoolVar(&opts.asJSON, "json", false, "one structured-mode CloudEvent JSON per line")
	tail.Flags().BoolVar(&opts.all, "all", false, "start at the beginning of the stream (and keep following it)")
	tail.Flags().StringVar(&opts.since, "since", "", "start at a time: RFC 3339, or a duration ago such as 1h")
	tail.Flags().Uint64Var(&opts.fromSeq, "from-seq", 0, "start at this stream sequence")
	tail.Flags().StringSliceVar(&opts.subjects, "subject", nil, "only these subjects (wildcards allowed), e.g. 'auth.events.*.revoked.>'")
	tail.Flags().IntVarP(&opts.count, "count", "n", 0, "stop after this many events (default: follow until interrupted)")
	cmd.AddCommand(tail)
	return cmd
}

type tailOptions struct {
	asJSON, all bool
	since       string
	fromSeq     uint64
	subjects    []string
	count       int
}

// tailEvents prints the events with an ordered consumer, which it deletes
// when it returns.
func tailEvents(ctx context.Context, nc *nats.Conn, o tailOptions, out io.Writer) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: o.subjects, DeliverPolicy: jetstream.DeliverNewPolicy,
		InactiveThreshold: tailInactive, NamePrefix: jsbus.UnguessableName()}
	switch {
	case o.fromSeq > 0:
		occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.fromSeq
	case o.since != "":
		t, err := parseSince(o.since)
		if err != nil {
			return err
		}
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case o.all:
		occ.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, occ)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer func() {
		it.Stop()
		// The ordered consumer may have been recreated: delete the one
		// in use now.
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = js.DeleteConsumer(dctx, events.StreamName, info.Name)
		}
	}()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for n := 0; o.count <= 0 || n < o.count; n++ {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		st := jsbus.Decode(m)
		if o.asJSON {
			fmt.Fprintln(out, tailJSON(st))
		} else {
			fmt.Fprintln(out, tailLine(st))
		}
	}
	return nil
}

func parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q is neither RFC 3339 nor a duration", s)
	}
	return t, nil
}

func tailLine(st events.Stored) string {
	if st.Err != nil {
		return fmt.Sprintf("#%d %s %s UNREADABLE: %v", st.Seq, st.Time.UTC().Format(time.RFC3339), st.Subject, st.Err)
	}
	short := strings.TrimPrefix(string(st.Event.Type), "io.sessionbus.")
	var fields map[string]any
	var b strings.Builder
	if json.Unmarshal(st.Event.Data, &fields) == nil {
		for _, k := range []string{"user_id", "session_id", "jti", "kid", "reason", "ip", "generation", "deny_until", "revoked_before"} {
			if v, ok := fields[k]; ok && v != "" {
				fmt.Fprintf(&b, " %s=%v", k, v)
			}
		}
		// Who asked for it, as kind:name(role); only an actor that is
		// valid prints, so a fact cannot put spaces or control
		// characters into the line through it.
		var d struct {
			Actor events.Actor `json:"actor"`
		}
		if json.Unmarshal(st.Event.Data, &d) == nil && d.Actor.Valid() {
			fmt.Fprintf(&b, " actor=%s", d.Actor)
		}
	}
	return fmt.Sprintf("#%d %s %-22s %s%s", st.Seq, st.Event.Time.UTC().Format(time.RFC3339Nano), short, st.Event.Subject, b.String())
}

func tailJSON(st events.Stored) string {
	if st.Err != nil {
		b, _ := json.Marshal(map[string]any{"streamseq": st.Seq, "subject": st.Subject, "error": st.Err.Error()})
		return string(b)
	}
	ce := st.Event.CloudEvent()
	// A string, as in audit files: CloudEvents integers stop at 2^31-1.
	ce.SetExtension("streamseq", strconv.FormatUint(st.Seq, 10))
	b, _ := json.Marshal(ce)
	return string(b)
}
