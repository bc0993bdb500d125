// Package loadgen is the load loop of `sessionbus bench` and of the fault
// tests: workers run an operation over and over for a duration, each
// request bounded by its own timeout, every outcome counted (successes
// with their latency, errors and timeouts by kind), progress printed
// while it runs; a Ledger records what the server acknowledged and
// checks it against the stream at the end.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// Defaults of Config.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultProgressEvery = 3 * time.Second
)

// Config of a run.
type Config struct {
	Name     string
	Workers  int
	Duration time.Duration
	// Timeout bounds each request (default 5s). A request still running
	// when the duration ends finishes (within its timeout) and counts.
	Timeout time.Duration
	// Progress receives a line every ProgressEvery (default 3s) while the
	// run lasts; nil prints nothing.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Op is one request of worker w. Its error, if any, is counted by kind
// (ErrorKind); ErrDone stops the worker without counting.
type Op func(ctx context.Context, w int) error

// ErrDone stops a worker that has nothing left to do.
var ErrDone = errors.New("loadgen: done")

// Result of a run.
type Result struct {
	Name    string        `json:"name"`
	Ops     int           `json:"ops"`
	Seconds float64       `json:"seconds"`
	Rate    float64       `json:"ops_per_second"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
	// Errors counts failed requests by kind (ErrorKind), timeouts
	// included (kind "timeout").
	Errors   map[string]int `json:"errors,omitempty"`
	Timeouts int            `json:"timeouts"`
	Workers  int            `json:"workers"`
	Comments string         `json:"comments,omitempty"`
	// Memory is the server's, when the run could read its /metrics.
	Memory
}

// Failed is the number of failed requests.
func (r Result) Failed() int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// Print writes the result as text.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d ops in %.1fs = %.0f/s with %d workers  p50 %s  p99 %s  max %s\n",
		r.Name, r.Ops, r.Seconds, r.Rate, r.Workers, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors: %d (timeouts %d): %s\n", r.Failed(), r.Timeouts, FormatKinds(r.Errors))
	}
	r.Memory.Print(w)
	if r.Comments != "" {
		fmt.Fprintf(w, "  %s\n", r.Comments)
	}
}

// FormatKinds lists counts by kind, largest first.
func FormatKinds(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// ErrorKind names the kind of a request's error: "timeout", the
// sessionbus error code ("409", "503"), "no_responders", "disconnected",
// or the error's text.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "timeout"
	case errors.Is(err, nats.ErrNoResponders):
		return "no_responders"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting):
		return "disconnected"
	}
	if code := events.ErrorCode(err); code != 0 {
		return fmt.Sprint(code)
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// Run runs op in cfg.Workers goroutines until cfg.Duration has passed (or
// ctx ends), each request on a context of its own bounded by cfg.Timeout.
// A worker that gets an error goes on with its next request.
func Run(ctx context.Context, cfg Config, op Op) Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	end := time.Now().Add(cfg.Duration)
	var (
		mu     sync.Mutex
		all    []time.Duration
		errs   = map[string]int{}
		ok     atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil {
		pwg.Go(func() {
			t := time.NewTicker(cfg.ProgressEvery)
			defer t.Stop()
			var last int64
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
				}
				n := ok.Load()
				mu.Lock()
				kinds := FormatKinds(errs)
				mu.Unlock()
				fmt.Fprintf(cfg.Progress, "%s: %.0fs  %d ok (%.0f/s now)  %d errors %s\n", cfg.Name, time.Since(start).Seconds(),
					n, float64(n-last)/cfg.ProgressEvery.Seconds(), failed.Load(), kinds)
				last = n
			}
		})
	}
	for w := range cfg.Workers {
		wg.Go(func() {
			var lat []time.Duration
			for ctx.Err() == nil && time.Now().Before(end) {
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				t0 := time.Now()
				err := op(rctx, w)
				d := time.Since(t0)
				cancel()
				if errors.Is(err, ErrDone) {
					break
				}
				if err != nil {
					if ctx.Err() != nil {
						break // the run was stopped
					}
					failed.Add(1)
					mu.Lock()
					errs[ErrorKind(err)]++
					mu.Unlock()
					continue
				}
				ok.Add(1)
				lat = append(lat, d)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	return Summarise(cfg.Name, cfg.Workers, time.Since(start), all, errs)
}

// Summarise builds a result from per-operation latencies.
func Summarise(name string, workers int, elapsed time.Duration, lat []time.Duration, errs map[string]int) Result {
	slices.Sort(lat)
	r := Result{Name: name, Ops: len(lat), Seconds: elapsed.Seconds(), Workers: workers, Errors: errs, Timeouts: errs["timeout"]}
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	if elapsed > 0 {
		r.Rate = float64(len(lat)) / elapsed.Seconds()
	}
	r.P50, r.P99 = Percentile(lat, 0.50), Percentile(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r
}

// Percentile of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}
