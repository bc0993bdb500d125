package jsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/events"
)

// Reasons the stream refuses writes, as WriteHealth reports them (the
// reason label of sessionbus_write_refusals_total).
const (
	// ReasonReserve: the stream is within its reserve of MaxBytes; the
	// manager refuses logins and refreshes so that revocations still fit.
	ReasonReserve = "reserve"
	// ReasonStreamFull: the stream reached its MaxBytes and refuses facts.
	ReasonStreamFull = "stream_full"
	// ReasonStorageFull: JetStream has no storage left (account or server
	// limit, disk).
	ReasonStorageFull = "storage_full"
	// ReasonNoLeader: the stream has no leader (no quorum in a cluster).
	ReasonNoLeader = "no_leader"
	// ReasonUnavailable: the stream did not answer (timeouts, no
	// responders, JetStream unavailable).
	ReasonUnavailable = "unavailable"
	// ReasonOther: any other refusal of a write.
	ReasonOther = "other"
)

// fullMargin: a stream with less room than this is full (a revocation
// fact takes about 600 bytes).
const fullMargin = 1 << 10

// Defaults of WriteHealthConfig.
const (
	DefaultWriteReserve  = 0.10
	DefaultProbeInterval = 2 * time.Second
)

// WriteHealthConfig configures a WriteHealth.
type WriteHealthConfig struct {
	JetStream jetstream.JetStream
	// Reserve is the fraction of the stream's MaxBytes kept for
	// revocations (default 0.10): once the stream holds more than
	// (1-Reserve)×MaxBytes, routine writes (logins, refreshes) are
	// refused. Ignored without MaxBytes.
	Reserve float64
	// Interval between probes of the stream (default 2s); a probe waits
	// at most as long for its answer.
	Interval time.Duration
	// Logger (nil discards) and Registerer (nil: no metrics).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// WriteHealth tells whether the stream accepts writes: from a probe of the
// stream (its leader, its size against MaxBytes) every Interval, and from
// the outcome of real publishes (Observe). It says why it does not, in a
// log line at each change, in metrics (sessionbus_writable,
// sessionbus_write_refusals_total{reason}, sessionbus_stream_bytes) and
// through Refusal and RoutineRefusal. It recovers by itself: a clean probe
// made after a refused publish, or a publish that succeeds, clears it.
type WriteHealth struct {
	cfg WriteHealthConfig
	log *slog.Logger

	mu          sync.Mutex
	probe       string    // the last probe's refusal ("" if clean)
	probeDetail string    // its explanation
	reserve     string    // the reserve explanation, "" if below it
	observed    string    // refusal seen on a publish, until cleared
	obsDetail   string    // its explanation
	observedAt  time.Time // when observed was set
	reported    string    // the state last logged

	writable prometheus.Gauge
	refusals *prometheus.CounterVec
	bytes    prometheus.Gauge
	maxBytes prometheus.Gauge
}

// NewWriteHealth returns a WriteHealth; it is writable until told
// otherwise. Run probes.
func NewWriteHealth(cfg WriteHealthConfig) *WriteHealth {
	if cfg.Reserve <= 0 || cfg.Reserve >= 1 {
		cfg.Reserve = DefaultWriteReserve
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultProbeInterval
	}
	h := &WriteHealth{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.writable = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sessionbus", Name: "writable",
		Help: "1 when the stream accepts every write, 0 when logins and refreshes are refused (see sessionbus_write_refusals_total for why)."})
	h.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sessionbus", Name: "write_refusals_total",
		Help: "Writes refused, by reason: by the stream (stream_full, storage_full, no_leader, unavailable, other) or by the manager to keep the reserve for revocations (reserve)."},
		[]string{"reason"})
	h.bytes = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sessionbus", Name: "stream_bytes", Help: "Bytes held by AUTH_EVENTS at the last probe."})
	h.maxBytes = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "sessionbus", Name: "stream_max_bytes", Help: "MaxBytes of AUTH_EVENTS at the last probe (0: none)."})
	h.writable.Set(1)
	for _, r := range []string{ReasonReserve, ReasonStreamFull, ReasonStorageFull, ReasonNoLeader, ReasonUnavailable, ReasonOther} {
		h.refusals.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(h.writable, h.refusals, h.bytes, h.maxBytes)
	}
	return h
}

