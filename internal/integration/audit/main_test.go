package audit_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events/natsauth"
)

// childEnv makes the test binary run a follower instead of the tests: the
// SIGKILL test starts it as a subprocess.
const childEnv = "AUDIT_TEST_FOLLOW_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runFollowChild())
	}
	code := m.Run()
	stopBenchServer()
	os.Exit(code)
}

// runFollowChild follows AUDIT_TEST_NATS_URL into AUDIT_TEST_OUT until
// SIGTERM (or SIGKILL).
func runFollowChild() int {
	opts, err := natsauth.Options(os.Getenv("AUDIT_TEST_NATS_CREDS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	nc, err := nats.Connect(os.Getenv("AUDIT_TEST_NATS_URL"), append(opts, nats.MaxReconnects(-1))...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	size, _ := strconv.ParseInt(os.Getenv("AUDIT_TEST_MAX_SIZE"), 10, 64)
	f, err := audit.NewFollower(js, audit.FollowConfig{
		Durable: "killed", Out: os.Getenv("AUDIT_TEST_OUT"), MaxFileSize: size,
		Batch: 8, AckWait: 2 * time.Second, IdleCheck: 200 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("following") // the parent counts the time to a kill from here
	if err := f.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}
