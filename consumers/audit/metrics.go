package audit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of the unreadable_total counter.
const (
	reasonMalformed     = "malformed"      // not a CloudEvent this package can copy
	reasonMsgIDMismatch = "msgid_mismatch" // Nats-Msg-Id is not the ce-id
)

// metrics of one mode (replay or follow).
type metrics struct {
	lines         prometheus.Counter
	unreadable    prometheus.Counter // unreadable_total{reason="malformed"}
	msgIDMismatch prometheus.Counter // unreadable_total{reason="msgid_mismatch"}
	foreign       prometheus.Counter
	gaps          prometheus.Counter
	rotations     prometheus.Counter
	duplicates    prometheus.Counter
	resets        prometheus.Counter
	repairs       prometheus.Counter
	lastSeq       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, mode string) (*metrics, error) {
	labels := prometheus.Labels{"mode": mode}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionbus", Subsystem: "audit", Name: name, Help: help, ConstLabels: labels,
		})
	}
	var unreadable prometheus.Collector = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessionbus", Subsystem: "audit", Name: "unreadable_total", ConstLabels: labels,
		Help: "Stream messages written as unreadable, by reason: malformed (not a copyable CloudEvent) or msgid_mismatch (its Nats-Msg-Id is not its ce-id).",
	}, []string{"reason"})
	m := &metrics{
		lines:      counter("lines_written_total", "Lines appended to audit files."),
		foreign:    counter("foreign_total", "CloudEvents of a type this version does not know, copied as they are."),
		gaps:       counter("gaps_total", "Gap lines: stream sequences without a message when copied."),
		rotations:  counter("rotations_total", "Audit files started because the previous one reached its size limit."),
		duplicates: counter("duplicates_skipped_total", "Redelivered messages already in the file, acknowledged and skipped."),
		resets:     counter("consumer_resets_total", "Times follow repositioned its consumer after the file's last line."),
		repairs:    counter("repairs_total", "Incomplete last lines (a crash mid-write) removed on start."),
		lastSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sessionbus", Subsystem: "audit", Name: "last_seq",
			Help: "Stream sequence of the last line written.", ConstLabels: labels,
		}),
	}
	reg1 := func(c prometheus.Collector) (prometheus.Collector, error) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector, nil
			}
			return nil, err
		}
		return c, nil
	}
	if reg != nil {
		for _, p := range []*prometheus.Counter{&m.lines, &m.foreign, &m.gaps, &m.rotations, &m.duplicates, &m.resets, &m.repairs} {
			c, err := reg1(*p)
			if err != nil {
				return nil, err
			}
			*p = c.(prometheus.Counter)
		}
		c, err := reg1(m.lastSeq)
		if err != nil {
			return nil, err
		}
		m.lastSeq = c.(prometheus.Gauge)
		if unreadable, err = reg1(unreadable); err != nil {
			return nil, err
		}
	}
	vec := unreadable.(*prometheus.CounterVec)
	m.unreadable = vec.WithLabelValues(reasonMalformed)
	m.msgIDMismatch = vec.WithLabelValues(reasonMsgIDMismatch)
	return m, nil
}

func (m *metrics) count(k kind) {
	m.lines.Inc()
	switch k {
	case kindUnreadable:
		m.unreadable.Inc()
	case kindMsgIDMismatch:
		m.msgIDMismatch.Inc()
	case kindForeign:
		m.foreign.Inc()
	case kindGap:
		m.gaps.Inc()
	}
}
