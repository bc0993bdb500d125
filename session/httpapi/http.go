package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

// MaxBodySize caps request bodies.
const MaxBodySize = 64 << 10

// Config of the handlers.
type Config struct {
	// Ready reports whether the manager has caught up with the stream.
	Ready func() bool
	// Unwritable, if set, says why the stream does not take logins and
	// refreshes now ("" when it does): /readyz then answers 503 with
	// the reason, while reads (introspection, JWKS) and revocations go
	// on.
	Unwritable func() string
	// Metrics serves /metrics on the admin listener, behind its
	// credential (nil: 404). The public listener has no /metrics.
	Metrics http.Handler
	// Profiling serves Go's profiles (net/http/pprof) under
	// /debug/pprof/ on the admin listener, behind its credential, so an
	// operator can take the profiles a performance report needs.
	Profiling bool
	// AdminCredentials are the bearer credentials the admin API accepts,
	// any one of them. Each has a distinct name (events.ValidActorName),
	// which the facts an admin request causes record as their actor.
	// Without one the admin API refuses every request.
	AdminCredentials []Credential
	// AdminHosts are further names the admin API answers to in the Host
	// header ("name" on the listener's port, or "name:port"), beyond
	// localhost, 127.0.0.1 and [::1] and the address the request came in
	// on, each with the listener's port.
	AdminHosts []string
	// IntrospectTokens are the bearer credentials /introspect accepts
	// (RFC 7662 §2.1), any one of them. Without one /introspect refuses
	// every request.
	IntrospectTokens []string
	// Registerer receives the HTTP request counter (nil: none).
	Registerer prometheus.Registerer
	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For is believed: the client address used for login
	// throttling is then the right-most address in it that is not a
	// trusted proxy. Without it (the default) the peer address is used.
	TrustedProxies []netip.Prefix
	// TracerProvider makes a span of every request to an API route
	// (default: the global provider, a no-op unless the program set
	// one).
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// TracerName names the tracer of this package's spans.
const TracerName = "github.com/sessionbus/sessionbus/session/httpapi"

// Handlers builds the public and the admin handler.
type Handlers struct {
	m             *session.Manager
	cfg           Config
	admin         credentials
	introspectors credentials
	requests      *prometheus.CounterVec
	tracer        trace.Tracer
}

// New returns the handlers of m, or the error of an admin credential
// without a valid, distinct name or of registering the metrics.
func New(m *session.Manager, cfg Config) (*Handlers, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	names := map[string]bool{}
	for _, c := range cfg.AdminCredentials {
		if !events.ValidActorName(c.Name) || names[c.Name] {
			return nil, fmt.Errorf("httpapi: admin credential name %q: not unique, or not 1 to 128 characters of [A-Za-z0-9._-]", c.Name)
		}
		names[c.Name] = true
	}
	var introspectors []Credential
	for _, t := range cfg.IntrospectTokens {
		introspectors = append(introspectors, Credential{Token: t})
	}
	h := &Handlers{m: m, cfg: cfg, admin: newCredentials(cfg.AdminCredentials), introspectors: newCredentials(introspectors), requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessionbus", Name: "http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"}), tracer: cfg.TracerProvider.Tracer(TracerName)}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.requests); err != nil {
			return nil, fmt.Errorf("httpapi: metrics: %w", err)
		}
	}
	return h, nil
}

// jsonFallback answers what mux does not route (404, and 405 with Allow
// for a known path with another method) with the JSON error shape.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}, code: http.StatusNotFound}
		mux.ServeHTTP(rec, r)
		if rec.code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed", 0)
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint", 0)
	})
}

// headerRecorder captures the status and headers of the mux's own 404 and
// 405 answers, dropping their plain-text bodies.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.code = code }

