package badgerstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sessionbus/sessionbus/events/filelock"
)

// Files of a view directory besides Badger's own: the marker Open writes
// so that a directory can be recognised as a view, and the mark of a
// corruption found while running.
const (
	markerView    = "SESSIONBUS_VIEW"
	markerCorrupt = "CORRUPT"
)

// isViewFile tells the files Badger and this package keep in a view
// directory from anything else.
func isViewFile(name string) bool {
	switch name {
	case markerView, markerCorrupt, "MANIFEST", "MANIFEST-REWRITE", "KEYREGISTRY", "REWRITE-KEYREGISTRY", "DISCARD", "LOCK":
		return true
	}
	for _, ext := range []string{".sst", ".vlog", ".mem"} {
		if id, ok := strings.CutSuffix(name, ext); ok {
			_, err := strconv.ParseUint(id, 10, 64)
			return err == nil
		}
	}
	return false
}

// checkViewDir returns nil if dir is a view directory: a real directory
// (not a symbolic link, not the root) that holds only view files and
// either the view marker or a Badger MANIFEST, or nothing at all. It
// returns an error wrapping os.ErrNotExist if there is no dir.
func checkViewDir(dir string) error {
	if dir == "" {
		return errors.New("no view directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if filepath.Dir(abs) == abs {
		return fmt.Errorf("%s is the root directory, not a view", abs)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (%s)", abs, fi.Mode().Type())
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return err
	}
	known := len(ents) == 0
	for _, e := range ents {
		if !e.Type().IsRegular() || !isViewFile(e.Name()) {
			return fmt.Errorf("%s holds %q, which is not a file of a view", abs, e.Name())
		}
		known = known || e.Name() == markerView || e.Name() == "MANIFEST"
	}
	if !known {
		return fmt.Errorf("%s has neither %s nor a Badger MANIFEST", abs, markerView)
	}
	return nil
}

// lockDir takes the lock Badger takes on a view directory, so that a view
// another process has open is neither checked while it changes nor
// removed or moved.
func lockDir(dir string) (unlock func(), err error) {
	l, err := filelock.Acquire(dir)
	if err != nil {
		if errors.Is(err, filelock.ErrLocked) {
			return nil, fmt.Errorf("view %w", err)
		}
		return nil, err
	}
	return func() { _ = l.Unlock() }, nil
}

// lockView checks that dir is a view directory, locks it and checks it
// again (so nothing can be added between the check and what follows).
func lockView(dir string) (unlock func(), err error) {
	if err := checkViewDir(dir); err != nil {
		return nil, err
	}
	if unlock, err = lockDir(dir); err != nil {
		return nil, err
	}
	if err := checkViewDir(dir); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// Remove deletes the view in dir, so that it is rebuilt from the stream.
// It refuses, and deletes nothing, unless dir is a view directory (only
// Badger's files and this package's markers, with a MANIFEST or the view
// marker) that no process has open. A missing dir is not an error.
func Remove(dir string) error {
	unlock, err := lockView(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("refusing to remove the view: %w", err)
	}
	defer unlock()
	return os.RemoveAll(dir)
}

// MoveAside renames the view in dir to dir.corrupt-<UTC time>, so that a
// new view is built in dir while the damaged one stays for inspection
// (delete it when done). It makes the same checks as Remove and returns
// the new name ("" if there was no dir).
func MoveAside(dir string) (string, error) {
	unlock, err := lockView(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("refusing to move the view aside: %w", err)
	}
	defer unlock()
	to := filepath.Clean(dir) + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("move the view aside: %w", err)
	}
	return to, nil
}

// markCorrupt records in the view directory why it is corrupt, so that
// the next Open refuses it.
func markCorrupt(dir string, why error) error {
	return os.WriteFile(filepath.Join(dir, markerCorrupt),
		[]byte(time.Now().UTC().Format(time.RFC3339)+" "+why.Error()+"\n"), 0o600)
}
