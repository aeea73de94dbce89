package handlers

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// refusals logs the requests the app refuses without doing their work
// (rate limits, forged logout tokens, cross-origin writes) as one line per
// second per path and reason, with a count, instead of a line each: a
// flood must not fill the disk. The metrics count each refusedKind.
type refusals struct {
	logger *slog.Logger
	now    func() time.Time

	// since is the start of the window being counted (Unix ns), 0 while
	// nothing is: flush, called on every request, reads it without the
	// lock. Written under mu.
	since atomic.Int64

	mu     sync.Mutex
	counts map[refusedKind]int
}

// refusedKind is what is counted: where, how it was answered, and why.
type refusedKind struct {
	path   string
	status int
	reason string
}

// refusalWindow is how often the counts are logged, at most.
const refusalWindow = time.Second

// refusedKey marks, in the request's context, a request to log through
// refusals rather than on its own access line.
const refusedKey = "refused"

func newRefusals(logger *slog.Logger, now func() time.Time) *refusals {
	return &refusals{logger: logger, now: now, counts: map[refusedKind]int{}}
}

// markRefused marks the request as refused for reason: its access line is
// folded into the next "Requests refused" line.
func markRefused(c echo.Context, reason string) {
	c.Set(refusedKey, reason)
}

// note counts one refused request and logs the window's counts once it
// is over. (A window is logged when the next refusedKind comes, or the next
// request: flush.)
func (r *refusals) note(path string, status int, reason string) {
	now := r.now()
	r.mu.Lock()
	if r.since.Load() == 0 {
		r.since.Store(now.UnixNano())
	}
	r.counts[refusedKind{path, status, reason}]++
	r.mu.Unlock()
	r.flush(now)
}

// flush logs and resets the counts if their window is over.
func (r *refusals) flush(now time.Time) {
	if p := r.since.Load(); p == 0 || now.UnixNano()-p < int64(refusalWindow) {
		return // nothing to log yet: no lock on the way of every request
	}
	r.mu.Lock()
	started := r.since.Load()
	if len(r.counts) == 0 || now.UnixNano()-started < int64(refusalWindow) {
		r.mu.Unlock()
		return
	}
	counts, since := r.counts, time.Unix(0, started)
	r.counts = map[refusedKind]int{}
	r.since.Store(0)
	r.mu.Unlock()
	keys := make([]refusedKind, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].path != keys[j].path {
			return keys[i].path < keys[j].path
		}
		return keys[i].reason < keys[j].reason
	})
	for _, k := range keys {
		r.logger.Info("Requests refused", "path", k.path, "status", k.status, "reason", k.reason,
			"count", counts[k], "window", now.Sub(since).Round(time.Millisecond))
	}
}
