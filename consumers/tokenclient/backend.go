package tokenclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// Credentials log a user (or a service account) in. They are asked for
// through a CredentialsFunc each time a login is needed and never kept.
type Credentials struct {
	Username string
	Password string
	// ClientID optionally names the calling program in the session.
	ClientID string
}

// LogValue keeps the password out of logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", c.Username), slog.String("client_id", c.ClientID))
}

// Tokens is what a login or a refresh returns.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	TokenType    string        // "Bearer"
	ExpiresIn    time.Duration // the access token's lifetime
	SessionID    string
}

// LogValue keeps the tokens out of logs.
func (t Tokens) LogValue() slog.Value {
	return slog.GroupValue(slog.String("session_id", t.SessionID), slog.Duration("expires_in", t.ExpiresIn))
}

// String keeps the tokens out of fmt output.
func (t Tokens) String() string {
	return fmt.Sprintf("tokenclient.Tokens{SessionID: %q, ExpiresIn: %s, tokens redacted}", t.SessionID, t.ExpiresIn)
}

// GoString keeps the tokens out of %#v.
func (t Tokens) GoString() string { return t.String() }

func (t Tokens) check() error {
	if t.AccessToken == "" || t.RefreshToken == "" || t.ExpiresIn <= 0 {
		return fmt.Errorf("%w: missing token or lifetime", ErrBadReply)
	}
	if t.TokenType != "" && !strings.EqualFold(t.TokenType, "Bearer") {
		return fmt.Errorf("%w: token type %q", ErrBadReply, t.TokenType)
	}
	return nil
}

// Backend is the session manager as the Client sees it. Errors the manager
// answers are *events.CommandError (wrapped in ErrUnauthorized for 401).
type Backend interface {
	Login(ctx context.Context, c Credentials) (Tokens, error)
	Refresh(ctx context.Context, refreshToken string) (Tokens, error)
	Logout(ctx context.Context, refreshToken string) error
}

// NATSBackend talks to the manager with the NATS commands auth.cmd.login,
// auth.cmd.refresh and auth.cmd.logout. source is the ce-source of the
// requests ("" gives /consumers/tokenclient).
func NATSBackend(nc *nats.Conn, source string) Backend {
	if source == "" {
		source = "/consumers/tokenclient"
	}
	return natsBackend{nc: nc, source: source}
}

type natsBackend struct {
	nc     *nats.Conn
	source string
}

func (b natsBackend) Login(ctx context.Context, c Credentials) (Tokens, error) {
	var r events.TokenReply
	err := events.Request(ctx, b.nc, events.SubjectLogin, b.source,
		events.LoginRequest{Username: c.Username, Password: c.Password, ClientID: c.ClientID}, &r)
	return fromReply(r, err)
}

func (b natsBackend) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	var r events.TokenReply
	err := events.Request(ctx, b.nc, events.SubjectRefresh, b.source, events.RefreshRequest{RefreshToken: refreshToken}, &r)
	return fromReply(r, err)
}

func (b natsBackend) Logout(ctx context.Context, refreshToken string) error {
	return commandError(events.Request(ctx, b.nc, events.SubjectLogout, b.source, events.LogoutRequest{RefreshToken: refreshToken}, nil))
}

func fromReply(r events.TokenReply, err error) (Tokens, error) {
	if err != nil {
		return Tokens{}, commandError(err)
	}
	t := Tokens{
		AccessToken: r.AccessToken, RefreshToken: r.RefreshToken, TokenType: r.TokenType,
		ExpiresIn: time.Duration(r.ExpiresIn) * time.Second, SessionID: r.SessionID,
	}
	return t, t.check()
}

// commandError marks a 401 with ErrUnauthorized.
func commandError(err error) error {
	if err != nil && events.ErrorCode(err) == http.StatusUnauthorized {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return err
}

// MaxReplySize caps a reply body read over HTTP.
const MaxReplySize = 64 << 10

// HTTPBackend talks to the manager's HTTP API at baseURL: POST /login,
// /refresh and /logout. A nil client uses one with a 10s timeout.
func HTTPBackend(client *http.Client, baseURL string) (Backend, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: base URL %q is not an http(s) URL", ErrInvalidConfig, baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return httpBackend{client: client, base: strings.TrimSuffix(baseURL, "/")}, nil
}

type httpBackend struct {
	client *http.Client
	base   string
}

// httpTokens is the JSON reply of POST /login and /refresh (contract).
type httpTokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	TokenType    string `json:"tokenType"`
	ExpiresIn    int    `json:"expiresIn"`
	SessionID    string `json:"sessionId"`
}

func (b httpBackend) Login(ctx context.Context, c Credentials) (Tokens, error) {
	return b.tokens(ctx, "/login", struct {
		Username string `json:"username"`
		Password string `json:"password"`
		ClientID string `json:"clientId,omitempty"`
	}{c.Username, c.Password, c.ClientID})
}

func (b httpBackend) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	return b.tokens(ctx, "/refresh", struct {
		Token string `json:"token"`
	}{refreshToken})
}

func (b httpBackend) Logout(ctx context.Context, refreshToken string) error {
	_, err := b.post(ctx, "/logout", struct {
		Token string `json:"token"`
	}{refreshToken})
	return err
}

func (b httpBackend) tokens(ctx context.Context, path string, body any) (Tokens, error) {
	data, err := b.post(ctx, path, body)
	if err != nil {
		return Tokens{}, err
	}
	var r httpTokens
	if err := json.Unmarshal(data, &r); err != nil {
		return Tokens{}, fmt.Errorf("%w: POST %s: %v", ErrBadReply, path, err)
	}
	t := Tokens{
		AccessToken: r.AccessToken, RefreshToken: r.RefreshToken, TokenType: r.TokenType,
		ExpiresIn: time.Duration(r.ExpiresIn) * time.Second, SessionID: r.SessionID,
	}
	return t, t.check()
}

// post sends body as JSON and returns the reply body of a 2xx answer; any
// other answer becomes a *events.CommandError with its status as code.
func (b httpBackend) post(ctx context.Context, path string, body any) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	buf, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, bytes.NewReader(buf))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		// The error names the URL, never the body.
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReplySize+1))
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	if len(data) > MaxReplySize {
		return nil, fmt.Errorf("%w: POST %s: reply larger than %d bytes", ErrBadReply, path, MaxReplySize)
	}
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	ce := &events.CommandError{Code: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	var d struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &d) == nil && d.Error != "" && len(d.Error) < 200 {
		ce.Message = d.Error
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		ce.RetryAfter = time.Duration(s) * time.Second
	}
	return nil, commandError(fmt.Errorf("POST %s: %w", path, ce))
}
