package main

import (
	"errors"
	"strings"
	"testing"
)

// A second process (or command) on a data dir in use is refused with an
// error that names the dir; the lock goes with the first holder.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir)
	if !errors.Is(err, errLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second lock: %v, want errLocked naming %s", err, dir)
	}
	unlock()
	unlock2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock2()
}
