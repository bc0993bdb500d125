package tokenclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/consumers/tokenclient"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/fakeclock"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/poll"
)

var goodCreds = tokenclient.Credentials{Username: "svc-orders", Password: "correct horse"}

type fixture struct {
	srv    *natstest.Server
	as     *authServer
	client *tokenclient.Client
	clk    *fakeclock.Clock // the client's clock, unless the test gave one
	creds  atomic.Int64     // CredentialsFunc calls
}

func backends(t *testing.T, srv *natstest.Server, as *authServer) map[string]tokenclient.Backend {
	t.Helper()
	hb, err := tokenclient.HTTPBackend(nil, as.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]tokenclient.Backend{
		"nats": tokenclient.NATSBackend(srv.ConnectService(nats.Timeout(10*time.Second)), ""),
		"http": hb,
	}
}

// eachBackend runs fn against a fresh stand-in manager once over NATS and
// once over HTTP. The client runs on f.clk unless cfg has a clock.
func eachBackend(t *testing.T, ttl time.Duration, cfg tokenclient.Config, fn func(t *testing.T, f *fixture)) {
	for _, name := range []string{"nats", "http"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &fixture{srv: natstest.Start(t), clk: fakeclock.New(time.Now())}
			f.as = newAuthServer(t, f.srv, ttl)
			c := cfg
			c.Backend = backends(t, f.srv, f.as)[name]
			if c.Now == nil {
				c.Now = f.clk.Now
			}
			if c.Credentials == nil {
				c.Credentials = func(context.Context) (tokenclient.Credentials, error) {
					f.creds.Add(1)
					return goodCreds, nil
				}
			}
			var err error
			if f.client, err = tokenclient.New(c); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.client.Close)
			fn(t, f)
		})
	}
}

func token(t *testing.T, c *tokenclient.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLogsInOnceAndReusesTheToken(t *testing.T) {
	eachBackend(t, time.Minute, tokenclient.Config{}, func(t *testing.T, f *fixture) {
		if f.client.SessionID() != "" {
			t.Fatal("session before the first token")
		}
		tok := token(t, f.client)
		for range 10 {
			if got := token(t, f.client); got != tok {
				t.Fatal("token changed without need")
			}
		}
		if f.as.logins.Load() != 1 || f.as.refreshes.Load() != 0 || f.creds.Load() != 1 {
			t.Fatalf("logins %d refreshes %d creds %d", f.as.logins.Load(), f.as.refreshes.Load(), f.creds.Load())
		}
		if sid, ok := f.as.valid(tok); !ok || sid != f.client.SessionID() {
			t.Fatalf("token not valid for session %s", f.client.SessionID())
		}
	})
}

func TestRefreshesBeforeExpiryFollowingRotation(t *testing.T) {
	t.Parallel()
	// A 2s token, refreshed when less than 1s remains (half the lifetime,
	// since RefreshBefore is longer), in the background.
	eachBackend(t, 2*time.Second, tokenclient.Config{RefreshBefore: 10 * time.Second}, func(t *testing.T, f *fixture) {
		first := token(t, f.client)
		sid := f.client.SessionID()
		f.clk.Advance(1100 * time.Millisecond)
		// Still the current token, while it refreshes.
		if got := token(t, f.client); got != first {
			t.Fatal("a caller waited for the refresh")
		}
		second := eventuallyNewToken(t, f.client, first)
		f.clk.Advance(1100 * time.Millisecond)
		token(t, f.client)
		third := eventuallyNewToken(t, f.client, second)
		// Each refresh presented the newest refresh token: a rotated one
		// would have been reuse, ending the session.
		if _, ok := f.as.valid(third); !ok || f.client.SessionID() != sid {
			t.Fatalf("session changed or ended: %s → %s", sid, f.client.SessionID())
		}
		if f.as.logins.Load() != 1 || f.as.refreshes.Load() != 2 {
			t.Fatalf("logins %d refreshes %d", f.as.logins.Load(), f.as.refreshes.Load())
		}
	})
}

// eventuallyNewToken polls Token until it differs from old.
func eventuallyNewToken(t *testing.T, c *tokenclient.Client, old string) string {
	t.Helper()
	var tok string
	poll.Until(t, "a renewed token", func() bool { tok = token(t, c); return tok != old })
	return tok
}

func TestOneRefreshForManyGoroutines(t *testing.T) {
	t.Parallel()
	eachBackend(t, 2*time.Second, tokenclient.Config{}, func(t *testing.T, f *fixture) {
		first := token(t, f.client)
		f.clk.Advance(1100 * time.Millisecond)
		// Refresh time, the token still usable: nobody waits for the
		// refresh (held back until all 50 have their token), one refresh.
		release := f.as.holdRefreshes()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if got := token(t, f.client); got != first {
					t.Error("not the current token")
				}
			})
		}
		wg.Wait()
		release()
		second := eventuallyNewToken(t, f.client, first)
		if n := f.as.refreshes.Load(); n != 1 {
			t.Fatalf("%d refreshes, want 1", n)
		}
		// Expired: everybody waits for the same one refresh, held back
		// until all 50 wait for it.
		f.clk.Advance(2100 * time.Millisecond)
		release = f.as.holdRefreshes()
		got := make([]string, 50)
		for i := range got {
			wg.Go(func() { got[i] = token(t, f.client) })
		}
		poll.Until(t, "50 callers waiting", func() bool { return poll.GoroutinesIn("tokenclient.(*Client).Token") == 50 })
		release()
		wg.Wait()
		for _, g := range got {
			if g == second || g != got[0] {
				t.Fatal("goroutines got different or expired tokens")
			}
		}
		if n := f.as.refreshes.Load(); n != 2 {
			t.Fatalf("%d refreshes, want 2", n)
		}
	})
}

