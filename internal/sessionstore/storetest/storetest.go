// Package storetest is the conformance suite every sessionstore backend
// passes. A backend's own test calls Run with a Harness; a new backend is
// done when it passes this suite against a real server.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/oauth-sessions/internal/sessionstore"
)

// Harness tells the suite how to get stores.
type Harness struct {
	// New returns an empty, isolated store (its own table, key prefix or
	// collection) and closes it when the test ends.
	New func(t *testing.T) sessionstore.Backend
	// Restart, when set, restarts the server under a live client (or, for an
	// embedded store, closes and reopens it) and returns the store to use
	// afterwards. Records saved before must still be there.
	Restart func(t *testing.T, s sessionstore.Backend) sessionstore.Backend
	// Feed says the store is a sessionstore.ChangeFeed the app caches
	// sessions over; the suite then checks that it reports every write.
	Feed bool
	// Other, when set, returns a second handle on the same records, as
	// another app instance or the CLI has (its own client or connections).
	// Writes through it must reach the first handle's followers.
	Other func(t *testing.T, s sessionstore.Backend) sessionstore.Store
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"NotFound", testNotFound},
		{"SaveFind", testSaveFind},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"Expiry", testExpiry},
		{"Touch", testTouch},
		{"All", testAll},
		{"LargeRecord", testLarge},
		{"ConcurrentWriters", testConcurrent},
		{"ContextCancelled", testCancelled},
		{"ByOwner", testByOwner},
		{"SaveMany", testSaveMany},
		{"Lifetimes", testLifetimes},
		{"ChangeFeed", testChangeFeed},
		{"CachedSessions", testCachedSessions},
		{"Restart", testRestart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustSave(t *testing.T, s sessionstore.Store, key string, data []byte, exp time.Time) {
	t.Helper()
	mustSaveEntry(t, s, sessionstore.Entry{Key: key, Data: data, SeenAt: time.Now(), ExpiresAt: exp})
}

func mustSaveEntry(t *testing.T, s sessionstore.Store, e sessionstore.Entry) {
	t.Helper()
	if err := s.Save(ctx(t), e); err != nil {
		t.Fatalf("Save(%q): %v", e.Key, err)
	}
}

// find returns the data and expiry, failing the test on a system error.
func find(t *testing.T, s sessionstore.Store, key string) ([]byte, time.Time, bool) {
	t.Helper()
	e, found, err := s.Find(ctx(t), key)
	if err != nil {
		t.Fatalf("Find(%q): %v", key, err)
	}
	if found && e.Key != key {
		t.Fatalf("Find(%q) returned the entry of %q", key, e.Key)
	}
	return e.Data, e.ExpiresAt, found
}

func expectData(t *testing.T, s sessionstore.Store, key string, want []byte) time.Time {
	t.Helper()
	got, exp, found := find(t, s, key)
	if !found {
		t.Fatalf("Find(%q): not found, want %q", key, want)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Find(%q) = %q, want %q", key, got, want)
	}
	return exp
}

func expectGone(t *testing.T, s sessionstore.Store, key string) {
	t.Helper()
	if data, _, found := find(t, s, key); found {
		t.Fatalf("Find(%q) found %q, want not found", key, data)
	}
}

func sameSecond(t *testing.T, got, want time.Time) {
	t.Helper()
	if d := got.Sub(want); d > time.Second || d < -time.Second {
		t.Fatalf("expiry = %v, want %v (within a second)", got, want)
	}
}

func testNotFound(t *testing.T, h Harness) {
	s := h.New(t)
	expectGone(t, s, "missing-key")
}

func testSaveFind(t *testing.T, h Harness) {
	s := h.New(t)
	exp := time.Now().Add(time.Hour)
	mustSave(t, s, "k1", []byte("hello"), exp)
	sameSecond(t, expectData(t, s, "k1", []byte("hello")), exp)
}

func testOverwrite(t *testing.T, h Harness) {
	s := h.New(t)
	mustSave(t, s, "k", []byte("one"), time.Now().Add(time.Hour))
	exp := time.Now().Add(2 * time.Hour)
	mustSave(t, s, "k", []byte("two"), exp)
	sameSecond(t, expectData(t, s, "k", []byte("two")), exp)
}

func testDelete(t *testing.T, h Harness) {
	s := h.New(t)
	mustSave(t, s, "k", []byte("v"), time.Now().Add(time.Hour))
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	expectGone(t, s, "k")
	if err := s.Delete(ctx(t), "never-there"); err != nil {
		t.Fatalf("Delete of a missing key: %v, want nil", err)
	}
}

func testExpiry(t *testing.T, h Harness) {
	s := h.New(t)
	mustSave(t, s, "past", []byte("v"), time.Now().Add(-time.Second))
	expectGone(t, s, "past")

	exp := time.Now().Add(1500 * time.Millisecond)
	mustSave(t, s, "soon", []byte("v"), exp)
	expectData(t, s, "soon", []byte("v"))
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	expectGone(t, s, "soon")
}

func testTouch(t *testing.T, h Harness) {
	s := h.New(t)
	mustSave(t, s, "k", []byte("v"), time.Now().Add(1500*time.Millisecond))
	later := time.Now().Add(time.Hour)
	seen := time.Now().Add(time.Minute) // distinguishable from the save time
	if err := s.Touch(ctx(t), "k", seen, later); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	sameSecond(t, expectData(t, s, "k", []byte("v")), later)
	if e, _, _ := s.Find(ctx(t), "k"); !e.SeenAt.Truncate(time.Millisecond).Equal(seen.Truncate(time.Millisecond)) {
		t.Fatalf("SeenAt after Touch = %v, want %v", e.SeenAt, seen)
	}
	time.Sleep(1700 * time.Millisecond)
	expectData(t, s, "k", []byte("v")) // would be gone without the touch

	if err := s.Touch(ctx(t), "missing", seen, later); err != nil {
		t.Fatalf("Touch of a missing key: %v, want nil", err)
	}
	expectGone(t, s, "missing")
}

func testAll(t *testing.T, h Harness) {
	s := h.New(t)
	want := map[string]string{}
	for i := range 7 {
		k := fmt.Sprintf("live-%d", i)
		want[k] = fmt.Sprintf("data-%d", i)
		mustSave(t, s, k, []byte(want[k]), time.Now().Add(time.Hour))
	}
	mustSave(t, s, "expired", []byte("x"), time.Now().Add(-time.Minute))
	got := map[string]string{}
	for e, err := range s.All(ctx(t)) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if _, dup := got[e.Key]; dup {
			t.Fatalf("All yielded %q twice", e.Key)
		}
		got[e.Key] = string(e.Data)
		sameSecond(t, e.ExpiresAt, time.Now().Add(time.Hour))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("All = %v, want %v", got, want)
	}
	if c, ok := s.(sessionstore.Counter); ok {
		if n, err := c.CountLive(ctx(t)); err != nil || n != int64(len(want)) {
			t.Fatalf("CountLive = %d, %v; want %d", n, err, len(want))
		}
	}
	// Stopping early must be allowed.
	for range s.All(ctx(t)) {
		break
	}
}

