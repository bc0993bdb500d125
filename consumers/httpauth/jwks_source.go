package httpauth

// Where a KeySet gets the JWK Set: over NATS or over HTTP.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// MaxJWKSSize caps the size of a key set read from either source.
const MaxJWKSSize = 1 << 20

// JWKSSource fetches the manager's JWK Set, as JSON.
type JWKSSource interface {
	FetchJWKS(ctx context.Context) ([]byte, error)
}

// NATSSource fetches the key set with a request to auth.cmd.jwks on nc,
// sending a jwks.requested CloudEvent. source is the ce-source of the
// request ("" gives /consumers/httpauth).
func NATSSource(nc *nats.Conn, source string) JWKSSource {
	if source == "" {
		source = "/consumers/httpauth"
	}
	return natsSource{nc: nc, source: source}
}

type natsSource struct {
	nc     *nats.Conn
	source string
}

func (s natsSource) FetchJWKS(ctx context.Context) ([]byte, error) {
	m, err := events.NewCommand(events.SubjectJWKS, s.source, struct{}{})
	if err != nil {
		return nil, err
	}
	resp, err := s.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", events.SubjectJWKS, err)
	}
	if err := events.ReplyError(resp); err != nil {
		return nil, err
	}
	if len(resp.Data) > MaxJWKSSize {
		return nil, fmt.Errorf("key set of %d bytes is too large", len(resp.Data))
	}
	return resp.Data, nil
}

// HTTPSource fetches the key set with GET <baseURL>/.well-known/jwks.json.
// A nil client uses one with a 10s timeout.
func HTTPSource(client *http.Client, baseURL string) (JWKSSource, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: JWKS base URL %q is not an http(s) URL", ErrInvalidConfig, baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return httpSource{client: client, url: strings.TrimSuffix(baseURL, "/") + "/.well-known/jwks.json"}, nil
}

type httpSource struct {
	client *http.Client
	url    string
}

func (s httpSource) FetchJWKS(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	if len(b) > MaxJWKSSize {
		return nil, fmt.Errorf("GET %s: key set larger than %d bytes", s.url, MaxJWKSSize)
	}
	return b, nil
}
