package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
)

// Errors of the credential and browser checks (HTTP only).
var (
	errNoCredential  = errors.New("credential required")
	errBadCredential = errors.New("invalid credential")
	errBrowser       = errors.New("browser requests are not accepted here")
	errMisdirected   = errors.New("this listener does not serve that host")
)

// Credential is a named bearer credential. Its Name is what facts and
// logs record as the actor of an admin request (events.ActorAdmin); its
// Token is only ever compared, never recorded.
type Credential struct {
	Name  string
	Token string
}

// credentials is a set of bearer credentials, kept as SHA-256 digests so
// that every comparison is of equal length and in constant time.
type credentials []credential

type credential struct {
	name   string
	digest [sha256.Size]byte
}

func newCredentials(cs []Credential) credentials {
	var c credentials
	for _, t := range cs {
		if t.Token != "" {
			c = append(c, credential{name: t.Name, digest: sha256.Sum256([]byte(t.Token))})
		}
	}
	return c
}

// check returns the name of the credential r carries as its bearer
// token, errNoCredential if it carries none, errBadCredential if it is
// none of c. Every configured credential is compared, whichever matches.
// An empty set accepts nothing.
func (c credentials) check(r *http.Request) (string, error) {
	token, ok := bearer(r)
	if !ok {
		return "", errNoCredential
	}
	d := sha256.Sum256([]byte(token))
	match, name := 0, ""
	for i := range c {
		eq := subtle.ConstantTimeCompare(d[:], c[i].digest[:])
		match |= eq
		if eq == 1 {
			name = c[i].name // tells only which credential it was, to its holder
		}
	}
	if match != 1 {
		return "", errBadCredential
	}
	return name, nil
}

// bearer returns the token of a single "Authorization: Bearer <token>"
// header (RFC 6750 §2.1; the scheme is case-insensitive).
func bearer(r *http.Request) (string, bool) {
	vs := r.Header.Values("Authorization")
	if len(vs) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(vs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// adminGuard lets through only requests that no browser sent, addressed
// to this listener by a name no other site can take, with the admin
// credential — in that order, so a refused request reads no body and
// changes nothing.
func (h *Handlers) adminGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		var name string
		switch {
		case fromBrowser(r):
			err = errBrowser
		case !h.adminHost(r):
			err = errMisdirected
		default:
			name, err = h.admin.check(r)
		}
		if err != nil {
			rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
			h.fail(rec, r, err)
			h.requests.WithLabelValues("admin", strconv.Itoa(rec.code)).Inc()
			return
		}
		// The credential that matched is the actor of what the request
		// changes, whatever its body says.
		actor := events.Actor{Kind: events.ActorAdmin, Name: name}
		next.ServeHTTP(w, r.WithContext(session.WithActor(r.Context(), actor)))
	})
}

// fromBrowser reports a request a browser made: browsers send Origin on
// every cross-origin and every non-GET request, and Sec-Fetch-Site on
// every request to a trustworthy origin such as localhost (a plain-HTTP
// name like a rebound evil.example gets neither on a simple GET, and is
// refused by its Host). No admin client sends either.
func fromBrowser(r *http.Request) bool {
	return len(r.Header.Values("Origin")) > 0 || len(r.Header.Values("Sec-Fetch-Site")) > 0
}

// adminHost reports whether r's Host names this listener: a loopback
// name (localhost, 127.0.0.1, [::1]) or the address the connection came
// in on, with the listener's port, or one of Config.AdminHosts. A name
// under someone else's control (DNS rebinding: evil.example resolving to
// 127.0.0.1) is refused.
func (h *Handlers) adminHost(r *http.Request) bool {
	host, port := splitHost(r.Host)
	if host == "" {
		return false
	}
	var localIP, localPort string
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ip, p, err := net.SplitHostPort(a.String()); err == nil {
			localIP, localPort = strings.ToLower(ip), p
		}
	}
	if localPort != "" && port == localPort {
		switch host {
		case "localhost", "127.0.0.1", "::1", localIP:
			return true
		}
	}
	for _, a := range h.cfg.AdminHosts {
		ah, ap := splitHost(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			ap = localPort // a name without a port: on the listener's port
		}
		if ah != "" && ah == host && ap == port {
			return true
		}
	}
	return false
}

// splitHost splits a Host header into a lower-case host name without
// brackets and a port (80 when absent: the admin listener speaks plain
// HTTP).
func splitHost(hostport string) (host, port string) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		h, p = hostport, "80"
	}
	h = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	if strings.ContainsAny(h, "[]/ ") {
		return "", ""
	}
	return h, p
}
