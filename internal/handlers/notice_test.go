package handlers

import (
	"testing"
	"time"
)

func TestRelative(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		0: "just now", 30 * time.Second: "just now", -40 * time.Second: "just now",
		9*time.Minute + 50*time.Second: "in 10 minutes", -time.Minute: "1 minute ago", -2 * time.Minute: "2 minutes ago",
		time.Hour: "in 1 hour", 24 * time.Hour: "in 24 hours", -3 * time.Hour: "3 hours ago",
		48 * time.Hour: "in 2 days", -400 * 24 * time.Hour: "400 days ago",
	} {
		if got := relative(now.Add(d), now); got != want {
			t.Errorf("relative(%s) = %q, want %q", d, got, want)
		}
	}
}