func (h *Handlers) common(mux *http.ServeMux) {
	h.handle(mux, "GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, err := w.Write(h.m.JWKS())
		return err
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !h.cfg.Ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "catching up"})
			return
		}
		if h.cfg.Unwritable != nil {
			if reason := h.cfg.Unwritable(); reason != "" {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not writable", "reason": reason})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

// handle mounts fn, mapping its error to a status, and counts requests by
// route. Each request is a span named after the route, a child of the
// W3C traceparent the request carries; a malformed one is ignored (the
// span starts a new trace).
func (h *Handlers) handle(mux *http.ServeMux, pattern string, fn func(http.ResponseWriter, *http.Request) error) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := h.tracer.Start(ctx, pattern, serverSpan...)
		defer span.End()
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodySize)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		if err := fn(rec, r); err != nil {
			h.fail(rec, r, err)
		}
		h.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
		if span.IsRecording() {
			method, route, _ := strings.Cut(pattern, " ")
			span.SetAttributes(attribute.String("http.request.method", method),
				attribute.String("http.route", route), attribute.Int("http.response.status_code", rec.code))
			if rec.code >= 500 {
				span.SetStatus(codes.Error, http.StatusText(rec.code))
			}
		}
	})
}

// traceContext reads the W3C traceparent and tracestate headers: only
// well-formed ones are taken.
var traceContext = propagation.TraceContext{}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// errTooLarge and errMediaType are HTTP-only input errors.
var (
	errTooLarge  = errors.New("request body too large")
	errMediaType = errors.New("unsupported content type")
)

var codeNames = map[int]string{
	400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
	405: "method_not_allowed", 409: "conflict", 413: "request_too_large", 415: "unsupported_media_type",
	421: "misdirected_request",
	429: "too_many_requests", 500: "internal_error", 503: "unavailable",
}

func (h *Handlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	var code int
	var msg string
	switch {
	case errors.Is(err, errTooLarge):
		code, msg = http.StatusRequestEntityTooLarge, errTooLarge.Error()
	case errors.Is(err, errMediaType):
		code, msg = http.StatusUnsupportedMediaType, err.Error()
	case errors.Is(err, errNoCredential):
		// RFC 6750 §3.1: no error code when no credential was sent.
		w.Header().Set("WWW-Authenticate", "Bearer")
		code, msg = http.StatusUnauthorized, err.Error()
	case errors.Is(err, errBadCredential):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		code, msg = http.StatusUnauthorized, err.Error()
	case errors.Is(err, errBrowser):
		code, msg = http.StatusForbidden, err.Error()
	case errors.Is(err, errMisdirected):
		code, msg = http.StatusMisdirectedRequest, err.Error()
	default:
		code, msg = session.StatusCode(err)
	}
	if code == 500 {
		h.cfg.Logger.Error("request failed", "path", r.URL.Path, "err", err)
	}
	name := codeNames[code]
	switch {
	case errors.Is(err, session.ErrRefreshReuse):
		// RFC 6749 §5.2: the refresh token is no longer valid, and why.
		name, msg = session.OAuthInvalidGrant, strings.TrimPrefix(msg, session.OAuthInvalidGrant+": ")
	case errors.Is(err, session.ErrInvalidToken):
		// RFC 6750: a bearer-token challenge only where a token was refused.
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	writeError(w, code, name, msg, session.RetryAfter(err))
}

func writeError(w http.ResponseWriter, code int, name, msg string, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, code, map[string]string{"error": name, "error_description": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes a JSON body strictly into v (events.DecodeStrict: no
// unknown field, no key twice or in two cases, nothing after the value).
// The body must be sent as application/json: a form or text/plain body,
// which a web page can send anywhere without asking, is refused before it
// is read.
func readJSON(r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%w: send application/json", errMediaType)
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fmt.Errorf("%w: read body: %v", session.ErrInvalidInput, err)
	}
	if err := events.DecodeStrict(b, v); err != nil {
		return fmt.Errorf("%w: body is not the expected JSON: %v", session.ErrInvalidInput, err)
	}
	return nil
}

// readForm parses an application/x-www-form-urlencoded body (RFC 7009,
// RFC 7662).
func readForm(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return fmt.Errorf("%w: send application/x-www-form-urlencoded", errMediaType)
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge
		}
		return fmt.Errorf("%w: %w", session.ErrInvalidInput, err)
	}
	return nil
}

// serverSpan is the route span's option, made once.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
