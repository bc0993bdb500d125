package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sessionbus/sessionbus/consumers/audit"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Copy the event stream into verifiable files: replay, follow, verify",
		Long: `Audit files hold one structured-mode CloudEvent per line (JSON Lines), with
the stream sequence (streamseq) and a SHA-256 hash chain (prevhash,
chainhash) as extension attributes. replay copies the stream once, follow
keeps a live copy, verify proves a copy unedited. See docs/audit.md.`,
	}
	cmd.AddCommand(newAuditReplayCmd(), newAuditFollowCmd(), newAuditVerifyCmd())
	return cmd
}

// sizeFlag is a flag of bytes written as 64MiB, 16GB or 1000000; 0
// usually means no limit.
type sizeFlag int64

func (s *sizeFlag) String() string {
	if *s == 0 {
		return "0"
	}
	return humanize.IBytes(uint64(*s))
}

func (s *sizeFlag) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil || n > math.MaxInt64 {
		return fmt.Errorf("%q is not a size such as 64MiB", v)
	}
	*s = sizeFlag(n)
	return nil
}

func (s *sizeFlag) Type() string { return "size" }

func auditJetStream(ctx context.Context, nf *natsFlags, name string) (jetstream.JetStream, func(), error) {
	nc, err := nf.connect(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}

func newAuditReplayCmd() *cobra.Command {
	nf := natsFlags{localCreds: auditCreds} // reading the stream with a consumer is the auditor's
	var out, since, until, subject string
	var fromSeq uint64
	var types []string
	var maxSize sizeFlag
	cmd := &cobra.Command{
		Use:   "replay --out FILE|-",
		Short: "Copy the stream (or a filtered part of it) into an audit file",
		Long: `Copy AUTH_EVENTS, as it is when the command starts, into a new audit file
(or standard output with --out -), one CloudEvent per line, hash-chained.
Filters are recorded in the file's first line (auditfilter) and verify
takes them into account. --since and --until are stream times (when the
stream stored the event): RFC 3339, or a duration ago such as 24h.
A progress line is shown on standard error when it is a terminal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required (a file, or - for standard output)")
			}
			f := audit.Filter{FromSeq: fromSeq, Types: types, Subject: subject}
			var err error
			if since != "" {
				if f.Since, err = parseSince(since); err != nil {
					return err
				}
			}
			if until != "" {
				if f.Until, err = parseSince(until); err != nil {
					return fmt.Errorf("--until %q is neither RFC 3339 nor a duration", until)
				}
			}
			cfg := audit.ReplayConfig{Filter: f, MaxFileSize: int64(maxSize)}
			if out == "-" {
				cfg.Writer = cmd.OutOrStdout()
			} else {
				cfg.Out = out
			}
			js, closeNC, err := auditJetStream(cmd.Context(), &nf, "sessionbus-audit-replay")
			if err != nil {
				return err
			}
			defer closeNC()
			opts := []audit.Option{audit.WithLogger(slog.Default())}
			stderr := cmd.ErrOrStderr()
			if isTerminal(stderr) {
				opts = append(opts, audit.WithProgress(progressPrinter(stderr)))
			}
			r, err := audit.NewReplayer(js, cfg, opts...)
			if err != nil {
				return err
			}
			st, err := r.Run(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "replay: %d lines (%d unreadable, %d foreign, %d gap lines), last sequence %d, last chainhash %s\n",
				st.Lines, st.Unreadable, st.Foreign, st.Gaps, st.LastSeq, orNone(st.LastHash))
			return nil
		},
	}
	nf.add(cmd.Flags())
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "audit file to create (must not exist), or - for standard output")
	fl.Uint64Var(&fromSeq, "from-seq", 0, "first stream sequence to copy (default 1, or the first after --since)")
	fl.StringVar(&since, "since", "", "copy events stored at or after this time: RFC 3339, or a duration ago such as 24h")
	fl.StringVar(&until, "until", "", "stop at the first event stored after this time: RFC 3339, or a duration ago")
	fl.StringArrayVar(&types, "type", nil, "keep only this CloudEvent type (repeatable); unreadable messages are always kept")
	fl.StringVar(&subject, "subject", "", "keep only this stream subject (wildcards allowed), e.g. 'auth.events.*.revoked.>'")
	fl.Var(&maxSize, "max-size", "start a new file FILE.000001, … when the current one reaches this size, e.g. 1GiB (0: never)")
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressPrinter redraws one status line: events done, rate, ETA.
func progressPrinter(w io.Writer) func(audit.Progress) {
	return func(p audit.Progress) {
		line := fmt.Sprintf("\r%s lines  %s/s  %5.1f%%  seq %d of %d",
			humanize.Comma(p.Lines), humanize.Comma(int64(p.Rate())), 100*p.Fraction(), p.Seq, p.EndSeq)
		if eta := p.ETA(); eta > 0 && !p.Done {
			line += "  ETA " + eta.Round(time.Second).String()
		}
		if p.Done {
			line += "  done in " + p.Elapsed.Round(time.Millisecond).String() + "\n"
		}
		fmt.Fprintf(w, "%s\x1b[K", line)
	}
}

func newAuditFollowCmd() *cobra.Command {
	nf := natsFlags{localCreds: auditCreds} // reading the stream with a consumer is the auditor's
	var cfg audit.FollowConfig
	var maxSize sizeFlag
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "follow --durable NAME --out FILE",
		Short: "Keep appending new events to an audit file, resuming exactly where it stopped",
		Long: `Follow AUTH_EVENTS through the durable consumer NAME and append every event
to FILE (created when missing), acknowledging each only once its line is
fsynced. Killed at any moment (even with SIGKILL) and restarted, it resumes
after the last complete line of the file: no gap, no duplicate, the chain
unbroken. An incomplete last line left by a crash is removed on start.
With --max-size the copy goes on in FILE.000001, FILE.000002, … continuing
the chain. SIGINT or SIGTERM stops it cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Durable == "" || cfg.Out == "" {
				return errors.New("--durable and --out are required")
			}
			cfg.MaxFileSize = int64(maxSize)
			js, closeNC, err := auditJetStream(cmd.Context(), &nf, "sessionbus-audit-follow")
			if err != nil {
				return err
			}
			defer closeNC()
			opts := []audit.Option{audit.WithLogger(slog.Default())}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var wg sync.WaitGroup
			defer wg.Wait()
			if metricsAddr != "" {
				reg := prometheus.NewRegistry()
				opts = append(opts, audit.WithRegisterer(reg))
				srv, err := serveMetrics(ctx, &wg, metricsAddr, reg)
				if err != nil {
					return err
				}
				defer srv.Close()
			}
			f, err := audit.NewFollower(js, cfg, opts...)
			if err != nil {
				return err
			}
			if err := f.Run(ctx); err != nil {
				return err
			}
			st := f.Stats()
			fmt.Fprintf(cmd.ErrOrStderr(), "follow: stopped after sequence %d (%d lines this run), last chainhash %s\n", st.LastSeq, st.Lines, orNone(st.LastHash))
			return nil
		},
	}
	nf.add(cmd.Flags())
	fl := cmd.Flags()
	fl.StringVar(&cfg.Durable, "durable", "", "name of the durable JetStream consumer")
	fl.StringVar(&cfg.Out, "out", "", "audit file to extend (created when missing)")
	fl.Var(&maxSize, "max-size", "start a new file FILE.000001, … when the current one reaches this size, e.g. 1GiB (0: never)")
	fl.IntVar(&cfg.Batch, "batch", 256, "most lines written between two fsyncs")
	fl.DurationVar(&cfg.AckWait, "ack-wait", 30*time.Second, "how long the server waits for an ack before redelivering")
	fl.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9464)")
	return cmd
}

