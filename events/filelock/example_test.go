package filelock_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/sessionbus/sessionbus/events/filelock"
)

// Only one holder at a time: the second is refused at once.
func ExampleAcquire() {
	dir, _ := os.MkdirTemp("", "data")
	defer os.RemoveAll(dir)
	l, err := filelock.Acquire(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Unlock()
	_, err = filelock.Acquire(dir)
	fmt.Println(errors.Is(err, filelock.ErrLocked))
	// Output: true
}
