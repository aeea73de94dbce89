// Package fakeclock is a clock for tests: it stands still until the test
// moves it, so expiry and idle timeouts are tested without waiting.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a settable time source; its Now method is what stores and the
// session layer take as their clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock that reads start until moved.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
