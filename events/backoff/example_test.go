package backoff_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events/backoff"
)

// A retry loop: wait between failed attempts, start again after a
// success, stop when the context ends.
func ExampleBackoff() {
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	attempts := 0
	try := func(context.Context) error {
		attempts++
		if attempts < 3 {
			return errors.New("not yet")
		}
		return nil
	}
	ctx := context.Background()
	for try(ctx) != nil {
		if b.Wait(ctx) != nil {
			return // ctx ended
		}
	}
	b.Reset()
	fmt.Println("succeeded after", attempts, "attempts")
	for n := 1; n <= 8; n++ {
		fmt.Print(b.Nominal(n), " ")
	}
	fmt.Println()
	// Output:
	// succeeded after 3 attempts
	// 100ms 200ms 400ms 800ms 1.6s 3.2s 5s 5s
}
