package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/sessionbus/sessionbus/internal/node"
)

// setMemoryLimit sets the runtime's soft memory limit: the flag's value
// when it was given (0: none), else GOMEMLIMIT when that is set (the
// runtime read it already), else node.DefaultMemoryLimit. It returns the limit
// in force (math.MaxInt64: none) and where it came from.
func setMemoryLimit(given bool, flag int64, getenv func(string) string) (int64, string) {
	switch {
	case given && flag == 0:
		debug.SetMemoryLimit(math.MaxInt64)
		return math.MaxInt64, "--memory-limit"
	case given:
		debug.SetMemoryLimit(flag)
		return flag, "--memory-limit"
	case getenv("GOMEMLIMIT") != "":
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	debug.SetMemoryLimit(node.DefaultMemoryLimit)
	return node.DefaultMemoryLimit, "default"
}

// watchLiveHeap warns, at most once an hour, when what is live on the
// heap after a collection passes three quarters of the memory limit: the
// collector then runs ever more often (up to half the CPU) to stay under
// it, and the limit should be raised.
func watchLiveHeap(ctx context.Context, log *slog.Logger, limit int64, every time.Duration) {
	if limit == math.MaxInt64 {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(every)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := sample[0].Value.Uint64()
		if live > uint64(limit)/4*3 && time.Since(warned) > time.Hour {
			warned = time.Now()
			log.Warn("the live Go heap is near the memory limit; raise --memory-limit (or GOMEMLIMIT)",
				"live", humanize.IBytes(live), "limit", humanize.IBytes(uint64(limit)))
		}
	}
}
