package gate

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

// Default identity headers.
const (
	DefaultSubjectHeader = "X-Auth-Subject"
	DefaultSessionHeader = "X-Auth-Session"
)

// Config configures a Gate; its zero value is the default.
type Config struct {
	// SubjectHeader carries the token's sub (the user id) on a 200
	// (default X-Auth-Subject).
	SubjectHeader string
	// SessionHeader carries the token's sid on a 200 (default
	// X-Auth-Session).
	SessionHeader string
}

func (c Config) withDefaults() Config {
	if c.SubjectHeader == "" {
		c.SubjectHeader = DefaultSubjectHeader
	}
	if c.SessionHeader == "" {
		c.SessionHeader = DefaultSessionHeader
	}
	return c
}

// reserved are headers an identity header must not replace: they carry
// the credential or shape the answer.
var reserved = []string{"Authorization", "Cache-Control", "Connection", "Content-Length", "Content-Type",
	"Cookie", "Host", "Location", "Retry-After", "Set-Cookie", "Transfer-Encoding", "Www-Authenticate",
	"X-Content-Type-Options"}

// Validate reports every problem with c (after defaults), each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	for _, h := range []string{c.SubjectHeader, c.SessionHeader} {
		switch {
		case !token(h):
			bad("%q is not a header name", h)
		case slices.Contains(reserved, http.CanonicalHeaderKey(h)):
			bad("%q may not carry the identity", h)
		}
	}
	if http.CanonicalHeaderKey(c.SubjectHeader) == http.CanonicalHeaderKey(c.SessionHeader) {
		bad("subject and session headers are both %q", c.SubjectHeader)
	}
	return errors.Join(errs...)
}

// Gate is the forward-auth handler. It is safe for concurrent use.
type Gate struct {
	h                http.Handler
	subject, session string
}

// New returns a Gate that decides with auth (httpauth.NewService gives
// one: the deny-list and keys of a protected service). It returns
// ErrInvalidConfig when auth is nil or cfg is invalid.
func New(auth *httpauth.Authenticator, cfg Config) (*Gate, error) {
	if auth == nil {
		return nil, fmt.Errorf("%w: no authenticator", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Gate{subject: http.CanonicalHeaderKey(cfg.SubjectHeader), session: http.CanonicalHeaderKey(cfg.SessionHeader)}
	// The middleware decides and answers every refusal (401, 503) in the
	// shape services answer them; allow only adds the identity.
	g.h = auth.Middleware(http.HandlerFunc(g.allow))
	return g, nil
}

// ServeHTTP answers whatever the path and method: 200 with the identity
// headers, 401 or 503 (see the package documentation).
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.h.ServeHTTP(w, r) }

func (g *Gate) allow(w http.ResponseWriter, r *http.Request) {
	c, _ := httpauth.ClaimsFrom(r.Context())
	h := w.Header()
	// Set, not Add: these are the only values the gateway may forward.
	h[g.subject] = []string{c.Subject}
	h[g.session] = []string{c.SessionID}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(http.StatusOK)
}

// token reports whether s is an RFC 9110 token, as a header name must be.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
