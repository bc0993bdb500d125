package denylist_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
)

// BenchmarkPropagation measures, for ten services each with its own
// connection and deny-list, the time from the start of a revocation's
// publication (jsbus.Publisher, as the manager does) until every deny-list
// denies the session; it reports the 50th and 99th percentiles and the
// maximum. Everything runs on one machine, server included.
func BenchmarkPropagation(b *testing.B) {
	const services = 10
	e := newEnv(b)
	lists := make([]*denylist.List, services)
	regs := make([]*prometheus.Registry, services)
	for i := range lists {
		js, err := jetstream.New(e.srv.ConnectService(nats.Timeout(10 * time.Second)))
		if err != nil {
			b.Fatal(err)
		}
		lists[i], regs[i], _ = e.start(denylist.Config{JetStream: js})
		waitReady(b, lists[i])
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	acks := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		sid := events.NewID()
		now := time.Now().UTC()
		ev, err := events.New(events.TypeSessionRevoked, events.Source("bench"), sid, now,
			events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: events.ReasonAdmin, RevokedAt: now, DenyUntil: now.Add(time.Minute)})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := e.pub.Publish(ctx, ev, nil); err != nil {
			b.Fatal(err)
		}
		acks = append(acks, time.Since(start))
		tok := denylist.Token{SessionID: sid}
		for _, l := range lists {
			for {
				if ok, _ := l.Denied(tok); ok {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatal("revocation not applied within 10s")
				}
				time.Sleep(20 * time.Microsecond) // polling with a deadline
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(acks)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(int(p*float64(len(d))), len(d)-1)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(pct(acks, 0.99), "p99-ack-ms")
	// From the lists' own histograms: the share of applications within
	// 5ms of the message's storage on the stream.
	var within, total uint64
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "sessionbus_denylist_apply_lag_seconds" {
				continue
			}
			h := mf.GetMetric()[0].GetHistogram()
			total += h.GetSampleCount()
			for _, bk := range h.GetBucket() {
				if bk.GetUpperBound() == 0.005 {
					within += bk.GetCumulativeCount()
				}
			}
		}
	}
	if total > 0 {
		b.ReportMetric(100*float64(within)/float64(total), "%stored-to-applied<=5ms")
	}
}
