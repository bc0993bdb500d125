package badgerstore

import "testing"

// SetRestoreBatch makes Restore hand batches of n bytes to Badger until
// the test ends: a small snapshot then goes through many, written by
// several goroutines at once.
func SetRestoreBatch(t testing.TB, n int) {
	t.Helper()
	old := restoreBatch
	restoreBatch = n
	t.Cleanup(func() { restoreBatch = old })
}
