package httpauth_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

// A protected service: keys over NATS, the deny-list from the stream, the
// middleware in front of the handlers, started and judged ready as one.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	srv, err := httpauth.NewService(httpauth.ServiceConfig{
		Conn: nc,
		Name: "/example-service",
		Auth: httpauth.Config{Issuer: "https://auth.example.com", Audience: "orders"},
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(srv.Run(context.Background())) }()

	mux := http.NewServeMux()
	mux.Handle("GET /protected-resource", srv.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := httpauth.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "hello %s (session %s)\n", c.Subject, c.SessionID)
	})))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !srv.Ready() { // the deny-list has caught up, the keys are loaded
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8090", mux))
}

// The same parts by hand, for a service that needs another key source or
// shares one deny-list between several authenticators.
func ExampleNew() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}

	dl, err := denylist.New(denylist.Config{JetStream: js})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = dl.Run(ctx) }()

	keys, err := httpauth.NewKeySet(httpauth.KeySetConfig{
		Source: httpauth.NATSSource(nc, "/example-service"),
		Watch:  nc, // refresh on key.rotated facts
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = keys.Run(ctx) }()

	auth, err := httpauth.New(httpauth.Config{
		Keys:     keys,
		DenyList: dl,
		Issuer:   "https://auth.example.com",
		Audience: "orders",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /protected-resource", func(w http.ResponseWriter, r *http.Request) {
		c, _ := httpauth.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "hello %s (session %s)\n", c.Subject, c.SessionID)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8090", auth.Middleware(mux)))
}

// A request without a token is told to bring one (RFC 6750 §3.1).
func ExampleAuthenticator_Middleware() {
	keys, err := httpauth.NewKeySet(httpauth.KeySetConfig{Source: httpauth.NATSSource(nil, "")})
	if err != nil {
		log.Fatal(err)
	}
	auth, err := httpauth.New(httpauth.Config{Keys: keys, DenyList: httpauth.NoDenyList, Issuer: "https://auth.example.com"})
	if err != nil {
		log.Fatal(err)
	}
	h := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/protected-resource", nil))
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))

	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/protected-resource", nil)
	r.Header.Set("Authorization", "Bearer not-a-jwt")
	h.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("WWW-Authenticate"))
	// Output:
	// 401 Bearer
	// 401 Bearer error="invalid_token"
}

// Handlers read the verified claims from the request's context.
func ExampleClaimsFrom() {
	handler := func(w http.ResponseWriter, r *http.Request) {
		c, ok := httpauth.ClaimsFrom(r.Context())
		if !ok {
			http.Error(w, "no claims", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "user", c.Subject, "session", c.SessionID)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r = r.WithContext(httpauth.ContextWithClaims(r.Context(), &httpauth.Claims{Subject: "U1", SessionID: "S1"}))
	w := httptest.NewRecorder()
	handler(w, r)
	fmt.Print(w.Body.String())
	// Output:
	// user U1 session S1
}

// The key set over HTTP, from the manager's public listener, for a
// service without NATS access to auth.cmd.jwks.
func ExampleHTTPSource() {
	src, err := httpauth.HTTPSource(&http.Client{Timeout: 5 * time.Second}, "http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	keys, err := httpauth.NewKeySet(httpauth.KeySetConfig{Source: src, MinRefreshInterval: 10 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	if err := keys.Refresh(context.Background()); err != nil {
		log.Print(err) // the middleware answers 503 until a fetch succeeds
	}
	fmt.Println(keys.KeyIDs())
}
