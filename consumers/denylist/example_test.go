package denylist_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
)

// A service follows the revocations and waits until it has caught up
// before it serves.
func Example() {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	dl, err := denylist.New(denylist.Config{
		JetStream:  js,
		Lookback:   15 * time.Minute, // ≥ the manager's --access-ttl
		Registerer: prometheus.DefaultRegisterer,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := dl.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
	if err := dl.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	// … serve, checking dl.Check() and dl.Denied(…) for every request
	// (consumers/httpauth does both).
}

// Apply is what Run does with every message; feeding a list by hand shows
// the rules.
func ExampleList_Denied() {
	dl, err := denylist.New(denylist.Config{})
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now().UTC()
	revokedBefore := now.Add(-time.Minute)
	ev, err := events.New(events.TypeUserRevoked, events.Source("manager-1"), "U1", now,
		events.UserRevoked{UserID: "U1", Reason: events.ReasonAdmin, RevokedBefore: revokedBefore, DenyUntil: now.Add(5 * time.Minute)})
	if err != nil {
		log.Fatal(err)
	}
	if err := dl.Apply(ev); err != nil {
		log.Fatal(err)
	}

	// Refreshed after the revocation, but its session began before it.
	fmt.Println(dl.Denied(denylist.Token{Subject: "U1", SessionID: "S1", IssuedAt: now, AuthTime: revokedBefore.Add(-time.Hour)}))
	// A new session after the revocation.
	fmt.Println(dl.Denied(denylist.Token{Subject: "U1", SessionID: "S2", IssuedAt: now, AuthTime: now}))
	// Not yet caught up with a stream: never relied on.
	fmt.Println(errors.Is(dl.Check(), denylist.ErrNotReady))
	// Output:
	// true user
	// false none
	// true
}
