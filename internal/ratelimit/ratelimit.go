// Package ratelimit limits how often a key (a client's address) may do
// something: a token bucket of Burst tokens refilled one every Every,
// computed with the generic cell rate algorithm (GCRA), which keeps one
// timestamp per key rather than a counter and a clock.
package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// Limit is a token bucket: at most Burst at once, then one every Every.
type Limit struct {
	Every time.Duration
	Burst int
}

// PerMinute is a limit of n per minute with the given burst.
func PerMinute(n, burst int) Limit {
	return Limit{Every: time.Minute / time.Duration(n), Burst: burst}
}

// PerSecond is a limit of n per second, with a burst of as many.
func PerSecond(n int) Limit {
	return Limit{Every: time.Second / time.Duration(n), Burst: n}
}

// Limiter decides whether key may act now, and if not, how long until it
// may. err is for a limiter that cannot decide (its store is down).
type Limiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Func makes a function a Limiter (a backend that counts for every
// instance at once).
type Func func(ctx context.Context, key string) (bool, time.Duration, error)

// Allow implements Limiter.
func (f Func) Allow(ctx context.Context, key string) (bool, time.Duration, error) { return f(ctx, key) }

// Memory is a Limiter kept in this process, for at most max keys at a
// time, so that a flood of addresses cannot grow it without bound: when
// full, keys whose bucket has refilled (as good as absent) are forgotten
// first, then any; a forgotten key starts again with a full bucket.
type Memory struct {
	limit Limit
	max   int
	now   func() time.Time

	mu  sync.Mutex
	tat map[string]time.Time // per key: the theoretical arrival time of its next request
}

// NewMemory returns a limiter of l for at most max keys; now is the clock
// (time.Now when nil).
func NewMemory(l Limit, max int, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{limit: l, max: max, now: now, tat: map[string]time.Time{}}
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	tat, ok := m.tat[key]
	if !ok && len(m.tat) >= m.max {
		m.evict(now)
	}
	ok, next, retry := Decide(m.limit, tat, now)
	if ok {
		m.tat[key] = next
	}
	return ok, retry, nil
}

// Peek reports whether key could act now, and if not how long until it
// could, without counting anything: for limits that count only failures,
// checked before the work and charged after it fails.
func (m *Memory) Peek(key string) (bool, time.Duration) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	ok, _, retry := Decide(m.limit, m.tat[key], now)
	return ok, retry
}

// Fresh reports whether key has not acted for at least quiet (or never,
// or so long ago that it was forgotten): a new visitor, as far as this
// limiter can tell.
func (m *Memory) Fresh(key string, quiet time.Duration) bool {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.tat[key].After(now.Add(-quiet))
}

// evict makes room: first the keys that are as good as new, then, if the
// map is still full, arbitrary ones (Go's map order).
func (m *Memory) evict(now time.Time) {
	for k, tat := range m.tat {
		if !tat.After(now) {
			delete(m.tat, k)
		}
	}
	for k := range m.tat {
		if len(m.tat) < m.max {
			break
		}
		delete(m.tat, k)
	}
}

// Len returns how many keys the limiter holds.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// Decide is GCRA for one request at now of a key whose theoretical arrival
// time is tat (zero for a new key): whether it may, the key's next tat if
// so, and the wait if not.
func Decide(l Limit, tat, now time.Time) (ok bool, next time.Time, retryAfter time.Duration) {
	if tat.Before(now) {
		tat = now
	}
	tolerance := l.Every * time.Duration(l.Burst-1)
	if wait := tat.Sub(now) - tolerance; wait > 0 {
		return false, tat, time.Duration(math.Ceil(float64(wait)/float64(time.Millisecond))) * time.Millisecond
	}
	return true, tat.Add(l.Every), 0
}
