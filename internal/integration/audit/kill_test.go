package audit_test

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events/natsauth"
)

// TestFollowSIGKILL kills a follower process with SIGKILL at random
// moments, 20 times, while events keep arriving, restarting it each time.
// The chain it leaves (rotated into parts) must be byte for byte what a
// clean replay writes.
func TestFollowSIGKILL(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 200)
	e.publishOdd(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "follow.jsonl")
	const size = 32 << 10
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))

	creds := e.srv.Creds("audit-follow", natsauth.RoleAudit)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "AUDIT_TEST_NATS_URL="+e.srv.ClientURL(), "AUDIT_TEST_NATS_CREDS="+creds,
			"AUDIT_TEST_OUT="+out, "AUDIT_TEST_MAX_SIZE="+strconv.Itoa(size))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill moments count from when it follows, not from when the
		// process started: starting takes long on a loaded machine.
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "following\n" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("follower: %q, %v", line, err)
		}
		return cmd
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // events keep arriving while the follower dies
		for i := 1000; ctx.Err() == nil && i < 3000; i += 10 {
			e.publish(t, i, i+10)
			time.Sleep(5 * time.Millisecond)
		}
	})
	var lines []int
	for range 20 {
		cmd := start()
		time.Sleep(time.Duration(20+rnd.IntN(250)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		n := 0
		for p := uint64(0); ; p++ {
			if _, err := os.Stat(audit.PartPath(out, p)); err != nil {
				break
			}
			n += len(readLines(t, audit.PartPath(out, p)))
		}
		lines = append(lines, n)
	}
	cancel()
	wg.Wait()
	t.Logf("lines after each kill: %v", lines)
	if lines[len(lines)-1] == 0 {
		t.Fatal("the follower never wrote")
	}

	// A last run catches up and stops cleanly.
	cmd := start()
	last := e.lastSeq(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var parts []string
		for p := uint64(0); ; p++ {
			if _, err := os.Stat(audit.PartPath(out, p)); err != nil {
				break
			}
			parts = append(parts, audit.PartPath(out, p))
		}
		if rep, err := audit.Verify(ctx, parts, audit.VerifyConfig{}); err == nil && rep.LastSeq == last {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the follower did not catch up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("follower exit: %v", err)
	}

	want := filepath.Join(dir, "replay.jsonl")
	st := replay(t, e.js, want, audit.ReplayConfig{MaxFileSize: size})
	var parts []string
	for p := uint64(0); p <= st.Part; p++ {
		sameFiles(t, audit.PartPath(out, p), audit.PartPath(want, p))
		parts = append(parts, audit.PartPath(out, p))
	}
	if _, err := os.Stat(audit.PartPath(out, st.Part+1)); err == nil {
		t.Fatal("the follower wrote more parts than the replay")
	}
	if _, err := verify(t, audit.VerifyConfig{Against: e.js}, parts...); err != nil {
		t.Fatal(err)
	}
}
