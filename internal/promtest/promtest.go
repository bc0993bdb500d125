// Package promtest reads metrics back in tests: the value a test asserts,
// from the registry the code under test registered them in.
package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value returns the value of the gauge or counter name in g, of its
// series with a label whose value is label (any series when label is
// ""). A metric that is not there fails the test.
func Value(t testing.TB, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	v, ok := Find(t, g, name, label)
	if !ok {
		t.Fatalf("metric %s{%s} not found", name, label)
	}
	return v
}

// Find is Value for a series that may not exist yet (a counter vector's
// series appear with their first increment): ok is false then.
func Find(t testing.TB, g prometheus.Gatherer, name, label string) (v float64, ok bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabelValue(m, label) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

func hasLabelValue(m *dto.Metric, value string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetValue() == value {
			return true
		}
	}
	return false
}
