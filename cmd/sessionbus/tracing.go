package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracingHelp is the part of serve's help about tracing.
const tracingHelp = `Tracing (OpenTelemetry) is off unless the standard OTEL_* variables turn
it on: OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
or OTEL_TRACES_EXPORTER=otlp. Spans go to an OTLP collector over
http/protobuf; OTEL_SERVICE_NAME (default sessionbus),
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and the exporter's
OTEL_EXPORTER_OTLP_* settings apply. OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none turns it off.`

// errTracingConfig marks OTEL_* settings this program cannot honour.
var errTracingConfig = errors.New("tracing")

// tracingOn reads the standard OpenTelemetry variables: whether spans are
// to be exported, and an error for a setting this program does not
// support (it exports OTLP over http/protobuf only).
func tracingOn(getenv func(string) string) (bool, error) {
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
		return false, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: only otlp or none is supported", errTracingConfig, exporter)
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if p := strings.TrimSpace(protocol); p != "" && p != "http/protobuf" {
		return false, fmt.Errorf("%w: OTLP protocol %q: only http/protobuf is supported (the collector's port 4318)", errTracingConfig, p)
	}
	return true, nil
}

// startTracing returns the tracer provider the OTEL_* variables ask for,
// and the function that flushes and stops it; with tracing off, a nil
// provider (the components then use the global no-op one) and a no-op
// stop.
func startTracing(ctx context.Context, getenv func(string) string, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	noStop := func(context.Context) error { return nil }
	on, err := tracingOn(getenv)
	if err != nil || !on {
		return nil, noStop, err
	}
	// The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, TLS,
	// timeout, compression) itself.
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, noStop, fmt.Errorf("%w: OTLP exporter: %w", errTracingConfig, err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "sessionbus"), attribute.String("service.version", version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, noStop, fmt.Errorf("%w: resource: %w", errTracingConfig, err)
	}
	// The SDK reads OTEL_TRACES_SAMPLER and OTEL_BSP_* itself.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	log.Info("tracing on: exporting spans over OTLP (http/protobuf)")
	return tp, tp.Shutdown, nil
}