func serveMetrics(ctx context.Context, wg *sync.WaitGroup, addr string, g prometheus.Gatherer) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server", "err", err)
		}
	})
	return srv, nil
}

func newAuditVerifyCmd() *cobra.Command {
	nf := natsFlags{localCreds: auditCreds} // reading the stream with a consumer is the auditor's
	var cfg audit.VerifyConfig
	var against, asJSON bool
	cmd := &cobra.Command{
		Use:   "verify FILE...",
		Short: "Check audit files: hash chain, sequence continuity, filter; optionally against the stream",
		Long: `Check the audit files given (the parts of one chain, in any order): every
line's chainhash, every link to the line before (across files too), the
sequence continuity the chain's filter promises, and that each line fits
that filter. On the first failure it exits with status 1 naming the file and
line that was edited, removed, inserted or reordered.

--against-stream also reads the stream over the files' range and reports
events the stream has and the files lack, and lines that differ from the
stream. Events after the files' last line are only reported, unless
--complete. --expect-hash checks a chainhash noted earlier (it must still be
there), which catches lines cut from the end.

Exit status: 0 verified, 1 verification failed, 2 could not verify.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			if against {
				js, closeNC, err := auditJetStream(cmd.Context(), &nf, "sessionbus-audit-verify")
				if err != nil {
					return &exitError{code: 2, msg: err.Error()}
				}
				defer closeNC()
				cfg.Against = js
			}
			rep, err := audit.Verify(cmd.Context(), paths, cfg)
			out := cmd.OutOrStdout()
			if asJSON && rep != nil {
				b, _ := json.MarshalIndent(struct {
					OK    bool   `json:"ok"`
					Error string `json:"error,omitempty"`
					*audit.Report
				}{err == nil, errString(err), rep}, "", "  ")
				fmt.Fprintln(out, string(b))
			} else if rep != nil && err == nil {
				printReport(out, rep)
			}
			if err != nil {
				return &exitError{code: verifyExitCode(err), msg: err.Error()}
			}
			if !asJSON {
				fmt.Fprintln(out, "OK")
			}
			return nil
		},
	}
	nf.add(cmd.Flags())
	fl := cmd.Flags()
	fl.BoolVar(&against, "against-stream", false, "also compare with the stream AUTH_EVENTS")
	fl.BoolVar(&cfg.Complete, "complete", false, "with --against-stream: events after the files' last line count as missing")
	fl.StringVar(&cfg.PrevHash, "prev-hash", "", "chainhash of the line before the first file (when it is a later part of a chain)")
	fl.StringArrayVar(&cfg.ExpectHashes, "expect-hash", nil, "a chainhash noted earlier that must still be in the files (repeatable)")
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func verifyExitCode(err error) int {
	for _, e := range []error{audit.ErrNotAuditFile, audit.ErrNotAuditLine, audit.ErrEdited, audit.ErrRemoved,
		audit.ErrInserted, audit.ErrReordered, audit.ErrIncomplete, audit.ErrMissing, audit.ErrMismatch, audit.ErrDuplicateFact, audit.ErrMsgIDMismatch} {
		if errors.Is(err, e) {
			return 1
		}
	}
	return 2
}

func printReport(w io.Writer, r *audit.Report) {
	for _, f := range r.Files {
		fmt.Fprintf(w, "%s: part %d, %d lines, sequences %d to %d\n", f.Path, f.Part, f.Lines, f.FirstSeq, f.LastSeq)
	}
	if r.Lines > 0 {
		fmt.Fprintf(w, "stream %s, filter %q: %d lines, sequences %d to %d (%d unreadable, %d foreign, %d gap lines)\n",
			r.Stream, r.Filter, r.Lines, r.FirstSeq, r.LastSeq, r.Unreadable, r.Foreign, len(r.Gaps))
		fmt.Fprintf(w, "last chainhash %s\n", r.LastHash)
	}
	for _, g := range r.Gaps {
		fmt.Fprintf(w, "gap: sequences %d to %d were not on the stream when copied\n", g.FirstSeq, g.LastSeq)
	}
	if r.StreamChecked > 0 || r.StreamAgedOut > 0 {
		fmt.Fprintf(w, "against the stream: %d lines identical to their message, %d no longer on the stream\n", r.StreamChecked, r.StreamAgedOut)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}
