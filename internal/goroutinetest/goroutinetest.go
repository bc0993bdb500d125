// Package goroutinetest lets a test wait until the goroutines it started
// have reached a function (blocked in it, say) instead of sleeping and
// hoping they have.
package goroutinetest

import (
	"bytes"
	"runtime"
	"strings"
)

// In returns how many of the goroutines that the calling goroutine
// started are in fn, named as in a stack trace with its package:
// "httpauth.(*KeySet).refresh". Closures inside fn (fn.func1) are not
// counted, nor goroutines that parallel tests started.
func In(fn string) int {
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
