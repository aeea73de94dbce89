// Package storetest is the conformance suite every sessionstore backend
// passes. A backend's own test calls Run with a Harness; a new backend is
// done when it passes this suite against a real server.
//
// Time is a parameter: each test gets a fresh store on a fake clock and
// moves the clock instead of sleeping. The one exception is ServerExpiry,
// for backends whose server expires records on its own clock: that test
// waits in real time, because the server's expiry is what it tests.
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

	"example.com/oauth-sessions/internal/fakeclock"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/testservers"
)

// Capability is an optional part of the contract. A harness declares the
// ones its backend has; the suite fails when a declared one is missing or
// an undeclared one is present, so a capability test can never pass by
// not running.
type Capability string

// The capabilities.
const (
	// ChangeFeed: sessionstore.ChangeFeed, reporting every write, its own
	// and (with OtherHandle) those made through another handle.
	ChangeFeed Capability = "ChangeFeed"
	// BatchSave: sessionstore.BatchSaver.
	BatchSave Capability = "BatchSave"
	// Count: sessionstore.Counter.
	Count Capability = "Count"
	// SweepExpired: sessionstore.ExpirySweeper.
	SweepExpired Capability = "SweepExpired"
	// Backup: sessionstore.Backuper.
	Backup Capability = "Backup"
	// Restart: Harness.Restart restarts the server (or reopens the file)
	// under a live client; records survive.
	Restart Capability = "Restart"
	// OtherHandle: Harness.Other opens a second handle on the same records,
	// as another app instance or the CLI has.
	OtherHandle Capability = "OtherHandle"
	// ServerExpiry: the server evicts records on its own clock (its TTLs),
	// which no fake clock moves.
	ServerExpiry Capability = "ServerExpiry"
	// RateCount: sessionstore.RateCounter, shared by every handle.
	RateCount Capability = "RateCount"
)

// Harness tells the suite how to get stores.
type Harness struct {
	// New returns an empty, isolated store (its own table, key prefix or
	// collection) whose expiry follows now, and closes it when the test
	// ends.
	New func(t *testing.T, now func() time.Time) sessionstore.Backend
	// Capabilities lists what the backend has beyond the Store contract.
	Capabilities []Capability
	// Restart restarts the server under a live client (or, for an embedded
	// store, closes and reopens it) and returns the store to use
	// afterwards.
	Restart func(t *testing.T, s sessionstore.Backend) sessionstore.Backend
	// Other returns a second handle on s's records (its own client or
	// connections). Writes through it must reach s's followers.
	Other func(t *testing.T, s sessionstore.Backend) sessionstore.Store
}

func (h Harness) has(c Capability) bool { return slices.Contains(h.Capabilities, c) }

// env is what each test works with: a store and the clock it runs on.
type env struct {
	s     sessionstore.Backend
	clock *fakeclock.Clock
}

func newEnv(t *testing.T, h Harness) env {
	t.Helper()
	clock := fakeclock.New(time.Now().Truncate(time.Millisecond))
	return env{s: h.New(t, clock.Now), clock: clock}
}

// now is the store's time.
func (e env) now() time.Time { return e.clock.Now() }

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Capabilities", testCapabilities},
		{"NotFound", testNotFound},
		{"SaveFind", testSaveFind},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"Take", testTake},
		{"TakeOnce", testTakeOnce},
		{"Insert", testInsert},
		{"InsertOnce", testInsertOnce},
		{"RefreshOnce", testRefreshOnce},
		{"RefreshInterrupted", testRefreshInterrupted},
		{"Expiry", testExpiry},
		{"Touch", testTouch},
		{"All", testAll},
		{"LargeRecord", testLarge},
		{"ConcurrentWriters", testConcurrent},
		{"ContextCancelled", testCancelled},
		{"ByOwner", testByOwner},
		{"Lifetimes", testLifetimes},
		{"SaveMany", testSaveMany},
		{"Counter", testCounter},
		{"DeleteExpired", testDeleteExpired},
		{"Backup", testBackup},
		{"RateCount", testRateCount},
		{"ChangeFeed", testChangeFeed},
		{"CachedSessions", testCachedSessions},
		{"ServerExpiry", testServerExpiry},
		{"Restart", testRestart}, // last: a restarted cluster takes a moment to be whole again
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// testCapabilities holds each declaration to what the backend is.
func testCapabilities(t *testing.T, h Harness) {
	s := newEnv(t, h).s
	implemented := map[Capability]bool{
		ChangeFeed:   is[sessionstore.ChangeFeed](s),
		BatchSave:    is[sessionstore.BatchSaver](s),
		Count:        is[sessionstore.Counter](s),
		SweepExpired: is[sessionstore.ExpirySweeper](s),
		Backup:       is[sessionstore.Backuper](s),
		RateCount:    is[sessionstore.RateCounter](s),
		Restart:      h.Restart != nil,
		OtherHandle:  h.Other != nil,
	}
	for c, ok := range implemented {
		if ok != h.has(c) {
			t.Errorf("capability %s: declared %v, present %v", c, h.has(c), ok)
		}
	}
}

