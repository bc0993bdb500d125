//go:build race

package clustertest_test

// raceEnabled: under the race detector the fault test runs its short
// variant (the full one runs in CI without it: .ci/run).
const raceEnabled = true