// Run probes the stream every Interval until ctx ends.
func (h *WriteHealth) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		h.Probe(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Probe asks the stream for its state once.
func (h *WriteHealth) Probe(ctx context.Context) {
	started := time.Now()
	pctx, cancel := context.WithTimeout(ctx, h.cfg.Interval)
	defer cancel()
	reason, detail, reserve := "", "", ""
	s, err := h.cfg.JetStream.Stream(pctx, events.StreamName)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		reason, detail = Classify(err), fmt.Sprintf("stream info: %v", err)
	} else {
		info := s.CachedInfo()
		limit := info.Config.MaxBytes
		h.bytes.Set(float64(info.State.Bytes))
		h.maxBytes.Set(float64(max(limit, 0)))
		switch {
		case info.Cluster != nil && info.Cluster.Leader == "":
			reason, detail = ReasonNoLeader, "the stream has no leader"
		case limit > 0 && info.State.Bytes+fullMargin > uint64(limit):
			reason, detail = ReasonStreamFull, fmt.Sprintf("the stream holds %d of its %d max bytes", info.State.Bytes, limit)
		case limit > 0 && float64(info.State.Bytes) >= (1-h.cfg.Reserve)*float64(limit):
			reserve = fmt.Sprintf("the stream holds %d of its %d max bytes: the last %.0f%% are kept for revocations, logins and refreshes are refused",
				info.State.Bytes, limit, 100*h.cfg.Reserve)
		}
	}
	h.mu.Lock()
	h.probe, h.probeDetail, h.reserve = reason, detail, reserve
	if reason == "" && h.observed != "" && h.observedAt.Before(started) {
		// The stream answered after the refused publish: try again.
		h.observed, h.obsDetail = "", ""
	}
	h.report()
	h.mu.Unlock()
}

// Observe takes the outcome of a publish: nil or a conflict (the stream
// wrote, or answered) clears a refusal seen on an earlier publish; a
// refusal is counted and held until a clean probe or a successful
// publish. Give it to the publisher with WithObserver.
func (h *WriteHealth) Observe(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil || errors.Is(err, events.ErrConflict) {
		if h.observed != "" {
			h.observed, h.obsDetail = "", ""
			h.report()
		}
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, events.ErrMalformed) {
		return // the caller gave up, or the event was bad: not the stream's answer
	}
	reason := Classify(err)
	h.refusals.WithLabelValues(reason).Inc()
	h.observed, h.obsDetail, h.observedAt = reason, err.Error(), time.Now()
	h.report()
}

// Refusal is why the stream refuses writes, revocations included, or ""
// if it accepts them: "reason: explanation".
func (h *WriteHealth) Refusal() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refusal()
}

func (h *WriteHealth) refusal() string {
	switch {
	case h.probe != "":
		return h.probe + ": " + h.probeDetail
	case h.observed != "":
		return h.observed + ": " + h.obsDetail
	}
	return ""
}

// RoutineRefusal is why routine writes (logins, refreshes) are refused, or
// "": Refusal, or the stream being within its reserve.
func (h *WriteHealth) RoutineRefusal() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.routineRefusal()
}

func (h *WriteHealth) routineRefusal() string {
	if r := h.refusal(); r != "" {
		return r
	}
	if h.reserve != "" {
		return ReasonReserve + ": " + h.reserve
	}
	return ""
}

// CheckRoutine returns an error saying why if routine writes are refused,
// and counts the refusal under its reason.
func (h *WriteHealth) CheckRoutine() error {
	h.mu.Lock()
	r := h.routineRefusal()
	h.mu.Unlock()
	if r == "" {
		return nil
	}
	reason, _, _ := strings.Cut(r, ":")
	if reason == ReasonReserve {
		h.refusals.WithLabelValues(reason).Inc()
	}
	return errors.New(r)
}

// report logs and sets the gauge when the state changed; h.mu is held.
func (h *WriteHealth) report() {
	now := h.routineRefusal()
	if now == h.reported {
		return
	}
	prevReason, _, _ := strings.Cut(h.reported, ":")
	reason, _, _ := strings.Cut(now, ":")
	h.reported = now
	switch {
	case now == "":
		h.writable.Set(1)
		h.log.Info("the stream accepts writes again")
	case reason != prevReason:
		h.writable.Set(0)
		if reason == ReasonReserve {
			h.log.Warn("logins and refreshes refused: the stream is within its reserve for revocations", "reason", reason, "detail", now)
		} else {
			h.log.Error("the stream refuses writes", "reason", reason, "detail", now)
		}
	}
}

// Classify names the reason of a refused write or failed stream request.
func Classify(err error) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		d := strings.ToLower(apiErr.Description)
		switch {
		case strings.Contains(d, "maximum bytes"), strings.Contains(d, "maximum messages"):
			return ReasonStreamFull
		case apiErr.ErrorCode == 10023, strings.Contains(d, "insufficient"), strings.Contains(d, "resources exceeded"),
			strings.Contains(d, "storage"):
			return ReasonStorageFull
		case strings.Contains(d, "leader"), strings.Contains(d, "offline"), strings.Contains(d, "quorum"):
			return ReasonNoLeader
		case apiErr.Code == 503 || strings.Contains(d, "unavailable"):
			return ReasonUnavailable
		}
		return ReasonOther
	}
	s := strings.ToLower(err.Error())
	switch {
	case strings.Contains(s, "maximum bytes"):
		return ReasonStreamFull
	case strings.Contains(s, "insufficient resources"), strings.Contains(s, "resources exceeded"):
		return ReasonStorageFull
	case strings.Contains(s, "no leader"), strings.Contains(s, "quorum"):
		return ReasonNoLeader
	case errors.Is(err, ErrUnsettled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		retryable(err), strings.Contains(s, "no responders"), strings.Contains(s, "timeout"), strings.Contains(s, "unavailable"):
		return ReasonUnavailable
	}
	return ReasonOther
}
