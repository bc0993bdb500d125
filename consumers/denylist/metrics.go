package denylist

import (
	"fmt"
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/internal/promreg"
)

// Reasons a message on the revocation subjects is skipped (label values of
// sessionbus_denylist_events_skipped_total).
const (
	skipMalformed     = "malformed"      // not a CloudEvent, bad data, too large
	skipUnknownType   = "unknown_type"   // a type or version this version does not know
	skipNotRevocation = "not_revocation" // a known fact that is not a revocation
	skipExpired       = "expired"        // deny_until already past
	skipMsgID         = "msgid_mismatch" // Nats-Msg-Id is not the ce-id: not a fact the manager stored
)

type metrics struct {
	applied        [KindKey + 1]prometheus.Counter
	skipped        map[string]prometheus.Counter
	lag            prometheus.Histogram
	consumerErrors prometheus.Counter
	beyondLookback prometheus.Counter
}

func newMetrics(l *List, reg prometheus.Registerer) (*metrics, error) {
	applied := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessionbus", Subsystem: "denylist", Name: "events_applied_total",
		Help: "Revocations applied to the deny-list, by kind.",
	}, []string{"kind"})
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessionbus", Subsystem: "denylist", Name: "events_skipped_total",
		Help: "Messages on the revocation subjects that were skipped, by reason.",
	}, []string{"reason"})
	m := &metrics{
		skipped: make(map[string]prometheus.Counter),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sessionbus", Subsystem: "denylist", Name: "apply_lag_seconds",
			Help:    "Time from a revocation's storage on the stream to its application, once caught up.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1, 5},
		}),
		consumerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionbus", Subsystem: "denylist", Name: "consumer_errors_total",
			Help: "Failed reads of the stored revocations (AUTH_REVOCATIONS and its info).",
		}),
		beyondLookback: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionbus", Subsystem: "denylist", Name: "revocations_beyond_lookback_total",
			Help: "Revocations whose deny_until lies further after their publication than the replay window.",
		}),
	}
	for _, k := range Kinds() {
		m.applied[k] = applied.WithLabelValues(k.String())
	}
	for _, r := range []string{skipMalformed, skipUnknownType, skipNotRevocation, skipExpired, skipMsgID} {
		m.skipped[r] = skipped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	entries := prometheus.NewDesc("sessionbus_denylist_entries", "Entries in the deny-list, by kind.", []string{"kind"}, nil)
	collectors := []prometheus.Collector{
		applied, skipped, m.lag, m.consumerErrors, m.beyondLookback,
		collectorFunc{desc: entries, collect: func(ch chan<- prometheus.Metric) {
			for _, k := range Kinds() {
				ch <- prometheus.MustNewConstMetric(entries, prometheus.GaugeValue, float64(l.Len(k)), k.String())
			}
		}},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessionbus", Subsystem: "denylist", Name: "staleness_seconds",
			Help: "Time since the deny-list was last known to hold every revocation on the stream (+Inf before the first catch-up).",
		}, func() float64 {
			s := l.Staleness()
			if s == math.MaxInt64 {
				return math.Inf(1)
			}
			return s.Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessionbus", Subsystem: "denylist", Name: "ready",
			Help: "1 once the deny-list has caught up with the stream.",
		}, func() float64 {
			if l.isReady.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessionbus", Subsystem: "denylist", Name: "last_sequence",
			Help: "Stream sequence of the last revocation message handled.",
		}, func() float64 { return float64(l.lastSeq.Load()) }),
	}
	if err := promreg.RegisterAll(reg, collectors...); err != nil {
		return nil, fmt.Errorf("denylist: register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) skip(reason string) { m.skipped[reason].Inc() }

// collectorFunc is a collector with one fixed description.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
