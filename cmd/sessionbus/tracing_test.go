package main

import (
	"errors"
	"os"
	"testing"

	"github.com/sessionbus/sessionbus/internal/cli"
)

// serve refuses OTEL settings it cannot honour before it creates
// anything.
func TestServeRefusesUnsupportedTracing(t *testing.T) {
	dir := t.TempDir() + "/data"
	t.Setenv("OTEL_TRACES_EXPORTER", "jaeger")
	_, err := execute(t, "serve", "--data-dir", dir)
	if err == nil || !errors.Is(err, cli.ErrTracingConfig) {
		t.Fatalf("serve with OTEL_TRACES_EXPORTER=jaeger: %v", err)
	}
	if _, serr := os.Stat(dir); serr == nil {
		t.Error("serve created the data dir before refusing the tracing settings")
	}
}
