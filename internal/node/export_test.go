package node

import "testing"

// SetSnapshotRest sets how many times the duration of its last snapshot
// a manager rests before the next one, until the test ends.
func SetSnapshotRest(t testing.TB, n int) {
	t.Helper()
	old := snapshotRest
	snapshotRest = n
	t.Cleanup(func() { snapshotRest = old })
}
