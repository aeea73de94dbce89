package httpsession

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"example.com/oauth-sessions/internal/sessionstore"
)

// Cache remembers sessions this process has validated, so that a request
// whose cookie it has already seen skips the HMAC check, the store read, the
// AES-GCM open and the JSON decode: on the hot path a session check costs a
// map lookup under a read lock and the feed's Synced (an atomic read).
//
// It stays correct because it trusts nothing the backend's ChangeFeed cannot
// vouch for: every write by anyone — this process, another instance, the
// CLI, the server's own expiry — drops the affected entries, and while the
// feed is out of touch (its server disconnected) the cache serves nothing.
// Expiry and the idle timeout are checked on every hit. A touch is a write
// like any other: its report drops the entry, and the next request reads
// the store again (once per TouchAfter per session).
type Cache struct {
	feed sessionstore.ChangeFeed
	max  int

	mu       sync.RWMutex
	byCookie map[cookieRef]*cached
	byKey    map[string][]cookieRef

	// Generations guard against caching a read that raced with a write:
	// an entry is stored only if no invalidation of its key (its stripe) or
	// of everything happened since the read began.
	all     atomic.Uint64
	stripes [64]atomic.Uint64
	seed    maphash.Seed

	hits, misses, invalidations atomic.Uint64
}

// cookieRef is a cookie as the request carried it. The name is part of the
// key because the signature covers it.
type cookieRef struct{ name, value string }

// cached is one validated session. It is never modified once stored;
// changes replace it.
type cached struct {
	token, key string
	rec        Record
	values     []namedValue // rec.Values, ready to put in a session's map
	loaded     []byte       // JSON of rec.Values, as Manager compares on save
	owners     []string
	seenAt     time.Time
	storeExp   time.Time // when the store drops it (idle timeout included)
}

type namedValue struct {
	name  any // a string, boxed once
	value *storedValue
}

func newCached(token, key string, rec Record, entry sessionstore.Entry) *cached {
	loaded, _ := json.Marshal(rec.Values)
	e := &cached{token: token, key: key, rec: rec, loaded: loaded, owners: entry.Owners, seenAt: entry.SeenAt, storeExp: entry.ExpiresAt}
	for k, v := range rec.Values {
		e.values = append(e.values, namedValue{name: k, value: &storedValue{raw: v}})
	}
	return e
}

// ticket is what a lookup that missed hands to the store that follows it.
type ticket struct {
	ok          bool
	all, stripe uint64
}

// NewCache returns a cache of at most size sessions that follows feed.
func NewCache(feed sessionstore.ChangeFeed, size int) *Cache {
	c := &Cache{feed: feed, max: max(size, 1), byCookie: map[cookieRef]*cached{}, byKey: map[string][]cookieRef{}, seed: maphash.MakeSeed()}
	feed.Follow(c)
	return c
}

func (c *Cache) stripeOf(key string) int { return int(maphash.String(c.seed, key) % 64) }

// lookup returns the entry for a cookie, or a ticket to store what the
// caller is about to read.
func (c *Cache) lookup(ctx context.Context, ref cookieRef) (*cached, ticket) {
	if !c.feed.Synced(ctx) {
		c.misses.Add(1)
		return nil, ticket{}
	}
	c.mu.RLock()
	e := c.byCookie[ref]
	c.mu.RUnlock()
	if e != nil {
		c.hits.Add(1)
		return e, ticket{}
	}
	c.misses.Add(1)
	return nil, ticket{ok: true, all: c.all.Load()}
}

// stripeTicket completes t once the store key is known (after the cookie
// was verified), before the store is read.
func (c *Cache) stripeTicket(t ticket, key string) ticket {
	t.stripe = c.stripes[c.stripeOf(key)].Load()
	return t
}

// store remembers e under ref unless the ticket is stale.
func (c *Cache) store(ref cookieRef, e *cached, t ticket) {
	if !t.ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Checked under the lock: Invalidate bumps the generation before it
	// takes the lock, so a racing invalidation is seen here or finds the
	// entry to delete.
	if c.all.Load() != t.all || c.stripes[c.stripeOf(e.key)].Load() != t.stripe {
		return
	}
	if _, ok := c.byCookie[ref]; !ok && len(c.byCookie) >= c.max {
		for victim := range c.byCookie { // map order is random: random eviction
			c.removeLocked(victim)
			break
		}
	}
	if old, ok := c.byCookie[ref]; ok && old.key != e.key {
		c.removeLocked(ref)
	}
	if _, ok := c.byCookie[ref]; !ok {
		c.byKey[e.key] = append(c.byKey[e.key], ref)
	}
	c.byCookie[ref] = e
}

func (c *Cache) removeLocked(ref cookieRef) {
	e, ok := c.byCookie[ref]
	if !ok {
		return
	}
	delete(c.byCookie, ref)
	refs := c.byKey[e.key]
	for i, r := range refs {
		if r == ref {
			refs = append(refs[:i], refs[i+1:]...)
			break
		}
	}
	if len(refs) == 0 {
		delete(c.byKey, e.key)
	} else {
		c.byKey[e.key] = refs
	}
}

// Invalidate implements sessionstore.Invalidator.
func (c *Cache) Invalidate(key string) {
	c.invalidations.Add(1)
	c.stripes[c.stripeOf(key)].Add(1)
	c.mu.Lock()
	for _, ref := range c.byKey[key] {
		delete(c.byCookie, ref)
	}
	delete(c.byKey, key)
	c.mu.Unlock()
}

// InvalidateAll implements sessionstore.Invalidator.
func (c *Cache) InvalidateAll() {
	c.invalidations.Add(1)
	c.all.Add(1)
	c.mu.Lock()
	clear(c.byCookie)
	clear(c.byKey)
	c.mu.Unlock()
}

// CacheStats are counters since start, for metrics.
type CacheStats struct {
	Hits, Misses, Invalidations uint64
	Entries                     int
}

// Synced reports whether the cache is in step with the store: its feed
// vouches for every write made before the call. While it is not, the
// cache serves nothing.
func (c *Cache) Synced(ctx context.Context) bool { return c.feed.Synced(ctx) }

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.RLock()
	n := len(c.byCookie)
	c.mu.RUnlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Invalidations: c.invalidations.Load(), Entries: n}
}
