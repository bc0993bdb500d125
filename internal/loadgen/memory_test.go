package loadgen_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionbus/sessionbus/internal/loadgen"
)

// The watch reads the peaks from a real Prometheus handler behind a
// bearer credential, and reads nothing without the right one.
func TestMemoryWatch(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer right" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	ctx := context.Background()
	rss, heap, err := loadgen.MemoryWatch{URL: srv.URL, Token: "right"}.Sample(ctx)
	if err != nil || rss == 0 || heap == 0 {
		t.Fatalf("sample: rss %d heap %d err %v", rss, heap, err)
	}
	m := loadgen.MemoryWatch{URL: srv.URL, Token: "right"}.Start(ctx)()
	if m.Samples == 0 || m.PeakRSS < heap/2 || m.PeakHeap == 0 {
		t.Fatalf("watch: %+v", m)
	}
	if _, _, err := (loadgen.MemoryWatch{URL: srv.URL, Token: "wrong"}).Sample(ctx); err == nil {
		t.Fatal("a refused read gave a sample")
	}
	if m := (loadgen.MemoryWatch{URL: srv.URL, Token: "wrong"}).Start(ctx)(); m.Samples != 0 {
		t.Fatalf("refused reads counted: %+v", m)
	}
}
