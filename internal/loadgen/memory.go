package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is what a MemoryWatch saw of the server's memory: the highest
// samples of its resident set and Go heap (bytes), from the gauges
// process_resident_memory_bytes and go_memstats_heap_inuse_bytes of its
// /metrics. Peaks are of samples: a spike shorter than the interval can
// be missed.
type Memory struct {
	PeakRSS  uint64 `json:"server_peak_rss_bytes,omitempty"`
	PeakHeap uint64 `json:"server_peak_heap_bytes,omitempty"`
	Samples  int    `json:"server_memory_samples,omitempty"`
}

// MemoryWatch samples a server's /metrics while a run lasts.
type MemoryWatch struct {
	// URL of the metrics (the manager's admin listener: http://host:port/metrics)
	// and the bearer credential it needs.
	URL   string
	Token string
	// Every is the interval between samples (default 250ms).
	Every time.Duration
	// Client (default: one with a 2s timeout).
	Client *http.Client
}

// Start samples until the returned function is called, which takes a
// last sample and returns the peaks. A sample that fails is skipped.
func (w MemoryWatch) Start(ctx context.Context) (stop func() Memory) {
	if w.Every <= 0 {
		w.Every = 250 * time.Millisecond
	}
	if w.Client == nil {
		w.Client = &http.Client{Timeout: 2 * time.Second}
	}
	last := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancel(ctx)
	var (
		mu  sync.Mutex
		m   Memory
		wg  sync.WaitGroup
		tic = time.NewTicker(w.Every)
	)
	sample := func(ctx context.Context) {
		rss, heap, err := w.Sample(ctx)
		if err != nil {
			return
		}
		mu.Lock()
		m.PeakRSS, m.PeakHeap, m.Samples = max(m.PeakRSS, rss), max(m.PeakHeap, heap), m.Samples+1
		mu.Unlock()
	}
	wg.Go(func() {
		defer tic.Stop()
		for {
			sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tic.C:
			}
		}
	})
	return func() Memory {
		cancel()
		wg.Wait()
		sample(last)
		mu.Lock()
		defer mu.Unlock()
		return m
	}
}

// Sample reads the server's resident set and Go heap in use once.
func (w MemoryWatch) Sample(ctx context.Context) (rss, heap uint64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	g := gauges(resp.Body, "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes")
	if len(g) < 2 {
		return 0, 0, fmt.Errorf("metrics: no memory gauges at %s", w.URL)
	}
	return uint64(g["process_resident_memory_bytes"]), uint64(g["go_memstats_heap_inuse_bytes"]), nil
}

// gauges reads the unlabelled samples of the named metrics from the
// Prometheus text format.
func gauges(r io.Reader, names ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for _, n := range names {
			if name == n {
				if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					out[n] = v
				}
			}
		}
	}
	return out
}

// Print writes the peaks as a line of text, nothing without samples.
func (m Memory) Print(w io.Writer) {
	if m.Samples == 0 {
		return
	}
	fmt.Fprintf(w, "  server: peak RSS %.0f MiB, peak Go heap in use %.0f MiB (%d samples of /metrics)\n",
		float64(m.PeakRSS)/(1<<20), float64(m.PeakHeap)/(1<<20), m.Samples)
}
