package httpauth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Middleware wraps next: a request passes with a valid, unrevoked bearer
// token, its claims in the context (ClaimsFrom). Otherwise it gets 401 with
// a WWW-Authenticate challenge (RFC 6750): a bare "Bearer" when it carried
// no bearer token, error="invalid_token" for any token that failed; or 503
// with Retry-After when the deny-list may not be relied on (not caught up,
// or stale under the fail-closed policy). The body is JSON like the
// manager's errors, {"error": "<code>", "error_description": "…"}, and
// says no more than the status: never why a token failed.
//
// Each request is a span, "httpauth authenticate", a child of the span
// in the request's context or else of the W3C traceparent header it
// carries (a malformed one is ignored); the span records the outcome
// (ok, revoked, …) and the session id, never the token.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		span := noSpan
		if a.tracing() {
			if !trace.SpanContextFromContext(ctx).IsValid() {
				ctx = traceContext.Extract(ctx, headerCarrier(r.Header))
			}
			ctx, span = a.tracer.Start(ctx, "httpauth authenticate", serverSpan...)
			defer span.End()
		}
		token, err := a.bearer(r)
		var c *Claims
		if err == nil {
			c, err = a.Authenticate(ctx, token)
		}
		if err != nil {
			a.refuse(w, err)
			traceOutcome(span, err, c)
			return
		}
		a.m.requests[resultOK].Inc()
		traceOutcome(span, nil, c)
		next.ServeHTTP(w, r.WithContext(ContextWithClaims(ctx, c)))
	})
}

// traceContext reads the W3C traceparent and tracestate headers: only
// well-formed ones are taken.
var traceContext = propagation.TraceContext{}

var (
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	noSpan     = trace.SpanFromContext(context.Background())
	// defaultProvider is the global tracer provider as the process
	// started: a no-op until a program sets one.
	defaultProvider = otel.GetTracerProvider()
)

// tracing reports whether spans are wanted: a provider was configured, or
// the program has set a global one. Otherwise the middleware makes no
// span at all, so that with tracing off it costs nothing (not even the
// no-op span's context).
func (a *Authenticator) tracing() bool {
	return a.cfg.TracerProvider != defaultProvider || otel.GetTracerProvider() != defaultProvider
}

// headerCarrier reads the W3C headers by their canonical names, without
// the allocation of canonicalising them on every request.
type headerCarrier http.Header

func (h headerCarrier) Get(k string) string {
	var vs []string
	switch k {
	case "traceparent":
		vs = h["Traceparent"]
	case "tracestate":
		vs = h["Tracestate"]
	default:
		vs = http.Header(h).Values(k)
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (h headerCarrier) Set(k, v string) { http.Header(h).Set(k, v) }
func (h headerCarrier) Keys() []string  { return propagation.HeaderCarrier(h).Keys() }

// traceOutcome records on span what the middleware decided: the result
// as its metric names it and, for a verified token, the session. Never
// the token.
func traceOutcome(span trace.Span, err error, c *Claims) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("sessionbus.auth.result", resultOf(err)))
	if c != nil {
		span.SetAttributes(attribute.String("sessionbus.session_id", c.SessionID))
	}
}

// bearer extracts the token of the one Authorization header with the
// Bearer scheme (RFC 6750 §2.1). A request with no such header has no
// token; a header that cannot hold a token is malformed.
func (a *Authenticator) bearer(r *http.Request) (string, error) {
	vs := r.Header.Values("Authorization")
	switch {
	case len(vs) == 0:
		return "", ErrNoToken
	case len(vs) > 1:
		return "", ErrMalformed
	}
	v := vs[0]
	if len(v) > a.cfg.MaxTokenBytes+len("Bearer ")+8 {
		return "", ErrMalformed
	}
	scheme, token, ok := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		// Another scheme (Basic, …) carries no bearer token.
		return "", ErrNoToken
	}
	token = strings.TrimLeft(token, " ")
	if !ok || token == "" {
		return "", ErrMalformed
	}
	// The characters are checked by Authenticate before parsing; a token in
	// the cache was checked when it was verified.
	return token, nil
}

// b64token reports whether s matches RFC 6750's
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func b64token(s string) bool {
	end := len(s)
	for end > 0 && s[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		if !b64tokenChar[s[i]] {
			return false
		}
	}
	return true
}

var b64tokenChar = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// RetryAfter is the Retry-After, in seconds, of a 503 answer.
const RetryAfter = 2

// The bodies of the answers: the same for every refused token, so that
// none tells why.
var (
	bodyNoToken     = []byte(`{"error":"unauthorized","error_description":"bearer token required"}` + "\n")
	bodyInvalid     = []byte(`{"error":"unauthorized","error_description":"invalid token"}` + "\n")
	bodyUnavailable = []byte(`{"error":"unavailable","error_description":"revocations are not known yet: try again"}` + "\n")
)

func (a *Authenticator) refuse(w http.ResponseWriter, err error) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	realm := ""
	if a.cfg.Realm != "" {
		realm = ` realm="` + strings.ReplaceAll(a.cfg.Realm, `"`, `'`) + `"`
	}
	a.m.requests[resultOf(err)].Inc()
	status, body := http.StatusUnauthorized, bodyInvalid
	switch {
	case errors.Is(err, ErrNoToken):
		body = bodyNoToken
		if realm == "" {
			h.Set("WWW-Authenticate", "Bearer")
		} else {
			h.Set("WWW-Authenticate", "Bearer"+realm)
		}
	case errors.Is(err, ErrUnavailable):
		if now := a.cfg.Now().UnixNano(); now-a.lastUnavailableLog.Load() > int64(10*time.Second) {
			a.lastUnavailableLog.Store(now)
			a.log.Warn("refusing requests: deny-list not usable", "err", err)
		}
		status, body = http.StatusServiceUnavailable, bodyUnavailable
		h.Set("Retry-After", strconv.Itoa(RetryAfter))
	default:
		a.log.Debug("token refused", "err", err)
		if realm != "" {
			realm += ","
		}
		h.Set("WWW-Authenticate", `Bearer`+realm+` error="invalid_token"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// resultOf names the outcome of a request as the requests metric and
// the span label it.
func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrNoToken):
		return resultNoToken
	case errors.Is(err, ErrUnavailable):
		return resultUnavailable
	case errors.Is(err, ErrRevoked):
		return resultRevoked
	case errors.Is(err, ErrUnknownKey):
		return resultUnknownKey
	case errors.Is(err, ErrMalformed):
		return resultMalformed
	}
	return resultInvalid
}
