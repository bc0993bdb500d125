// Package benchenv holds what the benchmarks of cost with history share:
// the history lengths they run at, and the process's memory once idle.
package benchenv

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sessionbus/sessionbus/session/badgerstore"
)

// History is the numbers of facts to pre-fill: SESSIONBUS_BENCH_HISTORY
// (comma-separated) or def.
func History(def ...int) ([]int, error) {
	v := os.Getenv("SESSIONBUS_BENCH_HISTORY")
	if v == "" {
		return def, nil
	}
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("SESSIONBUS_BENCH_HISTORY: %q is not a number of facts", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Idle waits until the view's compactions are done (compacting, for at
// most 5 minutes), then until the view has given back the pages of its
// mapped files (within 5/4 of badgerstore.DefaultPageOutIdle) and Badger
// the buffers of its table builders (one every 2 s once none was taken
// for 2 s; it keeps up to eight), collects garbage and returns it to the
// system: what a manager holds a while after its load stopped. It
// returns the process's resident set then, and its anonymous part (RSS
// without the pages of mapped files).
func Idle(compacting func() bool) (rss, anon uint64, err error) {
	for t := time.Now(); compacting() && time.Since(t) < 5*time.Minute; {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(badgerstore.DefaultPageOutIdle*5/4 + 10*time.Second)
	runtime.GC()
	debug.FreeOSMemory()
	return Resident()
}

// Resident reads this process's resident set and its anonymous part
// (VmRSS and RssAnon of /proc/self/status, Linux only).
func Resident() (rss, anon uint64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		kb, perr := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch {
		case perr != nil:
		case k == "VmRSS":
			rss = kb << 10
		case k == "RssAnon":
			anon = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/self/status")
	}
	return rss, anon, nil
}
