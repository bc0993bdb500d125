package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracingHelp is the part of a command's help about tracing.
const TracingHelp = `Tracing (OpenTelemetry) is off unless the standard OTEL_* variables turn
it on: OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
or OTEL_TRACES_EXPORTER=otlp. Spans go to an OTLP collector over
http/protobuf; OTEL_SERVICE_NAME (default: the program's name),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and the exporter's
OTEL_EXPORTER_OTLP_* settings apply. OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none turns it off.`

// ErrTracingConfig marks OTEL_* settings this program cannot honour.
var ErrTracingConfig = errors.New("tracing")

// TracingOn reads the standard OpenTelemetry variables: whether spans are
// to be exported, and an error for a setting this program does not
// support (it exports OTLP over http/protobuf only).
func TracingOn(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	switch exporter {
	case "none":
		return false, nil
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, nil
		}
	case "otlp":
	default:
		return false, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: only otlp or none is supported", ErrTracingConfig, exporter)
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if p := strings.TrimSpace(protocol); p != "" && p != "http/protobuf" {
		return false, fmt.Errorf("%w: OTLP protocol %q: only http/protobuf is supported (the collector's port 4318)", ErrTracingConfig, p)
	}
	return true, nil
}

// StartTracing returns the tracer provider the OTEL_* variables ask for,
// for the program named service at version, and the function that
// flushes its last spans (for up to 5s) and stops it; with tracing off,
// a nil provider (the components then use the global no-op one) and a
// stop that does nothing.
func StartTracing(ctx context.Context, getenv func(string) string, service, version string, log *slog.Logger) (trace.TracerProvider, func(), error) {
	noStop := func() {}
	on, err := TracingOn(getenv)
	if err != nil || !on {
		return nil, noStop, err
	}
	// The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS,
	// timeout, compression) itself.
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, noStop, fmt.Errorf("%w: OTLP exporter: %w", ErrTracingConfig, err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.version", version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, noStop, fmt.Errorf("%w: resource: %w", ErrTracingConfig, err)
	}
	// The SDK reads OTEL_TRACES_SAMPLER and OTEL_BSP_* itself.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	log.Info("tracing on: exporting spans over OTLP (http/protobuf)")
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: flushing the last spans", "err", err)
		}
	}
	return tp, stop, nil
}
