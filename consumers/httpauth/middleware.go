package httpauth

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Middleware wraps next: a request passes with a valid, unrevoked bearer
// token, its claims in the context (ClaimsFrom). Otherwise it gets 401 with
// a WWW-Authenticate challenge (RFC 6750): a bare "Bearer" when it carried
// no bearer token, error="invalid_token" for any token that failed; or 503
// with Retry-After when the deny-list may not be relied on (not caught up,
// or stale under the fail-closed policy). The body is JSON like the
// manager's errors, {"error": "<code>", "error_description": "…"}, and
// says no more than the status: never why a token failed.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := a.bearer(r)
		var c *Claims
		if err == nil {
			c, err = a.Authenticate(r.Context(), token)
		}
		if err != nil {
			a.refuse(w, err)
			return
		}
		a.m.requests[resultOK].Inc()
		next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), c)))
	})
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
	status, body := http.StatusUnauthorized, bodyInvalid
	switch {
	case errors.Is(err, ErrNoToken):
		body = bodyNoToken
		a.m.requests[resultNoToken].Inc()
		if realm == "" {
			h.Set("WWW-Authenticate", "Bearer")
		} else {
			h.Set("WWW-Authenticate", "Bearer"+realm)
		}
	case errors.Is(err, ErrUnavailable):
		a.m.requests[resultUnavailable].Inc()
		if now := a.cfg.Now().UnixNano(); now-a.lastUnavailableLog.Load() > int64(10*time.Second) {
			a.lastUnavailableLog.Store(now)
			a.log.Warn("refusing requests: deny-list not usable", "err", err)
		}
		status, body = http.StatusServiceUnavailable, bodyUnavailable
		h.Set("Retry-After", strconv.Itoa(RetryAfter))
	default:
		switch {
		case errors.Is(err, ErrRevoked):
			a.m.requests[resultRevoked].Inc()
		case errors.Is(err, ErrUnknownKey):
			a.m.requests[resultUnknownKey].Inc()
		case errors.Is(err, ErrMalformed):
			a.m.requests[resultMalformed].Inc()
		default:
			a.m.requests[resultInvalid].Inc()
		}
		a.log.Debug("token refused", "err", err)
		if realm != "" {
			realm += ","
		}
		h.Set("WWW-Authenticate", `Bearer`+realm+` error="invalid_token"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
