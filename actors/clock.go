package actors

import "github.com/jonboulle/clockwork"

// Clock is the one time source of the grains and the edges: now, and the timers behind command
// deadlines, passivation, the flapping ban, the alert summary and idle timeouts. Production uses
// RealClock; tests pass clockwork.NewFakeClock() and advance it instead of sleeping.
type Clock = clockwork.Clock

// RealClock is the wall clock.
func RealClock() Clock { return clockwork.NewRealClock() }