func is[T any](s sessionstore.Backend) bool {
	_, ok := sessionstore.As[T](s)
	return ok
}

// require fails a capability test whose capability is not declared: the
// suite only runs it where declared (and Capabilities checks the rest).
func require(t *testing.T, h Harness, c Capability) bool {
	t.Helper()
	if !h.has(c) {
		t.Logf("not declared: %s (the Capabilities test checks the backend lacks it)", c)
		return false
	}
	return true
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
	s := newEnv(t, h).s
	expectGone(t, s, "missing-key")
}

func testSaveFind(t *testing.T, h Harness) {
	e := newEnv(t, h)
	exp := e.now().Add(time.Hour)
	mustSave(t, e.s, "k1", []byte("hello"), exp)
	sameSecond(t, expectData(t, e.s, "k1", []byte("hello")), exp)
}

func testOverwrite(t *testing.T, h Harness) {
	e := newEnv(t, h)
	mustSave(t, e.s, "k", []byte("one"), e.now().Add(time.Hour))
	exp := e.now().Add(2 * time.Hour)
	mustSave(t, e.s, "k", []byte("two"), exp)
	sameSecond(t, expectData(t, e.s, "k", []byte("two")), exp)
}

func testDelete(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	mustSave(t, s, "k", []byte("v"), e.now().Add(time.Hour))
	if err := s.Delete(ctx(t), "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	expectGone(t, s, "k")
	if err := s.Delete(ctx(t), "never-there"); err != nil {
		t.Fatalf("Delete of a missing key: %v, want nil", err)
	}
}

// testTake: Take returns the record and removes it; a missing or expired
// record is not returned (and an expired one is gone after).
func testTake(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	mustSaveEntry(t, s, sessionstore.Entry{Key: "k", Owners: []string{"o"}, Data: []byte("v"), SeenAt: e.now(), ExpiresAt: e.now().Add(time.Hour)})
	got, found, err := s.Take(ctx(t), "k")
	if err != nil || !found || string(got.Data) != "v" || !slices.Equal(got.Owners, []string{"o"}) || got.Key != "k" {
		t.Fatalf("Take = %+v, %v, %v; want the record", got, found, err)
	}
	sameSecond(t, got.ExpiresAt, e.now().Add(time.Hour))
	expectGone(t, s, "k")
	if _, found, err := s.Take(ctx(t), "k"); err != nil || found {
		t.Fatalf("second Take = %v, %v; want not found", found, err)
	}
	if _, found, err := s.Take(ctx(t), "never-there"); err != nil || found {
		t.Fatalf("Take of a missing key = %v, %v; want not found, no error", found, err)
	}
	mustSave(t, s, "old", []byte("v"), e.now().Add(time.Minute))
	e.clock.Advance(2 * time.Minute)
	if _, found, err := s.Take(ctx(t), "old"); err != nil || found {
		t.Fatalf("Take of an expired record = %v, %v; want not found", found, err)
	}
}

// testTakeOnce: of many concurrent Takes of one record, exactly one gets
// it: a login in progress finishes once, however many callbacks race.
func testTakeOnce(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	const takers, rounds = 20, 10
	for round := range rounds {
		key := fmt.Sprint("once-", round)
		mustSave(t, s, key, []byte("v"), e.now().Add(time.Hour))
		var wins sync.WaitGroup
		var mu sync.Mutex
		won := 0
		start := make(chan struct{})
		for range takers {
			wins.Go(func() {
				<-start
				_, found, err := s.Take(ctx(t), key)
				if err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if found {
					mu.Lock()
					won++
					mu.Unlock()
				}
			})
		}
		close(start)
		wins.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d of %d concurrent Takes got the record, want exactly 1", round, won, takers)
		}
	}
}

