package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/loadgen"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

// bench gate against a real manager: both sides of the throughput run
// without errors, and every round of the propagation ends with every
// gate refusing the revoked token.
func TestBenchGate(t *testing.T) {
	srv := natstest.Start(t)
	mgr := nodetest.Start(t, srv)
	out, err := execute(t, "bench", "gate", "--nats-url", srv.ClientURL(), "--nats-creds", srv.Creds("ops", natsauth.RoleOperator),
		"--service-creds", srv.Creds("gate", natsauth.RoleService), "--issuer", mgr.Cfg.Session.Issuer, "--duration", "300ms", "--workers", "2", "--gates", "2", "--rounds", "3",
		"--progress", "0", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got []loadgen.Result
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r loadgen.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, r)
	}
	if len(got) != 3 {
		t.Fatalf("%d results, want without, through and propagation:\n%s", len(got), out)
	}
	for _, r := range got[:2] {
		if r.Ops == 0 || r.Failed() > 0 {
			t.Errorf("%s: %d ops, %d failed", r.Name, r.Ops, r.Failed())
		}
	}
	if p := got[2]; p.Ops != 3 || p.Failed() > 0 || !strings.Contains(p.Name, "2 gates") {
		t.Errorf("%s: %d rounds, %d failed", p.Name, p.Ops, p.Failed())
	}
}
