// Package poll is how tests wait for what really happens elsewhere
// (another goroutine, a server): poll a condition with a deadline, or
// count the goroutines a test started that have reached a function,
// instead of sleeping and hoping.
package poll

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Timeout is how long Until waits before it fails the test.
const Timeout = 30 * time.Second

// Until polls cond every 2ms until it holds, failing the test with what
// after Timeout.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
}

// GoroutinesIn returns how many of the goroutines that the calling
// goroutine started are in fn, named as in a stack trace with its
// package: "httpauth.(*KeySet).refresh". Closures inside fn (fn.func1)
// are not counted, nor goroutines that parallel tests started.
func GoroutinesIn(fn string) int {
	self := stacks(false)
	self = self[:bytes.IndexByte(self, '[')] // "goroutine N "
	created := " in " + strings.TrimSpace(string(self)) + "\n"
	n := 0
	for g := range strings.SplitSeq(string(stacks(true)), "\n\n") {
		if strings.Contains(g, fn+"(") && strings.Contains(g, created) {
			n++
		}
	}
	return n
}

func stacks(all bool) []byte {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, all)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}