func TestLogsInAgainWhenTheSessionWasRevoked(t *testing.T) {
	t.Parallel()
	eachBackend(t, 2*time.Second, tokenclient.Config{}, func(t *testing.T, f *fixture) {
		first := token(t, f.client)
		sid := f.client.SessionID()
		f.as.revoke(sid)
		f.clk.Advance(1100 * time.Millisecond) // refresh time: answered 401
		token(t, f.client)
		tok := eventuallyNewToken(t, f.client, first)
		if f.client.SessionID() == sid {
			t.Fatal("still the revoked session")
		}
		if _, ok := f.as.valid(tok); !ok {
			t.Fatal("new token not valid")
		}
		if f.creds.Load() != 2 || f.as.logins.Load() != 2 {
			t.Fatalf("creds %d logins %d, want 2 and 2", f.creds.Load(), f.as.logins.Load())
		}
	})
}

func TestBadCredentials(t *testing.T) {
	eachBackend(t, time.Minute, tokenclient.Config{
		Credentials: func(context.Context) (tokenclient.Credentials, error) {
			return tokenclient.Credentials{Username: "svc-orders", Password: "wrong"}, nil
		},
	}, func(t *testing.T, f *fixture) {
		_, err := f.client.Token(context.Background())
		if !errors.Is(err, tokenclient.ErrUnauthorized) || events.ErrorCode(err) != http.StatusUnauthorized {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Fatal("the password is in the error")
		}
	})
}

