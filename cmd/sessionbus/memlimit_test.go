package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/sessionbus/sessionbus/internal/node"
)

// serve bounds the Go heap by default, and the operator's word wins:
// --memory-limit (0 turns the limit off), else GOMEMLIMIT.
func TestMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		name     string
		given    bool
		flag     int64
		env      func(string) string
		runtime  int64 // the limit the runtime had
		want     int64
		wantFrom string
	}{
		{"default", false, node.DefaultMemoryLimit, noEnv, math.MaxInt64, node.DefaultMemoryLimit, "default"},
		{"flag", true, 1 << 30, noEnv, math.MaxInt64, 1 << 30, "--memory-limit"},
		{"flag off", true, 0, noEnv, 512 << 20, math.MaxInt64, "--memory-limit"},
		{"GOMEMLIMIT", false, node.DefaultMemoryLimit, func(k string) string {
			if k == "GOMEMLIMIT" {
				return "768MiB"
			}
			return ""
		}, 768 << 20, 768 << 20, "GOMEMLIMIT"},
	} {
		debug.SetMemoryLimit(c.runtime)
		got, from := setMemoryLimit(c.given, c.flag, c.env)
		if got != c.want || from != c.wantFrom || debug.SetMemoryLimit(-1) != c.want {
			t.Errorf("%s: limit %d from %s (runtime %d), want %d from %s", c.name, got, from, debug.SetMemoryLimit(-1), c.want, c.wantFrom)
		}
	}
}
