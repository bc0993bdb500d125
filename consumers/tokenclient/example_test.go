package tokenclient_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/consumers/tokenclient"
)

// A service calls another with its own service account, logging in over
// NATS; the password comes from the environment each time a login is
// needed.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	client, err := tokenclient.New(tokenclient.Config{
		Backend: tokenclient.NATSBackend(nc, "/orders-service"),
		Credentials: func(context.Context) (tokenclient.Credentials, error) {
			return tokenclient.Credentials{Username: "svc-orders", Password: os.Getenv("ORDERS_PASSWORD")}, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	hc := client.HTTPClient(nil) // adds the token, refreshes, retries a 401 once
	resp, err := hc.Get("http://127.0.0.1:8090/protected-resource")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
}

// Over the manager's HTTP API instead of NATS, for one token by hand.
func ExampleClient_Token() {
	backend, err := tokenclient.HTTPBackend(&http.Client{Timeout: 5 * time.Second}, "http://127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	client, err := tokenclient.New(tokenclient.Config{
		Backend: backend,
		Credentials: func(context.Context) (tokenclient.Credentials, error) {
			return tokenclient.Credentials{Username: "alice", Password: os.Getenv("ALICE_PASSWORD")}, nil
		},
		RefreshBefore: time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	token, err := client.Token(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8090/protected-resource", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	// …
}

// Tokens never show in logs or formatted output.
func ExampleTokens_String() {
	t := tokenclient.Tokens{AccessToken: "eyJ…", RefreshToken: "secret", SessionID: "01JDA0000000000000000000AB", ExpiresIn: 5 * time.Minute}
	fmt.Println(t)
	// Output:
	// tokenclient.Tokens{SessionID: "01JDA0000000000000000000AB", ExpiresIn: 5m0s, tokens redacted}
}

// The Transport wraps any other RoundTripper; a request whose body can be
// replayed (bytes, strings: http.NewRequest sets GetBody) is retried once
// after a 401 with a new token.
func ExampleClient_Transport() {
	var client *tokenclient.Client // from tokenclient.New
	hc := &http.Client{Transport: client.Transport(http.DefaultTransport), Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8090/orders", strings.NewReader(`{"item":42}`))
	resp, err := hc.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}