func TestCredentialsError(t *testing.T) {
	vault := errors.New("vault sealed")
	eachBackend(t, time.Minute, tokenclient.Config{
		Credentials: func(context.Context) (tokenclient.Credentials, error) { return tokenclient.Credentials{}, vault },
	}, func(t *testing.T, f *fixture) {
		if _, err := f.client.Token(context.Background()); !errors.Is(err, vault) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestManagerDownKeepsTheCurrentToken(t *testing.T) {
	t.Parallel()
	eachBackend(t, 2*time.Second, tokenclient.Config{}, func(t *testing.T, f *fixture) {
		first := token(t, f.client)
		f.clk.Advance(1100 * time.Millisecond)
		f.as.down.Store(true)
		// Refresh fails with 503: the token has not expired, keep it.
		if got := token(t, f.client); got != first {
			t.Fatal("token changed while the manager is down")
		}
		poll.Until(t, "the failed refresh to end", func() bool {
			return f.as.refreshes.Load() == 1 && poll.GoroutinesIn("tokenclient.(*Client).renew") == 0
		})
		// No new attempt for every call: the failure backs off (at least
		// half a second for the first failure).
		for range 20 {
			token(t, f.client)
		}
		f.clk.Advance(400 * time.Millisecond)
		for range 20 {
			token(t, f.client)
		}
		if n := f.as.refreshes.Load(); n != 1 {
			t.Fatalf("%d refreshes during the back-off", n-1)
		}
		f.clk.Advance(time.Second) // past the token's expiry
		_, err := f.client.Token(context.Background())
		if err == nil || events.ErrorCode(err) != http.StatusServiceUnavailable {
			t.Fatalf("after expiry: err = %v, want 503", err)
		}
		var ce *events.CommandError
		if !errors.As(err, &ce) || ce.RetryAfter != time.Second {
			t.Fatalf("RetryAfter not passed on: %v", err)
		}
		f.as.down.Store(false)
		if _, ok := f.as.valid(token(t, f.client)); !ok {
			t.Fatal("no valid token after the manager came back")
		}
	})
}

func TestNoManagerAtAll(t *testing.T) {
	srv := natstest.Start(t)
	c, err := tokenclient.New(tokenclient.Config{
		Backend:        tokenclient.NATSBackend(srv.ConnectService(), ""),
		Credentials:    func(context.Context) (tokenclient.Credentials, error) { return goodCreds, nil },
		RequestTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Token(context.Background()); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("err = %v, want no responders", err)
	}
}

func TestTransportAddsTheTokenAndRetriesOnce(t *testing.T) {
	// A real clock: forced refreshes are 1ns apart.
	eachBackend(t, time.Minute, tokenclient.Config{MinRefreshInterval: time.Nanosecond, Now: time.Now}, func(t *testing.T, f *fixture) {
		hc := f.client.HTTPClient(nil)
		post := func(body io.Reader) (*http.Response, string) {
			t.Helper()
			req, err := http.NewRequest(http.MethodPost, f.as.http.URL+"/resource", body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if req.Header.Get("Authorization") != "" {
				t.Fatal("the caller's request was modified")
			}
			return resp, string(b)
		}
		resp, body := post(strings.NewReader("order 1"))
		if resp.StatusCode != http.StatusOK || body != "order 1" {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		// The session is revoked: the service answers 401, the transport
		// refreshes (401 too), logs in again and replays the body.
		f.as.revoke(resp.Header.Get("X-Session"))
		resp, body = post(bytes.NewReader([]byte("order 2")))
		if resp.StatusCode != http.StatusOK || body != "order 2" {
			t.Fatalf("after revocation: status %d body %q", resp.StatusCode, body)
		}
		if f.as.logins.Load() != 2 {
			t.Fatalf("logins %d, want 2", f.as.logins.Load())
		}
		// A body that cannot be replayed is not retried…
		f.as.revoke(resp.Header.Get("X-Session"))
		resp, _ = post(io.NopCloser(strings.NewReader("order 3")))
		if resp.StatusCode != http.StatusUnauthorized || f.as.logins.Load() != 2 {
			t.Fatalf("unreplayable body: status %d logins %d", resp.StatusCode, f.as.logins.Load())
		}
		// … but the next request has a new token.
		req, _ := http.NewRequest(http.MethodGet, f.as.http.URL+"/resource", nil)
		r, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK || f.as.logins.Load() != 3 {
			t.Fatalf("GET: status %d logins %d", r.StatusCode, f.as.logins.Load())
		}
		// No body: retried.
		f.as.revoke(r.Header.Get("X-Session"))
		req, _ = http.NewRequest(http.MethodGet, f.as.http.URL+"/resource", nil)
		if r, err = hc.Do(req); err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK || f.as.logins.Load() != 4 {
			t.Fatalf("GET after revocation: status %d logins %d", r.StatusCode, f.as.logins.Load())
		}
	})
}

func TestTransportRetriesAtMostOnce(t *testing.T) {
	srv := natstest.Start(t)
	as := newAuthServer(t, srv, time.Minute)
	c, err := tokenclient.New(tokenclient.Config{
		Backend:     tokenclient.NATSBackend(srv.ConnectService(), ""),
		Credentials: func(context.Context) (tokenclient.Credentials, error) { return goodCreds, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var calls atomic.Int64
	var seen sync.Map
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		seen.Store(r.Header.Get("Authorization"), true)
		w.WriteHeader(http.StatusUnauthorized)
	})
	rt := c.Transport(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		rec := newRecorder()
		refuse.ServeHTTP(rec, r)
		return rec.result(r), nil
	}))
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodGet, "http://service.invalid/x", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if i == 0 && calls.Load() != 2 {
			t.Fatalf("first request: %d calls, want 2 (one retry)", calls.Load())
		}
	}
	// Forced refreshes are spaced (MinRefreshInterval 1s): the two later
	// requests did not refresh again, so they were not retried.
	if calls.Load() != 4 || as.refreshes.Load() != 1 {
		t.Fatalf("calls %d refreshes %d, want 4 and 1", calls.Load(), as.refreshes.Load())
	}
}

func TestLogout(t *testing.T) {
	eachBackend(t, time.Minute, tokenclient.Config{}, func(t *testing.T, f *fixture) {
		tok := token(t, f.client)
		if err := f.client.Logout(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.as.valid(tok); ok {
			t.Fatal("token valid after logout")
		}
		if f.client.SessionID() != "" {
			t.Fatal("session kept after logout")
		}
		if err := f.client.Logout(context.Background()); err != nil || f.as.logouts.Load() != 1 {
			t.Fatalf("second logout: %v, %d logouts", err, f.as.logouts.Load())
		}
		token(t, f.client)
		if f.as.logins.Load() != 2 {
			t.Fatal("no new login after logout")
		}
	})
}

func TestCloseStopsARenewalInFlight(t *testing.T) {
	srv := natstest.Start(t)
	as := newAuthServer(t, srv, time.Minute)
	block := make(chan struct{})
	c, err := tokenclient.New(tokenclient.Config{
		Backend: tokenclient.NATSBackend(srv.ConnectService(), ""),
		Credentials: func(ctx context.Context) (tokenclient.Credentials, error) {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return goodCreds, ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the renewal")
	}
	if _, err := c.Token(context.Background()); !errors.Is(err, tokenclient.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if as.logins.Load() != 0 {
		t.Fatal("logged in after Close")
	}
}

func TestSecretsStayOutOfOutput(t *testing.T) {
	tok := tokenclient.Tokens{AccessToken: "at-secret", RefreshToken: "rt-secret", SessionID: "S1", ExpiresIn: time.Minute}
	creds := tokenclient.Credentials{Username: "svc", Password: "pw-secret"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "tokens", tok, "creds", creds)
	out := buf.String() + fmt.Sprint(tok) + fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok)
	for _, s := range []string{"at-secret", "rt-secret", "pw-secret"} {
		if strings.Contains(out, s) {
			t.Fatalf("%s in output: %s", s, out)
		}
	}
	if !strings.Contains(out, "S1") || !strings.Contains(out, "svc") {
		t.Fatalf("useful fields missing: %s", out)
	}
}

func TestHTTPBackendAnswers(t *testing.T) {
	cases := []struct {
		name     string
		status   int
		header   map[string]string
		body     string
		wantErr  error
		wantCode int
	}{
		{"throttled", http.StatusTooManyRequests, map[string]string{"Retry-After": "3"}, `{"error":"slow down"}`, nil, 429},
		{"server error", http.StatusInternalServerError, nil, "oops", nil, 500},
		{"unauthorized", http.StatusUnauthorized, nil, `{"error":"invalid credentials"}`, tokenclient.ErrUnauthorized, 401},
		{"not json", http.StatusOK, nil, "<html>", tokenclient.ErrBadReply, 0},
		{"no tokens", http.StatusOK, nil, `{"accessToken":"","expiresIn":60}`, tokenclient.ErrBadReply, 0},
		{"wrong type", http.StatusOK, nil, `{"accessToken":"a","refreshToken":"r","tokenType":"MAC","expiresIn":60}`, tokenclient.ErrBadReply, 0},
		{"too large", http.StatusOK, nil, `{"x":"` + strings.Repeat("a", tokenclient.MaxReplySize) + `"}`, tokenclient.ErrBadReply, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newStaticServer(t, tc.status, tc.header, tc.body)
			b, err := tokenclient.HTTPBackend(nil, srv)
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Login(context.Background(), goodCreds)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if events.ErrorCode(err) != tc.wantCode {
				t.Fatalf("code %d, want %d (%v)", events.ErrorCode(err), tc.wantCode, err)
			}
			if tc.status == http.StatusTooManyRequests {
				var ce *events.CommandError
				if !errors.As(err, &ce) || ce.RetryAfter != 3*time.Second {
					t.Fatalf("RetryAfter: %v", err)
				}
			}
		})
	}
	if _, err := tokenclient.HTTPBackend(nil, "nats://x"); !errors.Is(err, tokenclient.ErrInvalidConfig) {
		t.Fatalf("bad base URL: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	creds := func(context.Context) (tokenclient.Credentials, error) { return goodCreds, nil }
	b := tokenclient.NATSBackend(nil, "")
	for _, tc := range []struct {
		name    string
		cfg     tokenclient.Config
		wantErr bool
	}{
		{"ok", tokenclient.Config{Backend: b, Credentials: creds}, false},
		{"no backend", tokenclient.Config{Credentials: creds}, true},
		{"no credentials", tokenclient.Config{Backend: b}, true},
		{"negative", tokenclient.Config{Backend: b, Credentials: creds, RefreshBefore: -time.Second}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tokenclient.New(tc.cfg)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, tokenclient.ErrInvalidConfig)) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
