package filelock_test

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/events/filelock"
)

// holderEnv makes the test binary hold a lock instead of running the
// tests: TestReleasedWhenTheHolderDies starts it as a subprocess.
const holderEnv = "FILELOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(holderEnv); path != "" {
		if _, err := filelock.Acquire(path); err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		_, _ = io.Copy(io.Discard, os.Stdin) // hold until killed
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSecondLockFailsNamingThePath(t *testing.T) {
	for _, kind := range []string{"dir", "file"} {
		t.Run(kind, func(t *testing.T) {
			path := t.TempDir()
			if kind == "file" {
				path = filepath.Join(path, "LOCK")
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l, err := filelock.Acquire(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = filelock.Acquire(path)
			if !errors.Is(err, filelock.ErrLocked) || !strings.Contains(err.Error(), path) {
				t.Fatalf("second lock: %v, want ErrLocked naming %s", err, path)
			}
			if err := l.Unlock(); err != nil {
				t.Fatal(err)
			}
			l2, err := filelock.Acquire(path)
			if err != nil {
				t.Fatalf("after Unlock: %v", err)
			}
			if err := l2.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := l2.Unlock(); err != nil {
				t.Fatalf("second Unlock: %v", err)
			}
		})
	}
}

func TestLockedFileStaysReadableAndWritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.jsonl")
	if err := os.WriteFile(path, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := filelock.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("two\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != "one\ntwo\n" {
		t.Fatalf("read %q, %v", b, err)
	}
}

func TestMissingPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	if _, err := filelock.Acquire(path); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing path: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Acquire created the path")
	}
}

// TestReleasedWhenTheHolderDies: another process holds the lock, so this
// one cannot take it, until that process is killed (no Unlock, no
// deferred function runs).
func TestReleasedWhenTheHolderDies(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe() // never closed: the holder would exit
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder: %q, %v", line, err)
	}
	if _, err := filelock.Acquire(dir); !errors.Is(err, filelock.ErrLocked) {
		t.Fatalf("while another process holds it: %v, want ErrLocked", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // the process is gone, and with it its descriptors
	killed = true
	l, err := filelock.Acquire(dir)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Unlock()
}