func testLarge(t *testing.T, h Harness) {
	s := h.New(t)
	big := make([]byte, 64<<10)
	_, _ = rand.Read(big)
	mustSave(t, s, "big", big, time.Now().Add(time.Hour))
	expectData(t, s, "big", big)
}

func testConcurrent(t *testing.T, h Harness) {
	s := h.New(t)
	const writers = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx(t)
			exp := time.Now().Add(time.Hour)
			if err := s.Save(c, sessionstore.Entry{Key: fmt.Sprintf("w-%d", i), Owner: "many", Data: []byte(fmt.Sprint(i)), ExpiresAt: exp}); err != nil {
				errs <- err
			}
			if err := s.Save(c, sessionstore.Entry{Key: "shared", Data: []byte(fmt.Sprint(i)), ExpiresAt: exp}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Save: %v", err)
	}
	for i := range writers {
		expectData(t, s, fmt.Sprintf("w-%d", i), []byte(fmt.Sprint(i)))
	}
	if _, _, found := find(t, s, "shared"); !found {
		t.Fatal("shared key lost under concurrent writers")
	}
	if got, err := s.ByOwner(ctx(t), "many"); err != nil || len(got) != writers {
		t.Fatalf("ByOwner after concurrent writers: %d entries, %v; want %d", len(got), err, writers)
	}
}

