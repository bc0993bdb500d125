package embedded_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/internal/embedded"
)

// A port in use fails Start at once with the bind error, not after the
// ready timeout.
func TestPortInUseFailsAtOnce(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: port, ReadyTimeout: time.Minute})
	if err == nil {
		srv.Shutdown()
		t.Fatal("started on a port in use")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not give the bind error", err)
	}
}
