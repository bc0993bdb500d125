package clustertest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/loadgen"
)

// BenchmarkClusterRefresh: refreshes per second on the 3-node cluster
// (R3, every write synced before its ack) with 1, 2 and 3 managers, each
// connected to a node of its own, 32 clients refreshing their own
// sessions for 15 s over NATS (issue 8). The nodes, the managers and the
// clients share this process and the machine's cores.
//
//	go test -run '^$' -bench ClusterRefresh ./internal/clustertest/
func BenchmarkClusterRefresh(b *testing.B) {
	for _, managers := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("managers=%d", managers), func(b *testing.B) {
			f := newFixture(b, managers)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			const workers = 32
			cl := &loadgen.Client{NC: f.c.Connect(natsauth.RoleGateway, -1)}
			toks := make([]string, workers)
			for i := range toks {
				for {
					r, err := cl.Login(ctx, f.user.Name, f.user.Password, fmt.Sprintf("198.18.2.%d", i+1))
					if err == nil {
						toks[i] = r.RefreshToken
						break
					}
					if ctx.Err() != nil {
						b.Fatalf("login: %v", err)
					}
					time.Sleep(100 * time.Millisecond) // 429: one account's logins take turns
				}
			}
			var res loadgen.Result
			for b.Loop() {
				res = loadgen.Run(ctx, loadgen.Config{Name: "refresh", Workers: workers, Duration: 15 * time.Second},
					func(ctx context.Context, w int) error {
						r, err := cl.Refresh(ctx, toks[w])
						if err == nil {
							toks[w] = r.RefreshToken
						}
						return err
					})
			}
			if res.Failed() > 0 {
				b.Errorf("%d refreshes failed: %v", res.Failed(), res.Errors)
			}
			b.ReportMetric(res.Rate, "refreshes/s")
			b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
		})
	}
}