func testCancelled(t *testing.T, h Harness) {
	s := h.New(t)
	mustSave(t, s, "k", []byte("v"), time.Now().Add(time.Hour))
	c, cancel := context.WithCancel(t.Context())
	cancel()
	if _, found, err := s.Find(c, "k"); err == nil || found {
		t.Fatalf("Find with a cancelled context = found %v, err %v; want an error", found, err)
	}
	if err := s.Save(c, sessionstore.Entry{Key: "k2", Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err == nil {
		t.Fatal("Save with a cancelled context succeeded; want an error")
	}
	expectData(t, s, "k", []byte("v"))
}

func testRestart(t *testing.T, h Harness) {
	if h.Restart == nil {
		// Not a skip: a store with no server to restart has nothing to
		// prove here, and the harness says so by leaving Restart nil.
		t.Log("store has no server to restart")
		return
	}
	s := h.New(t)
	mustSave(t, s, "before", []byte("kept"), time.Now().Add(time.Hour))
	s = h.Restart(t, s)
	// The client must reconnect by itself; give it a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, found, err := s.Find(ctx(t), "before")
		if err == nil {
			if !found || string(e.Data) != "kept" {
				t.Fatalf("after restart: found %v data %q, want %q", found, e.Data, "kept")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 10s of a restart: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustSave(t, s, "after", []byte("new"), time.Now().Add(time.Hour))
	expectData(t, s, "after", []byte("new"))
}

func owned(t *testing.T, s sessionstore.Store, owner string) string {
	t.Helper()
	entries, err := s.ByOwner(ctx(t), owner)
	if err != nil {
		t.Fatalf("ByOwner: %v", err)
	}
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		keys = append(keys, e.Key)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

func testByOwner(t *testing.T, h Harness) {
	s := h.New(t)
	hour := time.Now().Add(time.Hour)
	mustSaveEntry(t, s, sessionstore.Entry{Key: "a1", Owner: "alice", Data: []byte("1"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "a2", Owner: "alice", Data: []byte("2"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "b1", Owner: "bob", Data: []byte("3"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "a-old", Owner: "alice", Data: []byte("4"), ExpiresAt: time.Now().Add(-time.Second)})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "anon", Data: []byte("5"), ExpiresAt: hour})

	if got := owned(t, s, "alice"); got != "a1,a2" {
		t.Fatalf("ByOwner(alice) = %s, want a1,a2", got)
	}
	e, found, err := s.Find(ctx(t), "a1")
	if err != nil || !found || e.Owner != "alice" {
		t.Fatalf("Find(a1) = %+v, %v, %v; want owner alice", e, found, err)
	}
	if err := s.Delete(ctx(t), "a2"); err != nil {
		t.Fatal(err)
	}
	if got := owned(t, s, "alice"); got != "a1" {
		t.Fatalf("ByOwner(alice) after deleting a2 = %s, want a1", got)
	}
	if got := owned(t, s, "nobody"); got != "" {
		t.Fatalf("ByOwner(nobody) = %s, want none", got)
	}
	if got := owned(t, s, "bob"); got != "b1" {
		t.Fatalf("ByOwner(bob) = %s, want b1", got)
	}
	// Save replaces the owner too.
	mustSaveEntry(t, s, sessionstore.Entry{Key: "b1", Owner: "carol", Data: []byte("3"), ExpiresAt: hour})
	if got := owned(t, s, "bob") + "|" + owned(t, s, "carol"); got != "|b1" {
		t.Fatalf("after moving b1 to carol: bob|carol = %s, want |b1", got)
	}
	// A session kept alive by touches stays in its owner's index past the
	// expiry it was saved with (idle timeouts save short expiries).
	mustSaveEntry(t, s, sessionstore.Entry{Key: "t1", Owner: "tina", Data: []byte("t"), ExpiresAt: time.Now().Add(1200 * time.Millisecond)})
	if err := s.Touch(ctx(t), "t1", time.Now(), hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // past the first expiry and any grace an index adds
	if got := owned(t, s, "tina"); got != "t1" {
		t.Fatalf("ByOwner(tina) after a touch outlived the first expiry = %q, want t1", got)
	}
}

// testSaveMany checks the optional batch write: Save's semantics per entry.
func testSaveMany(t *testing.T, h Harness) {
	s := h.New(t)
	bs, ok := s.(sessionstore.BatchSaver)
	if !ok {
		t.Log("store has no batch write; Save serves bulk copies")
		return
	}
	hour := time.Now().Add(time.Hour)
	mustSave(t, s, "x", []byte("old"), hour)
	var batch []sessionstore.Entry
	for i := range 1200 { // more than one internal batch
		batch = append(batch, sessionstore.Entry{Key: fmt.Sprint("m", i), Owner: "bulk", Data: []byte(fmt.Sprint(i)), ExpiresAt: hour})
	}
	batch = append(batch, sessionstore.Entry{Key: "x", Data: []byte("new"), ExpiresAt: hour})
	for range 2 { // twice: idempotent
		if err := bs.SaveMany(ctx(t), batch); err != nil {
			t.Fatalf("SaveMany: %v", err)
		}
	}
	expectData(t, s, "x", []byte("new"))
	expectData(t, s, "m1199", []byte("1199"))
	if got, err := s.ByOwner(ctx(t), "bulk"); err != nil || len(got) != 1200 {
		t.Fatalf("ByOwner after SaveMany: %d, %v; want 1200", len(got), err)
	}
}

// testLifetimes runs the app's session layer over the store: an idle
// timeout kept at bay by lazy touches, and an absolute lifetime that no
// activity extends. Expiry is enforced on read whatever the store evicts.
func testLifetimes(t *testing.T, h Harness) {
	s := h.New(t)
	codec, err := sessionstore.NewCodec([]string{"lifetimes-secret-0123456789abcdef012345"}, 60)
	if err != nil {
		t.Fatal(err)
	}
	newSession := func(ttl time.Duration) (*sessionstore.GorillaStore, *http.Cookie) {
		g := sessionstore.NewGorillaStore(s, codec, sessionstore.Options{Kind: "login", TTL: ttl, IdleTimeout: time.Second, TouchAfter: 300 * time.Millisecond})
		c, _ := signIn(t, g, "ada")
		return g, c
	}
	alive := func(g *sessionstore.GorillaStore, c *http.Cookie) bool {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(c)
		sess, err := g.New(r, "sid")
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		return !sess.IsNew
	}

	g, c := newSession(time.Hour)
	for range 3 { // used every 700ms: past the 1s idle timeout only through touches
		time.Sleep(700 * time.Millisecond)
		if !alive(g, c) {
			t.Fatal("an active session hit the idle timeout")
		}
	}
	time.Sleep(1300 * time.Millisecond)
	if alive(g, c) {
		t.Fatal("a session idle for longer than the idle timeout is still alive")
	}

	g, c = newSession(1500 * time.Millisecond)
	time.Sleep(700 * time.Millisecond)
	if !alive(g, c) {
		t.Fatal("session gone before its absolute lifetime")
	}
	time.Sleep(1000 * time.Millisecond) // 1.7s: past the absolute 1.5s, though touched
	if alive(g, c) {
		t.Fatal("activity extended the absolute lifetime")
	}
}

// Recorder is an Invalidator that remembers what it was told.
type Recorder struct {
	mu   sync.Mutex
	keys map[string]bool
	all  int
}

// Invalidate implements sessionstore.Invalidator.
func (r *Recorder) Invalidate(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]bool{}
	}
	r.keys[key] = true
}

// InvalidateAll implements sessionstore.Invalidator.
func (r *Recorder) InvalidateAll() {
	r.mu.Lock()
	r.all++
	r.mu.Unlock()
}

// Saw reports whether key was invalidated since Reset.
func (r *Recorder) Saw(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

// Everything reports whether everything was invalidated since Reset.
func (r *Recorder) Everything() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all > 0
}

// SawOrAll reports whether key, or everything, was invalidated since Reset.
func (r *Recorder) SawOrAll(key string) bool { return r.Saw(key) || r.Everything() }

// Reset forgets what was reported.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.keys, r.all = nil, 0
	r.mu.Unlock()
}

// signIn saves a new session of g holding user and returns its cookie and
// store key, as a sign-in leaves them.
func signIn(t testing.TB, g *sessionstore.GorillaStore, user any) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	sess := g.Fresh(r, "sid")
	sess.Values["user"] = user
	if err := sess.Save(r, w); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()[0], sessionstore.KeyOf(sess)
}

// waitSynced waits until the feed vouches for its followers (Redis
// subscribes in the background; SQLite starts polling when first asked).
func waitSynced(t testing.TB, feed sessionstore.ChangeFeed) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !feed.Synced(t.Context()) {
		if time.Now().After(deadline) {
			t.Fatal("change feed not synced within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// testChangeFeed checks what makes caching safe: the store's own writes
// are reported before they return, and writes through another handle (the
// same records from another instance) are reported soon after.
func testChangeFeed(t *testing.T, h Harness) {
	if !h.Feed {
		t.Log("store does not report writes made elsewhere: the app reads it on every request")
		return
	}
	s := h.New(t)
	feed, ok := s.(sessionstore.ChangeFeed)
	if !ok {
		t.Fatalf("%T does not implement sessionstore.ChangeFeed", s)
	}
	rec := &Recorder{}
	feed.Follow(rec)
	waitSynced(t, feed)
	exp := time.Now().Add(time.Hour)
	writes := func(st sessionstore.Store, key string) []struct {
		name string
		do   func() error
	} {
		return []struct {
			name string
			do   func() error
		}{
			{"save", func() error { return st.Save(ctx(t), sessionstore.Entry{Key: key, Data: []byte("v"), ExpiresAt: exp}) }},
			{"overwrite", func() error { return st.Save(ctx(t), sessionstore.Entry{Key: key, Data: []byte("w"), ExpiresAt: exp}) }},
			{"touch", func() error { return st.Touch(ctx(t), key, time.Now(), exp.Add(time.Minute)) }},
			{"delete", func() error { return st.Delete(ctx(t), key) }},
		}
	}
	for _, w := range writes(s, "own") {
		rec.Reset()
		if err := w.do(); err != nil {
			t.Fatal(err)
		}
		if !rec.SawOrAll("own") {
			t.Fatalf("own %s was not reported before it returned", w.name)
		}
	}
	if h.Other == nil {
		t.Log("no second handle on this store's records: only its own writes exist")
		return
	}
	o := h.Other(t, s)
	var worst time.Duration
	for _, w := range writes(o, "theirs") {
		waitSynced(t, feed)
		rec.Reset()
		if err := w.do(); err != nil {
			t.Fatal(err)
		}
		done := time.Now()
		for !rec.SawOrAll("theirs") {
			feed.Synced(ctx(t)) // stores that poll learn of changes when asked
			if time.Since(done) > 2*time.Second {
				t.Fatalf("%s through another handle not reported within 2s", w.name)
			}
			time.Sleep(100 * time.Microsecond)
		}
		worst = max(worst, time.Since(done))
	}
	t.Logf("writes through another handle reported within %s", worst)
}

// testCachedSessions runs the app's session layer with its cache over the
// store: repeated checks are answered from memory, and a session deleted
// through another handle (a sign-out on another instance, a revoke from
// the CLI) stops being served.
func testCachedSessions(t *testing.T, h Harness) {
	if !h.Feed {
		t.Log("store does not report writes made elsewhere: the app does not cache its sessions")
		return
	}
	s := h.New(t)
	cache := sessionstore.NewCache(s.(sessionstore.ChangeFeed), 100)
	waitSynced(t, s.(sessionstore.ChangeFeed))
	codec, err := sessionstore.NewCodec([]string{"cache-secret-0123456789abcdef0123456789"}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	g := sessionstore.NewGorillaStore(s, codec, sessionstore.Options{Kind: "login", TTL: time.Hour, TouchAfter: time.Minute, Cache: cache})
	cookie, key := signIn(t, g, "ada")
	load := func() (string, bool) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(cookie)
		sess, err := g.New(r, "sid")
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		u, _ := sessionstore.Value[string](sess, "user")
		return u, !sess.IsNew
	}
	before := cache.Stats().Hits
	for range 50 {
		if u, ok := load(); !ok || u != "ada" {
			t.Fatalf("load = %q, %v; want ada", u, ok)
		}
	}
	if hits := cache.Stats().Hits - before; hits < 40 {
		t.Fatalf("%d of 50 repeated loads answered from the cache, want most", hits)
	}

	var other sessionstore.Store = s
	if h.Other != nil {
		other = h.Other(t, s)
	}
	if err := other.Delete(ctx(t), key); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	for {
		if _, ok := load(); !ok {
			break
		}
		if time.Since(done) > 2*time.Second {
			t.Fatal("session deleted elsewhere still served from the cache after 2s")
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Logf("deleted session stopped being served after %s", time.Since(done))
	for range 20 {
		if _, ok := load(); ok {
			t.Fatal("deleted session came back")
		}
	}
}
