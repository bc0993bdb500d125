package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
)

func init() { register(newEventsCmd) }

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Look at the event stream AUTH_EVENTS"}
	var nf natsFlags
	var asJSON, all bool
	var since string
	var fromSeq uint64
	var subjects []string
	var count int
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print events as they are published (human-readable or --json)",
		Long: `Print the events of AUTH_EVENTS as they are published: new ones by
default, or from --from-seq, --since or --all. --json prints one
structured-mode CloudEvent per line (with the stream sequence as the
string extension "streamseq", as in audit files).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nf.localCreds = auditCreds // reading the stream with a consumer is the auditor's
			nc, err := nf.connect(cmd.Context(), "sessionbus-tail")
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			occ := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverNewPolicy, NamePrefix: jsbus.UnguessableName()}
			switch {
			case fromSeq > 0:
				occ.DeliverPolicy, occ.OptStartSeq = jetstream.DeliverByStartSequencePolicy, fromSeq
			case since != "":
				t, err := parseSince(since)
				if err != nil {
					return err
				}
				occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
			case all:
				occ.DeliverPolicy = jetstream.DeliverAllPolicy
			}
			cons, err := js.OrderedConsumer(cmd.Context(), events.StreamName, occ)
			if err != nil {
				return err
			}
			it, err := cons.Messages()
			if err != nil {
				return err
			}
			go func() { <-cmd.Context().Done(); it.Stop() }()
			out := cmd.OutOrStdout()
			for n := 0; count <= 0 || n < count; n++ {
				m, err := it.Next()
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				st := jsbus.Decode(m)
				if asJSON {
					fmt.Fprintln(out, tailJSON(st))
				} else {
					fmt.Fprintln(out, tailLine(st))
				}
			}
			return nil
		},
	}
	nf.add(tail.Flags())
	tail.Flags().BoolVar(&asJSON, "json", false, "one structured-mode CloudEvent JSON per line")
	tail.Flags().BoolVar(&all, "all", false, "start at the beginning of the stream")
	tail.Flags().StringVar(&since, "since", "", "start at a time: RFC 3339, or a duration ago such as 1h")
	tail.Flags().Uint64Var(&fromSeq, "from-seq", 0, "start at this stream sequence")
	tail.Flags().StringSliceVar(&subjects, "subject", nil, "only these subjects (wildcards allowed), e.g. 'auth.events.*.revoked.>'")
	tail.Flags().IntVarP(&count, "count", "n", 0, "stop after this many events")
	cmd.AddCommand(tail)
	return cmd
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
