// Package actortest is test support shared by the tests of every package: the one Eventually
// helper for the few tests that must wait on real I/O (a socket, a process, a database). Tests of
// timing logic use a fake clock (actors.Clock) and advance it instead of waiting. Imported by
// tests only.
package actortest

import (
	"testing"
	"time"
)

// Poll is how often Eventually checks its condition.
const Poll = 10 * time.Millisecond

// Eventually fails the test unless cond holds within the given time. what says, for the failure
// message, what was awaited. It returns how long it took.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(Poll)
	}
}
