package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/embedded"
)

// Copy the stream into an audit file, then prove the file intact.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	srv, err := embedded.Start(ctx, embedded.Config{StoreDir: filepath.Join(dir, "nats"), Port: -1})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, _ := srv.Connect()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := jsbus.EnsureStream(ctx, js, jsbus.StreamConfig{}); err != nil {
		panic(err)
	}
	pub, _ := jsbus.NewPublisher(js)
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, sid := range []string{"S1", "S2", "S3"} {
		e, _ := events.New(events.TypeSessionRevoked, events.Source("example"), sid, at,
			events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: events.ReasonLogout, RevokedAt: at, DenyUntil: at.Add(5 * time.Minute)})
		if _, err := pub.Publish(ctx, e, nil); err != nil {
			panic(err)
		}
	}

	path := filepath.Join(dir, "audit.jsonl")
	r, err := audit.NewReplayer(js, audit.ReplayConfig{Out: path})
	if err != nil {
		panic(err)
	}
	st, err := r.Run(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("lines written:", st.Lines)

	rep, err := audit.Verify(ctx, []string{path}, audit.VerifyConfig{Against: js})
	if err != nil {
		panic(err)
	}
	fmt.Println("verified:", rep.Lines, "lines, sequences", rep.FirstSeq, "to", rep.LastSeq)
	fmt.Println("identical to the stream:", rep.StreamChecked)
	fmt.Println("last chainhash matches:", rep.LastHash == st.LastHash)
	// Output:
	// lines written: 3
	// verified: 3 lines, sequences 1 to 3
	// identical to the stream: 3
	// last chainhash matches: true
}
