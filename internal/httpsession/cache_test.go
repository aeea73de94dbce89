package httpsession_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/fakeclock"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore/memstore"
)

// feedSwitch is a memory store whose change feed can be turned off, as a
// server store's is while its invalidation connection is down. (A real feed
// also reports what it missed when it comes back; this one misses nothing.)
type feedSwitch struct {
	*memstore.Store
	off atomic.Bool
}

func (f *feedSwitch) Synced(ctx context.Context) bool { return !f.off.Load() && f.Store.Synced(ctx) }

type cachedFixture struct {
	g     *httpsession.Manager
	cache *httpsession.Cache
	back  *counting
	feed  *feedSwitch
	codec *httpsession.Codec
	clock *fakeclock.Clock
}

func newCached(t *testing.T, size int, kind httpsession.Kind) *cachedFixture {
	t.Helper()
	clock := fakeclock.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	mem := memstore.New(memstore.Options{Now: clock.Now})
	t.Cleanup(func() { mem.Close() })
	f := &cachedFixture{feed: &feedSwitch{Store: mem}, back: &counting{Backend: mem}, clock: clock}
	f.cache = httpsession.NewCache(f.feed, size)
	var err error
	f.codec, err = httpsession.NewCodec([]string{"a-secret-for-tests-0123456789abcdef"}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	kind.Name, kind.Cookie, kind.Cache = httpsession.KindLogin, "sid", f.cache
	if kind.TTL == 0 {
		kind.TTL = time.Hour
	}
	f.g = httpsession.NewManager(f.back, f.codec, httpsession.Options{Kinds: []httpsession.Kind{kind}, Now: clock.Now})
	return f
}

// login saves a session for user and returns its cookie and store key.
func (f *cachedFixture) login(t *testing.T, user string) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	s, err := f.g.Fresh(r, "sid")
	if err != nil {
		t.Fatal(err)
	}
	s.Values["user"] = user
	if err := s.Save(r, w); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()[0], httpsession.KeyOf(s)
}

// user loads the session of cookie and returns its user ("" for none).
func (f *cachedFixture) user(t *testing.T, c *http.Cookie) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	s, err := f.g.New(r, "sid")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := httpsession.Value[string](s, "user")
	return u
}

func TestCacheAnswersRepeatedChecks(t *testing.T) {
	f := newCached(t, 10, httpsession.Kind{TouchAfter: time.Minute})
	c, _ := f.login(t, "ada")
	for range 100 {
		if u := f.user(t, c); u != "ada" {
			t.Fatalf("user = %q, want ada", u)
		}
	}
	if n := f.back.finds.Load(); n != 1 {
		t.Fatalf("100 checks read the store %d times, want 1", n)
	}
	if st := f.cache.Stats(); st.Hits != 99 || st.Entries != 1 {
		t.Fatalf("stats = %+v, want 99 hits and 1 entry", st)
	}
}

func TestCacheForgetsWrittenSessions(t *testing.T) {
	f := newCached(t, 10, httpsession.Kind{})
	c, key := f.login(t, "ada")
	f.user(t, c)

	// A revoke (or a sign-out elsewhere) is seen by the next check.
	if err := f.g.Revoke(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if u := f.user(t, c); u != "" {
		t.Fatalf("revoked session still served as %q", u)
	}

	// A sign-out through the session itself.
	c, _ = f.login(t, "bob")
	f.user(t, c)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.AddCookie(c)
	s, _ := f.g.New(r, "sid")
	s.Options.MaxAge = -1
	if err := s.Save(r, httptest.NewRecorder()); err != nil {
		t.Fatal(err)
	}
	if u := f.user(t, c); u != "" {
		t.Fatalf("signed-out session still served as %q", u)
	}

	// A write straight to the store (another component, a migration).
	c, key = f.login(t, "eve")
	f.user(t, c)
	if err := f.feed.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if u := f.user(t, c); u != "" {
		t.Fatalf("session deleted in the store still served as %q", u)
	}
}

func TestCacheServesNothingOutOfSync(t *testing.T) {
	f := newCached(t, 10, httpsession.Kind{})
	c, _ := f.login(t, "ada")
	f.feed.off.Store(true)
	before := f.back.finds.Load()
	for range 5 {
		if u := f.user(t, c); u != "ada" {
			t.Fatalf("user = %q", u)
		}
	}
	if n := f.back.finds.Load() - before; n != 5 {
		t.Fatalf("out of sync: %d of 5 checks read the store, want all", n)
	}
	// Nothing read while out of sync is kept: back in sync, the first
	// check reads again.
	f.feed.off.Store(false)
	before = f.back.finds.Load()
	f.user(t, c)
	f.user(t, c)
	if n := f.back.finds.Load() - before; n != 1 {
		t.Fatalf("back in sync: %d store reads for 2 checks, want 1", n)
	}
}

func TestCacheRejectsBadCookies(t *testing.T) {
	f := newCached(t, 10, httpsession.Kind{})
	c, _ := f.login(t, "ada")
	f.user(t, c)
	tampered := *c
	tampered.Value = c.Value[:len(c.Value)-2] + "AA"
	if u := f.user(t, &tampered); u != "" {
		t.Fatalf("tampered cookie accepted as %q", u)
	}
	renamed := *c
	renamed.Name = "sid-other"
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&renamed)
	if s, err := f.g.New(r, "sid-other"); err == nil || !s.IsNew {
		t.Fatal("a cookie of no known kind was accepted")
	}
	hostile := *c
	hostile.Name = "__Host-sid" // the same kind, another name: the signature covers the name
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&hostile)
	if s, _ := f.g.New(r, "__Host-sid"); !s.IsNew {
		t.Fatal("a cookie signed for another name was accepted")
	}
	if n := f.cache.Stats().Entries; n != 1 {
		t.Fatalf("cache holds %d entries, want only the valid cookie's", n)
	}
}

