// Package promreg registers a component's Prometheus collectors as one:
// all of them or, on the first conflict, none, so that a component that
// fails to start leaves the registry as it was.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterAll registers cs on reg, or none of them if any fails; the
// error joins every failure.
func RegisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	var errs []error
	var done []prometheus.Collector
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, c)
	}
	if err := errors.Join(errs...); err != nil {
		for _, c := range done {
			reg.Unregister(c)
		}
		return err
	}
	return nil
}
