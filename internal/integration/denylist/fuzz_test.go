package denylist_test

import (
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
)

// FuzzApply feeds arbitrary revocation data of each type: never a panic;
// what is accepted is stored under a subject-safe id and denies it.
func FuzzApply(f *testing.F) {
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	f.Add(string(events.TypeSessionRevoked), "S1", []byte(`{"session_id":"S1","deny_until":"`+until+`"}`))
	f.Add(string(events.TypeUserRevoked), "U1", []byte(`{"user_id":"U1","revoked_before":"2026-01-01T00:00:00Z","deny_until":"`+until+`"}`))
	f.Add(string(events.TypeTokenRevoked), "J1", []byte(`{"jti":"J1"}`))
	f.Add(string(events.TypeKeyRevoked), "K1", []byte(`{"kid":"a.b","deny_until":"`+until+`"}`))
	f.Add("io.sessionbus.key.revoked.v2", "K1", []byte(`{}`))
	f.Add(string(events.TypeSessionRevoked), "S1", []byte(`[]`))
	f.Fuzz(func(t *testing.T, typ, subject string, data []byte) {
		l, err := denylist.New(denylist.Config{})
		if err != nil {
			t.Fatal(err)
		}
		e := events.Event{ID: "x", Type: events.Type(typ), Source: "/fuzz", Subject: subject, Time: time.Now(), Data: data}
		if err := l.Apply(e); err != nil {
			return
		}
		total := 0
		for _, k := range denylist.Kinds() {
			total += l.Len(k)
		}
		if total != 1 {
			t.Fatalf("accepted, %d entries", total)
		}
	})
}
