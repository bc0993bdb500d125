package e2e_test

import (
	"testing"

	"github.com/sessionbus/sessionbus/events"
)

func TestZZDebug(t *testing.T) {
	b := newBus(t)
	id := serviceID(t, b)
	real := consumerNames(t, b.srv.SetupJetStream(), events.StreamName)
	t.Logf("id %s real %v", id, real)
	names := guessNames(t, id, 20000)
	for i, n := range names {
		for _, r := range real {
			if n == r {
				t.Logf("found at %d", i)
			}
		}
	}
}
