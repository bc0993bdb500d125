package filelock

import (
	"errors"
	"fmt"
	"os"
)

// ErrLocked reports a path another process (or another Lock in this one)
// holds.
var ErrLocked = errors.New("in use by another process")

// Lock is a held lock.
type Lock struct {
	f    *os.File
	path string
}

// Acquire takes an exclusive lock on path, which must exist, without
// waiting. It returns an error wrapping ErrLocked, naming path, when
// another holds it; an error wrapping os.ErrNotExist when path does not
// exist.
func Acquire(path string) (*Lock, error) {
	f, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%s is %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// Unlock releases the lock. Calling it again does nothing.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	return nil
}