func testExpiry(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	mustSave(t, s, "past", []byte("v"), e.now().Add(-time.Second))
	expectGone(t, s, "past")

	mustSave(t, s, "soon", []byte("v"), e.now().Add(1500*time.Millisecond))
	expectData(t, s, "soon", []byte("v"))
	e.clock.Advance(1499 * time.Millisecond)
	expectData(t, s, "soon", []byte("v"))
	e.clock.Advance(2 * time.Millisecond)
	expectGone(t, s, "soon")
	if err := s.Touch(ctx(t), "soon", e.now(), e.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	expectGone(t, s, "soon") // a touch does not revive an expired record
}

func testTouch(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	mustSave(t, s, "k", []byte("v"), e.now().Add(1500*time.Millisecond))
	later := e.now().Add(time.Hour)
	seen := e.now().Add(time.Minute) // distinguishable from the save time
	if err := s.Touch(ctx(t), "k", seen, later); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	sameSecond(t, expectData(t, s, "k", []byte("v")), later)
	if e, _, _ := s.Find(ctx(t), "k"); !e.SeenAt.Truncate(time.Millisecond).Equal(seen.Truncate(time.Millisecond)) {
		t.Fatalf("SeenAt after Touch = %v, want %v", e.SeenAt, seen)
	}
	e.clock.Advance(1700 * time.Millisecond)
	expectData(t, s, "k", []byte("v")) // would be gone without the touch

	if err := s.Touch(ctx(t), "missing", seen, later); err != nil {
		t.Fatalf("Touch of a missing key: %v, want nil", err)
	}
	expectGone(t, s, "missing")
}

func testAll(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	want := map[string]string{}
	for i := range 7 {
		k := fmt.Sprintf("live-%d", i)
		want[k] = fmt.Sprintf("data-%d", i)
		mustSave(t, s, k, []byte(want[k]), e.now().Add(time.Hour))
	}
	mustSave(t, s, "expired", []byte("x"), e.now().Add(-time.Minute))
	got := map[string]string{}
	for entry, err := range s.All(ctx(t)) {
		if err != nil {
			t.Fatalf("All: %v", err)
		}
		if _, dup := got[entry.Key]; dup {
			t.Fatalf("All yielded %q twice", entry.Key)
		}
		got[entry.Key] = string(entry.Data)
		sameSecond(t, entry.ExpiresAt, e.now().Add(time.Hour))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("All = %v, want %v", got, want)
	}
	// Stopping early must be allowed.
	for range s.All(ctx(t)) {
		break
	}
}

func testLarge(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	big := make([]byte, 64<<10)
	_, _ = rand.Read(big)
	mustSave(t, s, "big", big, e.now().Add(time.Hour))
	expectData(t, s, "big", big)
}

func testConcurrent(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	const writers = 100
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx(t)
			exp := e.now().Add(time.Hour)
			if err := s.Save(c, sessionstore.Entry{Key: fmt.Sprintf("w-%d", i), Owners: []string{"many"}, Data: []byte(fmt.Sprint(i)), ExpiresAt: exp}); err != nil {
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
	e := newEnv(t, h)
	s := e.s
	mustSave(t, s, "k", []byte("v"), e.now().Add(time.Hour))
	c, cancel := context.WithCancel(t.Context())
	cancel()
	if _, found, err := s.Find(c, "k"); err == nil || found {
		t.Fatalf("Find with a cancelled context = found %v, err %v; want an error", found, err)
	}
	if err := s.Save(c, sessionstore.Entry{Key: "k2", Data: []byte("v"), ExpiresAt: e.now().Add(time.Hour)}); err == nil {
		t.Fatal("Save with a cancelled context succeeded; want an error")
	}
	expectData(t, s, "k", []byte("v"))
}

func testRestart(t *testing.T, h Harness) {
	if !require(t, h, Restart) {
		return
	}
	e := newEnv(t, h)
	s := e.s
	mustSave(t, s, "before", []byte("kept"), e.now().Add(time.Hour))
	s = h.Restart(t, s)
	// The client must reconnect by itself; give it a few seconds.
	var err error
	testservers.WaitUntil(t, 10*time.Second, func() bool {
		_, _, err = s.Find(ctx(t), "before")
		return err == nil
	}, "the store answering after a restart (last: %v)", errOf{&err})
	expectData(t, s, "before", []byte("kept"))
	// A cluster answers reads before every shard takes writes again.
	testservers.WaitUntil(t, 10*time.Second, func() bool {
		err = s.Save(ctx(t), sessionstore.Entry{Key: "after", Data: []byte("new"), ExpiresAt: e.now().Add(time.Hour)})
		return err == nil
	}, "the store taking writes after a restart (last: %v)", errOf{&err})
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
	e := newEnv(t, h)
	s := e.s
	hour := e.now().Add(time.Hour)
	mustSaveEntry(t, s, sessionstore.Entry{Key: "a1", Owners: []string{"alice"}, Data: []byte("1"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "a2", Owners: []string{"alice"}, Data: []byte("2"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "b1", Owners: []string{"bob"}, Data: []byte("3"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "a-old", Owners: []string{"alice"}, Data: []byte("4"), ExpiresAt: e.now().Add(-time.Second)})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "anon", Data: []byte("5"), ExpiresAt: hour})

	if got := owned(t, s, "alice"); got != "a1,a2" {
		t.Fatalf("ByOwner(alice) = %s, want a1,a2", got)
	}
	a1, found, err := s.Find(ctx(t), "a1")
	if err != nil || !found || !slices.Equal(a1.Owners, []string{"alice"}) {
		t.Fatalf("Find(a1) = %+v, %v, %v; want owner alice", a1, found, err)
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
	mustSaveEntry(t, s, sessionstore.Entry{Key: "b1", Owners: []string{"carol"}, Data: []byte("3"), ExpiresAt: hour})
	if got := owned(t, s, "bob") + "|" + owned(t, s, "carol"); got != "|b1" {
		t.Fatalf("after moving b1 to carol: bob|carol = %s, want |b1", got)
	}
	// Several owners: a login filed under its user, its subject and its
	// session at the provider is found under each, and leaves every index
	// when saved with fewer owners, deleted or taken.
	many := []string{"user:ada", "sub:google|1", "sid:google|s1"}
	mustSaveEntry(t, s, sessionstore.Entry{Key: "m1", Owners: many, Data: []byte("m"), ExpiresAt: hour})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "m2", Owners: many[:2], Data: []byte("m"), ExpiresAt: hour})
	for _, o := range many {
		want := "m1,m2"
		if o == many[2] {
			want = "m1"
		}
		if got := owned(t, s, o); got != want {
			t.Fatalf("ByOwner(%s) = %q, want %s", o, got, want)
		}
	}
	if m1, _, err := s.Find(ctx(t), "m1"); err != nil || !sameSet(m1.Owners, many) {
		t.Fatalf("Find(m1).Owners = %q, %v; want %q", m1.Owners, err, many)
	}
	mustSaveEntry(t, s, sessionstore.Entry{Key: "m1", Owners: many[:1], Data: []byte("m"), ExpiresAt: hour})
	if got := owned(t, s, many[1]) + "|" + owned(t, s, many[2]); got != "m2|" {
		t.Fatalf("after saving m1 with one owner: %s, want m2|", got)
	}
	if err := s.Delete(ctx(t), "m2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Take(ctx(t), "m1"); err != nil {
		t.Fatal(err)
	}
	for _, o := range many {
		if got := owned(t, s, o); got != "" {
			t.Fatalf("ByOwner(%s) after delete and take = %q, want none", o, got)
		}
	}
	// A session kept alive by touches stays in its owner's index past the
	// expiry it was saved with (idle timeouts save short expiries).
	// (ServerExpiry checks the same against a server's own expiry.)
	mustSaveEntry(t, s, sessionstore.Entry{Key: "t1", Owners: []string{"tina"}, Data: []byte("t"), ExpiresAt: e.now().Add(1200 * time.Millisecond)})
	if err := s.Touch(ctx(t), "t1", e.now(), hour); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2500 * time.Millisecond) // past the first expiry and any grace an index adds
	if got := owned(t, s, "tina"); got != "t1" {
		t.Fatalf("ByOwner(tina) after a touch outlived the first expiry = %q, want t1", got)
	}
}

// testSaveMany checks the optional batch write: Save's semantics per entry.
// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func testSaveMany(t *testing.T, h Harness) {
	if !require(t, h, BatchSave) {
		return
	}
	e := newEnv(t, h)
	s := e.s
	bs, _ := sessionstore.As[sessionstore.BatchSaver](s)
	hour := e.now().Add(time.Hour)
	mustSave(t, s, "x", []byte("old"), hour)
	var batch []sessionstore.Entry
	for i := range 1200 { // more than one internal batch
		batch = append(batch, sessionstore.Entry{Key: fmt.Sprint("m", i), Owners: []string{"bulk"}, Data: []byte(fmt.Sprint(i)), ExpiresAt: hour})
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

// testLifetimes runs the app's session layer over the store, on the same
// clock: an idle timeout kept at bay by lazy touches, and an absolute
// lifetime that no activity extends. Expiry is enforced on read whatever
// the store evicts.
func testLifetimes(t *testing.T, h Harness) {
	e := newEnv(t, h)
	codec, err := httpsession.NewCodec([]string{"lifetimes-secret-0123456789abcdef012345"}, 60)
	if err != nil {
		t.Fatal(err)
	}
	newSession := func(ttl time.Duration) (*httpsession.Manager, *http.Cookie) {
		g := loginManager(e.s, codec, httpsession.Kind{TTL: ttl, IdleTimeout: time.Second, TouchAfter: 300 * time.Millisecond}, e.clock.Now)
		c, _ := signIn(t, g, "ada")
		return g, c
	}
	alive := func(g *httpsession.Manager, c *http.Cookie) bool {
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
		e.clock.Advance(700 * time.Millisecond)
		if !alive(g, c) {
			t.Fatal("an active session hit the idle timeout")
		}
	}
	e.clock.Advance(1300 * time.Millisecond)
	if alive(g, c) {
		t.Fatal("a session idle for longer than the idle timeout is still alive")
	}

	g, c = newSession(1500 * time.Millisecond)
	e.clock.Advance(700 * time.Millisecond)
	if !alive(g, c) {
		t.Fatal("session gone before its absolute lifetime")
	}
	e.clock.Advance(1000 * time.Millisecond) // 1.7s: past the absolute 1.5s, though touched
	if alive(g, c) {
		t.Fatal("activity extended the absolute lifetime")
	}
}

// loginManager is the app's session layer for login sessions ("sid")
// over s.
func loginManager(s sessionstore.Store, codec *httpsession.Codec, kind httpsession.Kind, now func() time.Time) *httpsession.Manager {
	kind.Name, kind.Cookie = httpsession.KindLogin, "sid"
	return httpsession.NewManager(s, codec, httpsession.Options{Kinds: []httpsession.Kind{kind}, Now: now})
}

// testCounter: CountLive counts live records only.
func testCounter(t *testing.T, h Harness) {
	if !require(t, h, Count) {
		return
	}
	e := newEnv(t, h)
	c, _ := sessionstore.As[sessionstore.Counter](e.s)
	for i := range 3 {
		mustSave(t, e.s, fmt.Sprint("live-", i), []byte("v"), e.now().Add(time.Hour))
	}
	mustSave(t, e.s, "soon", []byte("v"), e.now().Add(time.Minute))
	e.clock.Advance(2 * time.Minute)
	if n, err := c.CountLive(ctx(t)); err != nil || n != 3 {
		t.Fatalf("CountLive = %d, %v; want 3 (the expired one left out)", n, err)
	}
}

// testDeleteExpired: the sweep removes expired records and only those.
func testDeleteExpired(t *testing.T, h Harness) {
	if !require(t, h, SweepExpired) {
		return
	}
	e := newEnv(t, h)
	sw, _ := sessionstore.As[sessionstore.ExpirySweeper](e.s)
	for i := range 5 {
		mustSaveEntry(t, e.s, sessionstore.Entry{Key: fmt.Sprint("old-", i), Owners: []string{"o"}, Data: []byte("v"), ExpiresAt: e.now().Add(time.Minute)})
	}
	mustSave(t, e.s, "kept", []byte("v"), e.now().Add(time.Hour))
	e.clock.Advance(2 * time.Minute)
	n, err := sw.DeleteExpired(ctx(t))
	if err != nil || n != 5 {
		t.Fatalf("DeleteExpired = %d, %v; want 5", n, err)
	}
	expectData(t, e.s, "kept", []byte("v"))
	if n, err := sw.DeleteExpired(ctx(t)); err != nil || n != 0 {
		t.Fatalf("second DeleteExpired = %d, %v; want 0", n, err)
	}
}

// testBackup: a backup is a store of its own with the live records, and
// never overwrites a file.
func testBackup(t *testing.T, h Harness) {
	if !require(t, h, Backup) {
		return
	}
	e := newEnv(t, h)
	b, _ := sessionstore.As[sessionstore.Backuper](e.s)
	mustSave(t, e.s, "k", []byte("v"), e.now().Add(time.Hour))
	path := t.TempDir() + "/backup"
	if err := b.Backup(ctx(t), path); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := b.Backup(ctx(t), path); err == nil {
		t.Fatal("a second backup overwrote the first")
	}
}

// testRateCount: a token bucket shared by every handle on the store (as
// by every app instance): the burst at once across handles, then refused
// with the wait, other keys apart. It runs on the server's clock: no
// waiting for a refill here.
func testRateCount(t *testing.T, h Harness) {
	if !require(t, h, RateCount) {
		return
	}
	e := newEnv(t, h)
	rc, _ := sessionstore.As[sessionstore.RateCounter](e.s)
	var other sessionstore.RateCounter = rc
	if h.has(OtherHandle) {
		other, _ = h.Other(t, e.s).(sessionstore.RateCounter)
	}
	allowed := 0
	var retry time.Duration
	for i := range 30 {
		c := rc
		if i%2 == 1 {
			c = other
		}
		ok, r, err := c.Allow(ctx(t), "1.2.3.4", 6*time.Second, 20)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		} else {
			retry = r
		}
	}
	if allowed != 20 {
		t.Fatalf("%d of 30 allowed across two handles, want the burst of 20", allowed)
	}
	if retry <= 5*time.Second || retry > 6*time.Second {
		t.Fatalf("refused with a wait of %s, want just under 6s", retry)
	}
	if ok, _, err := rc.Allow(ctx(t), "5.6.7.8", 6*time.Second, 20); err != nil || !ok {
		t.Fatalf("another key: %v, %v; want allowed", ok, err)
	}
}

// testServerExpiry waits, in real time, for the server's own expiry (the
// one wait in this suite: no fake clock moves a server's clock). A record
// saved with a short expiry is evicted; one kept alive by a touch is not,
// and stays in its owner's index.
func testServerExpiry(t *testing.T, h Harness) {
	if !require(t, h, ServerExpiry) {
		return
	}
	s := h.New(t, time.Now)
	soon := time.Now().Add(500 * time.Millisecond)
	mustSaveEntry(t, s, sessionstore.Entry{Key: "short", Owners: []string{"sam"}, Data: []byte("v"), ExpiresAt: soon})
	mustSaveEntry(t, s, sessionstore.Entry{Key: "touched", Owners: []string{"tina"}, Data: []byte("t"), ExpiresAt: soon})
	if err := s.Touch(ctx(t), "touched", time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	testservers.WaitUntil(t, 5*time.Second, func() bool {
		_, _, found := find(t, s, "short")
		return !found
	}, "the server evicting an expired record")
	time.Sleep(time.Until(soon.Add(1100 * time.Millisecond))) // past the first expiry and the second of grace an owner index adds
	expectData(t, s, "touched", []byte("t"))
	if got := owned(t, s, "tina"); got != "touched" {
		t.Fatalf("ByOwner(tina) after a touch outlived the first expiry on the server = %q, want touched", got)
	}
	if got := owned(t, s, "sam"); got != "" {
		t.Fatalf("ByOwner(sam) = %q after its record expired, want none", got)
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
func signIn(t testing.TB, g *httpsession.Manager, user any) (*http.Cookie, string) {
	t.Helper()
	return signInWith(t, g, map[string]any{httpsession.KeyUser: user})
}

// signInWith is signIn with the session's values given.
func signInWith(t testing.TB, g *httpsession.Manager, values map[string]any) (*http.Cookie, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	sess, err := g.Fresh(r, "sid")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range values {
		sess.Values[k] = v
	}
	if err := sess.Save(r, w); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()[0], httpsession.KeyOf(sess)
}

// waitSynced waits until the feed vouches for its followers (a server's
// feed may subscribe in the background; SQLite starts polling when first
// asked).
func waitSynced(t testing.TB, feed sessionstore.ChangeFeed) {
	t.Helper()
	testservers.WaitUntil(t, 10*time.Second, func() bool { return feed.Synced(t.Context()) }, "the change feed synced")
}

// errOf prints the error it points at when a failure message is formatted.
type errOf struct{ err *error }

func (e errOf) String() string { return fmt.Sprint(*e.err) }

// testChangeFeed checks what makes caching safe: the store's own writes
// are reported before they return, and writes through another handle (the
// same records from another instance) are reported soon after.
func testChangeFeed(t *testing.T, h Harness) {
	if !require(t, h, ChangeFeed) {
		return
	}
	e := newEnv(t, h)
	s := e.s
	feed, _ := sessionstore.As[sessionstore.ChangeFeed](s)
	rec := &Recorder{}
	feed.Follow(rec)
	waitSynced(t, feed)
	exp := e.now().Add(time.Hour)
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
			{"touch", func() error { return st.Touch(ctx(t), key, e.now(), exp.Add(time.Minute)) }},
			{"take", func() error { _, _, err := st.Take(ctx(t), key); return err }},
			{"save again", func() error { return st.Save(ctx(t), sessionstore.Entry{Key: key, Data: []byte("x"), ExpiresAt: exp}) }},
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
	if !h.has(OtherHandle) {
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
		testservers.WaitUntil(t, 2*time.Second, func() bool {
			feed.Synced(ctx(t)) // stores that poll learn of changes when asked
			return rec.SawOrAll("theirs")
		}, "%s through another handle reported", w.name)
		worst = max(worst, time.Since(done))
	}
	t.Logf("writes through another handle reported within %s", worst)
}

// testCachedSessions runs the app's session layer with its cache over the
// store: repeated checks are answered from memory, and a session deleted
// through another handle (a sign-out on another instance, a revoke from
// the CLI) stops being served.
func testCachedSessions(t *testing.T, h Harness) {
	if !require(t, h, ChangeFeed) {
		return
	}
	e := newEnv(t, h)
	s := e.s
	feed, _ := sessionstore.As[sessionstore.ChangeFeed](s)
	cache := httpsession.NewCache(feed, 100)
	waitSynced(t, feed)
	codec, err := httpsession.NewCodec([]string{"cache-secret-0123456789abcdef0123456789"}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	g := loginManager(s, codec, httpsession.Kind{TTL: time.Hour, TouchAfter: time.Minute, Cache: cache}, e.clock.Now)
	cookie, key := signIn(t, g, "ada")
	load := func() (string, bool) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(cookie)
		sess, err := g.New(r, "sid")
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		u, _ := httpsession.Value[string](sess, httpsession.KeyUser)
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
	if h.has(OtherHandle) {
		other = h.Other(t, s)
	}
	if err := other.Delete(ctx(t), key); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	testservers.WaitUntil(t, 2*time.Second, func() bool { _, ok := load(); return !ok }, "a session deleted elsewhere no longer served from the cache")
	t.Logf("deleted session stopped being served after %s", time.Since(done))
	for range 20 {
		if _, ok := load(); ok {
			t.Fatal("deleted session came back")
		}
	}
}

// Variant is another deployment of a backend: its name ("NAME-cluster")
// and the variables of a store on it.
type Variant struct {
	Name string
	Env  func(t testing.TB) map[string]string
}

// Server tells the program's own tests (cmd/web, e2e, bench) how to run a
// backend for a test. internal/testbackends lists one per built-in
// backend.
type Server struct {
	// Name is the backend's SESSION_STORE name.
	Name string
	// Env starts what the backend needs (or reuses a server started for
	// the test binary) and returns the variables that point the app at it,
	// isolated from every other call (its own file, key prefix or
	// collection).
	Env func(t testing.TB) map[string]string
	// Own is Env with a server of the test's own, which the test may stop
	// and start (outages, restarts). Nil for backends without a server.
	Own func(t testing.TB) (map[string]string, *testservers.Proc)
	// Dump returns everything the backend holds for env as raw bytes, as
	// an operator's copy or dump would (the file, every key's value,
	// every document), for the at-rest test.
	Dump func(t testing.TB, env map[string]string) []byte
	// Variants are other deployments of the backend the program's tests
	// run too (a cluster), each named and with its own Env.
	Variants []Variant
	// Remove, where there is an operator's tool for it, deletes the record
	// stored under key behind the app's back (as the server's own client
	// would).
	Remove func(t testing.TB, env map[string]string, key string)
	// Fill, where the test can, fills the server of env until it refuses
	// writes for lack of room (at its memory ceiling with eviction off),
	// and returns a function that gives the room back.
	Fill func(t testing.TB, env map[string]string) (release func())
}
