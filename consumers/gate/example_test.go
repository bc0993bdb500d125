package gate_test

import (
	"context"
	"log"
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/consumers/gate"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
)

// A forward-auth endpoint for a gateway: the deny-list and keys of a
// protected service, the gate on one listener, readiness on another (a
// gateway forwards the client's path, which must never reach a probe).
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	svc, err := httpauth.NewService(httpauth.ServiceConfig{
		Conn: nc, Name: "/gate",
		Auth: httpauth.Config{Issuer: "sessionbus"},
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(svc.Run(context.Background())) }()
	g, err := gate.New(svc.Authenticator, gate.Config{SubjectHeader: "X-User-Id"})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		probes := http.NewServeMux()
		probes.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !svc.Ready() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})
		log.Fatal(http.ListenAndServe("127.0.0.1:8093", probes))
	}()
	log.Fatal(http.ListenAndServe("127.0.0.1:8092", g))
}