func TestCacheChecksLifetimesOnEveryHit(t *testing.T) {
	// Absolute lifetime.
	f := newCached(t, 10, httpsession.Kind{TTL: 300 * time.Millisecond})
	c, _ := f.login(t, "ada")
	f.user(t, c)
	f.clock.Advance(400 * time.Millisecond)
	if u := f.user(t, c); u != "" {
		t.Fatalf("expired session served from the cache as %q", u)
	}

	// Idle timeout: kept alive by use (touches on cache hits), then idle.
	f = newCached(t, 10, httpsession.Kind{IdleTimeout: 400 * time.Millisecond, TouchAfter: 100 * time.Millisecond})
	c, _ = f.login(t, "ada")
	for range 8 { // 8 × 150ms: three times the idle timeout, through touches
		f.clock.Advance(150 * time.Millisecond)
		if u := f.user(t, c); u != "ada" {
			t.Fatal("an active session hit the idle timeout")
		}
	}
	if n := f.back.touches.Load(); n != 8 {
		t.Fatalf("%d touches while in use, want one per check past TouchAfter (8)", n)
	}
	f.clock.Advance(500 * time.Millisecond)
	if u := f.user(t, c); u != "" {
		t.Fatalf("idle session served from the cache as %q", u)
	}
}

func TestCacheEvicts(t *testing.T) {
	f := newCached(t, 2, httpsession.Kind{})
	var cookies []*http.Cookie
	for _, u := range []string{"ada", "bob", "eve", "joe"} {
		c, _ := f.login(t, u)
		cookies = append(cookies, c)
	}
	for range 3 {
		for i, u := range []string{"ada", "bob", "eve", "joe"} {
			if got := f.user(t, cookies[i]); got != u {
				t.Fatalf("user = %q, want %q", got, u)
			}
		}
	}
	if n := f.cache.Stats().Entries; n > 2 {
		t.Fatalf("cache of size 2 holds %d entries", n)
	}
}

// TestCacheNeverResurrects races checks that miss (their reads in flight)
// against deletions: once Delete has returned, no check may see the
// session, even one whose read began before the delete.
func TestCacheNeverResurrects(t *testing.T) {
	f := newCached(t, 100, httpsession.Kind{})
	for round := range 50 {
		c, key := f.login(t, "ada")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						f.user(t, c)
					}
				}
			})
		}
		wg.Go(func() { // force misses: reads in flight while the delete lands
			for {
				select {
				case <-stop:
					return
				default:
					f.cache.InvalidateAll()
				}
			}
		})
		// Let the readers get going before the revoke lands.
		for started := f.back.finds.Load(); f.back.finds.Load() < started+10; {
			runtime.Gosched()
		}
		if err := f.g.Revoke(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if u := f.user(t, c); u != "" {
				close(stop)
				wg.Wait()
				t.Fatalf("round %d: revoked session served as %q", round, u)
			}
		}
		close(stop)
		wg.Wait()
	}
}
