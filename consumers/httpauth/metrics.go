package httpauth

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/internal/promreg"
)

// Results of a request (label values of sessionbus_httpauth_requests_total).
const (
	resultOK          = "ok"
	resultNoToken     = "no_token"
	resultMalformed   = "malformed"
	resultInvalid     = "invalid"
	resultUnknownKey  = "unknown_key"
	resultRevoked     = "revoked"
	resultUnavailable = "unavailable"
)

type metrics struct {
	requests    map[string]prometheus.Counter
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	jwks        *prometheus.CounterVec
}

func newMetrics(a *Authenticator, reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessionbus", Subsystem: "httpauth", Name: "requests_total",
		Help: "Requests seen by the middleware, by result.",
	}, []string{"result"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessionbus", Subsystem: "httpauth", Name: "token_cache_total",
		Help: "Verified-token cache lookups, by result (hit or miss).",
	}, []string{"result"})
	m := &metrics{
		requests:    map[string]prometheus.Counter{},
		cacheHits:   cache.WithLabelValues("hit"),
		cacheMisses: cache.WithLabelValues("miss"),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionbus", Subsystem: "httpauth", Name: "jwks_fetches_total",
			Help: "Key set fetches, by result (ok or error).",
		}, []string{"result"}),
	}
	for _, r := range []string{resultOK, resultNoToken, resultMalformed, resultInvalid, resultUnknownKey, resultRevoked, resultUnavailable} {
		m.requests[r] = requests.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{requests, cache, m.jwks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessionbus", Subsystem: "httpauth", Name: "token_cache_entries",
			Help: "Verified tokens in the cache.",
		}, func() float64 {
			if a.cache == nil {
				return 0
			}
			return float64(a.cache.len())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessionbus", Subsystem: "httpauth", Name: "signing_keys",
			Help: "Signing keys in the key set.",
		}, func() float64 { return float64(len(*a.cfg.Keys.keys.Load())) }),
	}
	if err := promreg.RegisterAll(reg, collectors...); err != nil {
		return nil, fmt.Errorf("httpauth: register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) jwksFetch(ok bool) {
	if ok {
		m.jwks.WithLabelValues("ok").Inc()
	} else {
		m.jwks.WithLabelValues("error").Inc()
	}
}
