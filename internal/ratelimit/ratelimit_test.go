package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/fakeclock"
)

// TestBucket: a burst at once, then one per interval; keys apart.
func TestBucket(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := NewMemory(PerMinute(10, 20), 100, clock.Now)
	allowed := 0
	var retry time.Duration
	for range 100 {
		ok, r, _ := m.Allow(t.Context(), "1.2.3.4")
		if ok {
			allowed++
		} else {
			retry = r
		}
	}
	if allowed != 20 {
		t.Fatalf("%d of 100 at once allowed, want the burst of 20", allowed)
	}
	if retry != 6*time.Second {
		t.Fatalf("retry after %s, want 6s (10 per minute)", retry)
	}
	if ok, _, _ := m.Allow(t.Context(), "5.6.7.8"); !ok {
		t.Fatal("another address was limited by the first one's flood")
	}
	clock.Advance(5999 * time.Millisecond)
	if ok, _, _ := m.Allow(t.Context(), "1.2.3.4"); ok {
		t.Fatal("allowed before the next token")
	}
	clock.Advance(time.Millisecond)
	if ok, _, _ := m.Allow(t.Context(), "1.2.3.4"); !ok {
		t.Fatal("not allowed once a token came back")
	}
	// A 10-second flood from one address: the burst, and what refills.
	clock.Advance(time.Hour)
	allowed = 0
	for range 10_000 {
		if ok, _, _ := m.Allow(t.Context(), "9.9.9.9"); ok {
			allowed++
		}
		clock.Advance(time.Millisecond)
	}
	if allowed != 20+1 {
		t.Fatalf("a 10 s flood got %d through, want the burst of 20 and the 1 that refilled", allowed)
	}
}

// TestBounded: a flood of addresses cannot grow the limiter past its
// bound; refilled keys go first.
func TestBounded(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := NewMemory(PerMinute(10, 20), 1000, clock.Now)
	for i := range 5000 {
		m.Allow(t.Context(), fmt.Sprint("addr-", i))
	}
	if n := m.Len(); n > 1000 {
		t.Fatalf("the limiter holds %d keys, bound 1000", n)
	}
	// A limited key survives a flood of fresh ones that have refilled.
	m = NewMemory(PerMinute(10, 2), 10, clock.Now)
	m.Allow(t.Context(), "hot")
	m.Allow(t.Context(), "hot")
	for i := range 9 {
		m.Allow(t.Context(), fmt.Sprint("cold-", i))
	}
	clock.Advance(time.Minute) // the cold ones have refilled; "hot" is still owed
	m.Allow(t.Context(), "hot")
	m.Allow(t.Context(), "new")
	if _, kept := m.tat["hot"]; !kept {
		t.Fatal("evicted a key still owing tokens before the refilled ones")
	}
}

func TestPerSecond(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := NewMemory(PerSecond(50), 1, clock.Now)
	allowed := 0
	for range 10 * 1000 { // 10 s, a request every millisecond
		if ok, _, _ := m.Allow(t.Context(), ""); ok {
			allowed++
		}
		clock.Advance(time.Millisecond)
	}
	if allowed < 500 || allowed > 550 {
		t.Fatalf("%d allowed in 10 s at 50/s, want about 500 (plus the burst)", allowed)
	}
}

// TestPeekCountsNothing: Peek says what Allow would, and changes nothing.
func TestPeekCountsNothing(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := NewMemory(PerMinute(60, 3), 10, clock.Now)
	for range 10 {
		if ok, _ := m.Peek("a"); !ok {
			t.Fatal("a fresh key peeked as limited")
		}
	}
	for range 3 {
		if ok, _, _ := m.Allow(t.Context(), "a"); !ok {
			t.Fatal("peeks used up the burst")
		}
	}
	if ok, retry := m.Peek("a"); ok || retry != time.Second {
		t.Fatalf("after the burst: Peek = %v, retry %s; want limited for 1s", ok, retry)
	}
	clock.Advance(time.Second)
	if ok, _ := m.Peek("a"); !ok {
		t.Fatal("still limited once a token came back")
	}
	if m.Len() != 1 {
		t.Fatalf("Peek stored keys: %d held, want 1", m.Len())
	}
	if m.Fresh("a", time.Minute) || !m.Fresh("b", time.Minute) {
		t.Fatal("Fresh: a used a token a second ago, b never")
	}
	clock.Advance(2 * time.Second) // its bucket is whole again, but it was here
	if m.Fresh("a", time.Minute) {
		t.Fatal("fresh again as soon as its bucket refilled, not after being quiet")
	}
	clock.Advance(time.Minute)
	if !m.Fresh("a", time.Minute) {
		t.Fatal("not fresh after a quiet minute")
	}
}
