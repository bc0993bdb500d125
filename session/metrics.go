package session

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the manager. No label ever holds a user, token or secret.
type metrics struct {
	logins        *prometheus.CounterVec // result
	refreshes     *prometheus.CounterVec // result
	revocations   *prometheus.CounterVec // kind, reason
	throttled     prometheus.Counter
	overloaded    prometheus.Counter
	conflicts     prometheus.Counter
	hashesRunning prometheus.GaugeFunc
	publishTime   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, inFlight func() float64) (*metrics, error) {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionbus", Name: "logins_total", Help: "Login attempts by result.",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionbus", Name: "refreshes_total", Help: "Refresh attempts by result.",
		}, []string{"result"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionbus", Name: "revocations_total", Help: "Revocation facts published by kind and reason.",
		}, []string{"kind", "reason"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionbus", Name: "logins_throttled_total", Help: "Logins refused by the failed-login throttle (not published as facts).",
		}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionbus", Name: "logins_overloaded_total", Help: "Logins refused because the password-hash bound was reached.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionbus", Name: "write_conflicts_total", Help: "Conditional publishes that lost to a concurrent writer and were decided again.",
		}),
		hashesRunning: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessionbus", Name: "password_hashes_in_flight", Help: "Password hashes being computed.",
		}, inFlight),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sessionbus", Name: "publish_seconds", Help: "Time from publish to the stream's ack.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	if reg == nil {
		return m, nil
	}
	// All or none, so that a manager that fails to start leaves the
	// registry as it was (as consumers/internal/promreg does for the
	// consumers, which a separate module keeps out of reach).
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.logins, m.refreshes, m.revocations, m.throttled, m.overloaded, m.conflicts, m.hashesRunning, m.publishTime} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("session: metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}
