package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testbackends"
)

// migrateSessionCount is how many sessions each migration test copies:
// 10,000, or 1,000 with -short (the template checks on scratch copies).
func migrateSessionCount() int {
	if testing.Short() {
		return 1000
	}
	return 10000
}

// persistentStores returns the built-in backends that keep sessions outside
// the process: the ones sessions migrate between.
func persistentStores(t *testing.T) []storetest.Server {
	var out []storetest.Server
	for _, s := range testbackends.All() {
		if definition(t, s).Persistent {
			out = append(out, s)
		}
	}
	return out
}

// storesEnv configures every persistent store at once, each in its own
// namespace, as an operator migrating between them would.
func storesEnv(t *testing.T) map[string]string {
	env := map[string]string{"SESSION_SECRET": testSecret, "SESSION_TTL": "1h", "DATA_DIR": t.TempDir()}
	for _, s := range persistentStores(t) {
		for k, v := range s.Env(t) {
			if k != "SESSION_STORE" {
				env[k] = v
			}
		}
	}
	return env
}

func openFor(t *testing.T, env map[string]string, store string) sessionstore.Backend {
	t.Helper()
	env = copyEnv(env)
	env["SESSION_STORE"] = store
	getenv := func(k string) string { return env[k] }
	cfg, err := loadConfig(getenv)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := openStore(t.Context(), cfg, getenv, store, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func copyEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	return out
}

func loginStore(t *testing.T, b sessionstore.Backend) *httpsession.Manager {
	codec, err := httpsession.NewCodec([]string{testSecret}, 7200)
	if err != nil {
		t.Fatal(err)
	}
	return httpsession.NewManager(b, codec, httpsession.Options{Kinds: []httpsession.Kind{{Name: httpsession.KindLogin, Cookie: "sid", TTL: time.Hour}}})
}

// seedUsers is how many users the seeded sessions belong to.
const seedUsers = 200

// seed writes n login sessions into b the way the app does and returns
// cookie value → email.
func seed(t *testing.T, b sessionstore.Backend, n int) map[string]string {
	t.Helper()
	g := loginStore(t, b)
	cookies := make(map[string]string, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				email := fmt.Sprintf("user%d@example.com", i%seedUsers) // several sessions per user
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				w := httptest.NewRecorder()
				s, err := g.Fresh(r, "sid")
				if err != nil {
					t.Error(err)
					return
				}
				id := auth.Identity{ID: "sub" + email, Email: email, Name: "User", Provider: "google"}
				s.Values[httpsession.KeyUser] = id
				httpsession.SetOwners(s, id.Owner())
				if err := s.Save(r, w); err != nil {
					t.Errorf("seed: %v", err)
					return
				}
				mu.Lock()
				cookies[w.Result().Cookies()[0].Value] = email
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(cookies) != n {
		t.Fatalf("seeded %d sessions, want %d", len(cookies), n)
	}
	return cookies
}

// verify checks that every cookie resolves to its user in b: all of them
// against one full read of the store (through the same cookie and record
// decoding the app uses), and a sample through the app's own per-request
// lookup. One lookup per cookie would take minutes on the slowest test
// server.
func verify(t *testing.T, b sessionstore.Backend, cookies map[string]string) {
	t.Helper()
	codec, _ := httpsession.NewCodec([]string{testSecret}, 7200)
	stored := map[string]sessionstore.Entry{}
	for e, err := range b.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		stored[e.Key] = e
	}
	bad := 0
	for value, email := range cookies {
		token, err := codec.DecodeCookie("sid", value)
		if err != nil {
			t.Fatal(err)
		}
		key := httpsession.KeyFor(token)
		rec, err := codec.OpenRecord(key, stored[key].Data)
		id, ok := httpsession.RecordValue[auth.Identity](rec, httpsession.KeyUser)
		if err != nil || rec.Kind != httpsession.KindLogin || !ok || id.Email != email || !slices.Equal(stored[key].Owners, []string{auth.OwnerKey(email)}) {
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d cookies do not resolve to their user in the target", bad, len(cookies))
	}
	g := loginStore(t, b)
	n := 0
	for value, email := range cookies {
		if n++; n > 200 {
			break
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: "sid", Value: value})
		s, err := g.New(r, "sid")
		if err != nil {
			t.Fatal(err)
		}
		if u, ok := httpsession.Value[auth.Identity](s, httpsession.KeyUser); !ok || u.Email != email {
			t.Fatalf("cookie of %s does not resolve through the app's lookup", email)
		}
	}
}

func runSessions(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	// Background goroutines (store maintenance, the progress bar) write
	// while the command runs: the buffers must be safe for that, as
	// os.Stdout and os.Stderr are.
	var out, errOut syncBuffer
	err := run(context.Background(), append([]string{"-env-file", "/nonexistent", "sessions"}, args...),
		func(k string) string { return env[k] }, &out, &errOut, nil)
	return out.String() + errOut.String(), err
}

// load writes entries into b: in batches where the backend has them (a
// store's server may take far longer over one write per session).
func load(t *testing.T, b sessionstore.Backend, entries []sessionstore.Entry) {
	t.Helper()
	if bs, ok := sessionstore.As[sessionstore.BatchSaver](b); ok {
		if err := bs.SaveMany(t.Context(), entries); err != nil {
			t.Fatal(err)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan sessionstore.Entry)
	for range 16 {
		wg.Go(func() {
			for e := range next {
				if err := b.Save(t.Context(), e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, e := range entries {
		next <- e
	}
	close(next)
	wg.Wait()
}

func TestMigrateEveryPair(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	migrateSessions := migrateSessionCount()
	var stores []string
	for _, s := range persistentStores(t) {
		stores = append(stores, s.Name)
	}

	// The sessions are made once, the way the app makes them (in the first
	// store: SQLite, the fastest), and every source store starts from the
	// same records.
	seedStore := openFor(t, storesEnv(t), stores[0])
	start := time.Now()
	cookies := seed(t, seedStore, migrateSessions)
	var entries []sessionstore.Entry
	for e, err := range seedStore.All(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	t.Logf("made %d sessions in %v", len(entries), time.Since(start).Round(time.Millisecond))

	for _, from := range stores {
		t.Run("from-"+from, func(t *testing.T) {
			env := storesEnv(t)
			src := openFor(t, env, from)
			start := time.Now()
			load(t, src, entries)
			verify(t, src, cookies)
			t.Logf("loaded and checked %d sessions in %s in %v", len(entries), from, time.Since(start).Round(time.Millisecond))
			for _, to := range stores {
				if to == from {
					continue
				}
				t.Run("to-"+to, func(t *testing.T) {
					out, err := runSessions(t, env, "migrate", "--from", from, "--to", to, "--dry-run")
					if err != nil || !strings.Contains(out, fmt.Sprintf("would copy %d", migrateSessions)) {
						t.Fatalf("dry run: %v\n%s", err, out)
					}
					for pass := 1; pass <= 2; pass++ { // idempotent: twice, same result
						start := time.Now()
						out, err = runSessions(t, env, "migrate", "--from", from, "--to", to)
						if err != nil {
							t.Fatalf("migrate pass %d: %v\n%s", pass, err, out)
						}
						want := fmt.Sprintf("copied %d, skipped-expired 0, failed 0", migrateSessions)
						if !strings.Contains(out, want) {
							t.Fatalf("migrate pass %d summary:\n%s\nwant %q", pass, out, want)
						}
						t.Logf("%s -> %s pass %d: %v", from, to, pass, time.Since(start).Round(time.Millisecond))
					}
					target := openFor(t, env, to)
					count := 0
					for _, err := range target.All(t.Context()) {
						if err != nil {
							t.Fatal(err)
						}
						count++
					}
					if count != migrateSessions {
						t.Fatalf("target holds %d sessions after two migrations, want %d", count, migrateSessions)
					}
					verify(t, target, cookies)
					owned, err := target.ByOwner(t.Context(), auth.OwnerKey("user7@example.com"))
					if err != nil || len(owned) != migrateSessions/seedUsers {
						t.Fatalf("user index in the target: %d sessions, %v; want %d", len(owned), err, migrateSessions/seedUsers)
					}
				})
			}
		})
	}
}

// TestSessionsCLI covers list, revoke, stats, purge, and the errors.
func TestSessionsCLI(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	env := baseEnv(t, p, dir)
	a := startApp(t, env)
	ada, bob := newBrowser(t), newBrowser(t)
	ada.login(a, "Ada", "ada@example.com")
	ada2 := newBrowser(t)
	ada2.login(a, "Ada", "ada@example.com")
	bob.login(a, "Bob", "bob@example.com")

	out, err := runSessions(t, env, "list")
	if err != nil || strings.Count(out, "ada@example.com") != 2 || !strings.Contains(out, "bob@example.com") || !strings.Contains(out, "LAST SEEN") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _ = runSessions(t, env, "list", "--user", "ADA@example.com")
	if strings.Count(out, "ada@example.com") != 2 || strings.Contains(out, "bob@") {
		t.Fatalf("list --user:\n%s", out)
	}
	out, err = runSessions(t, env, "stats")
	if err != nil || !strings.Contains(out, "live sessions:     3") || !strings.Contains(out, "(2 users)") {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	expectSignedIn(t, ada, a, "ada@example.com") // now in the app's session cache
	out, err = runSessions(t, env, "revoke", "--user", "ada@example.com")
	if err != nil || !strings.Contains(out, "revoked 2 sessions") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	expectSignedOutSoon(t, ada, a)
	expectSignedOut(t, ada2, a)
	expectSignedIn(t, bob, a, "bob@example.com")
	if out, err = runSessions(t, env, "purge", "--expired"); err != nil || !strings.Contains(out, "purged 0") {
		t.Fatalf("purge: %v\n%s", err, out)
	}
	// A backup taken while the server runs is a database of its own, owner
	// only, with the live sessions; a second backup to the same file is
	// refused rather than overwriting it.
	backupFile := filepath.Join(t.TempDir(), "backup.db")
	if out, err = runSessions(t, env, "backup", "--to", backupFile); err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if fi, err := os.Stat(backupFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if got := len(rows(t, filepath.Dir(backupFile), filepath.Base(backupFile))); got != 1 {
		t.Fatalf("backup holds %d sessions, want bob's 1", got)
	}
	if _, err = runSessions(t, env, "backup", "--to", backupFile); err == nil {
		t.Fatal("a second backup overwrote the first")
	}

	for name, args := range map[string][]string{
		"unknown command": {"frobnicate"},
		"bad flag":        {"list", "--nope"},
		"revoke no user":  {"revoke"},
		"migrate no to":   {"migrate", "--from", "sqlite"},
	} {
		if _, err := runSessions(t, env, args...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, srv := range serverStores() {
		down := copyEnv(env)
		ownServer(t, down, srv).Stop(t)
		if out, err := runSessions(t, down, "stats"); err == nil || !strings.Contains(err.Error(), "cannot reach the "+srv.Name+" session store") {
			t.Fatalf("stats against a stopped %s: %v\n%s", srv.Name, err, out)
		}
	}
}

// TestSwitchStoreWithoutLoggingOut is the README's walkthrough: sign in on
// the default store, migrate to one several instances can share, switch
// SESSION_STORE, still signed in.
func TestSwitchStoreWithoutLoggingOut(t *testing.T) {
	p := startIDP(t)
	from := backends()[0].Name
	for _, srv := range testbackends.All() {
		if !definition(t, srv).Shared {
			continue
		}
		t.Run(from+"-to-"+srv.Name, func(t *testing.T) {
			env := withStore(t, baseEnv(t, p, t.TempDir()), srv)
			env["SESSION_STORE"] = from
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Ada", "ada@example.com")
			a.stop(t)

			out, err := runSessions(t, env, "migrate", "--from", from, "--to", srv.Name)
			if err != nil || !strings.Contains(out, "copied 1,") {
				t.Fatalf("migrate: %v\n%s", err, out)
			}
			env["SESSION_STORE"] = srv.Name
			a = startApp(t, env)
			if m := expectSignedIn(t, b, a, "ada@example.com"); m.Session.Store != srv.Name {
				t.Fatalf("session now in %q, want %s", m.Session.Store, srv.Name)
			}
		})
	}
}
