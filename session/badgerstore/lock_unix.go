//go:build unix

package badgerstore

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes the lock Badger takes on a view directory (flock on the
// directory), so that a view another process has open is neither checked
// while it changes nor removed or moved.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("view %s is in use by another process: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
