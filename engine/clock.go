package engine

import (
	"sync"
	"time"
)

// Clock is where the daemon gets the time and its timer: the real one in
// production, a fake one in tests that step time instead of sleeping.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	C() <-chan time.Time
	// Reset makes the timer fire once after d, whether it fired or not.
	Reset(d time.Duration)
	Stop()
}

// RealClock is the system clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time   { return t.t.C }
func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }

// nowClock is a time source with real timers.
type nowClock struct{ now func() time.Time }

func (c nowClock) Now() time.Time                 { return c.now() }
func (c nowClock) NewTimer(d time.Duration) Timer { return RealClock{}.NewTimer(d) }

// FakeClock is a clock that moves only when told to. Its timers fire, in
// order of their deadlines, when Advance or Set passes them; each fires at
// most once per arming and never blocks Advance (its channel holds one tick).
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFakeClock returns a fake clock at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d, firing the timers it passes.
func (c *FakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards), firing the timers it passes.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Before(c.now) {
		return
	}
	c.now = t
	for _, tm := range c.timers {
		if tm.armed && !tm.when.After(t) {
			tm.armed = false
			select {
			case tm.c <- tm.when:
			default:
			}
		}
	}
}

// Next is the earliest deadline of an armed timer, or zero.
func (c *FakeClock) Next() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, tm := range c.timers {
		if tm.armed && (next.IsZero() || tm.when.Before(next)) {
			next = tm.when
		}
	}
	return next
}

// NewTimer returns a timer that fires when the clock reaches now+d.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	tm := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, tm)
	c.mu.Unlock()
	tm.Reset(d)
	return tm
}

type fakeTimer struct {
	clock *FakeClock
	c     chan time.Time
	when  time.Time
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) {
	c := t.clock
	c.mu.Lock()
	// Like time.Timer since Go 1.23: a tick not yet received is dropped.
	select {
	case <-t.c:
	default:
	}
	t.when, t.armed = c.now.Add(d), true
	fire := d <= 0
	if fire {
		t.armed = false
		t.c <- t.when
	}
	c.mu.Unlock()
}

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	t.armed = false
	t.clock.mu.Unlock()
}
