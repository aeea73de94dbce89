package main

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/oauth-sessions/internal/testservers"
)

// storeEnv adds what SESSION_STORE=store needs to env, starting the server.
func storeEnv(t *testing.T, env map[string]string, store string) {
	t.Helper()
	env["SESSION_STORE"] = store
	switch store {
	case "redis":
		env["REDIS_URL"], _ = testservers.RedisURL(t)
		env["REDIS_KEY_PREFIX"] = "e2e:" + t.Name() + ":"
	case "mongo", "mongodb":
		env["MONGODB_SESSION_URL"], _ = testservers.MongoURL(t, "e2e")
		env["MONGODB_SESSION_COLLECTION"] = "s" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	}
}

func TestEveryStoreKeepsSessionsAcrossRestart(t *testing.T) {
	p := startIDP(t)
	for _, store := range []string{"sqlite", "redis", "mongo", "mongodb", "memory"} {
		t.Run(store, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			storeEnv(t, env, store)
			a := startApp(t, env)
			if !strings.Contains(a.logs.String(), "Initializing session store") {
				t.Fatalf("no start-up log line:\n%s", a.logs)
			}
			b := newBrowser(t)
			b.login(a, "Ada Lovelace", "ada@example.com")
			me := expectSignedIn(t, b, a, "ada@example.com")
			wantStore := store
			if store == "mongodb" {
				wantStore = "mongo"
			}
			if me.Session.Store != wantStore {
				t.Fatalf("session store = %q, want %q", me.Session.Store, wantStore)
			}
			a = a.restart(t)
			if store == "memory" {
				expectSignedOut(t, b, a)
				home := b.get(a.URL + "/")
				if !strings.Contains(home.Body, "the restart signed you out") {
					t.Fatalf("home page after a memory-store restart does not say why the user is signed out:\n%s", home.Body)
				}
				return
			}
			expectSignedIn(t, b, a, "ada@example.com")
		})
	}
}

func TestRedisServerRestartKeepsSessions(t *testing.T) {
	p := startIDP(t)
	srv := testservers.Redis(t) // append-only persistence on
	env := baseEnv(t, p, t.TempDir())
	env["SESSION_STORE"] = "redis"
	env["REDIS_HOST"], env["REDIS_PORT"] = "127.0.0.1", strings.Split(srv.Addr, ":")[1]
	a := startApp(t, env)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	srv.Restart(t)
	waitFor(t, 5*time.Second, func() bool { return b.me(a).Status == http.StatusOK })
	expectSignedIn(t, b, a, "ada@example.com")
}

func TestTwoInstancesShareRedis(t *testing.T) {
	p := startIDP(t)
	srv := testservers.Redis(t)
	env1 := baseEnv(t, p, t.TempDir())
	env1["SESSION_STORE"], env1["REDIS_URL"] = "redis", "redis://"+srv.Addr
	env2 := baseEnv(t, p, t.TempDir())
	env2["SESSION_STORE"], env2["REDIS_URL"] = "redis", "redis://"+srv.Addr
	one, two := startApp(t, env1), startApp(t, env2)

	b := newBrowser(t)
	b.login(one, "Ada", "ada@example.com")
	// Same cookie, other instance (a load balancer would send it there).
	sid := b.cookie(one.URL, "sid").Value
	onTwo := func(method, path string) int {
		req, _ := http.NewRequest(method, two.URL+path, nil)
		req.Header.Set("Cookie", "sid="+sid)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := onTwo(http.MethodGet, "/api/auth/me"); s != http.StatusOK {
		t.Fatalf("instance two /api/auth/me = %d, want 200 (shared session)", s)
	}
	// Instance one has the session in its cache now: the sign-out on two
	// must reach it through Redis's invalidation.
	expectSignedIn(t, b, one, "ada@example.com")
	if s := onTwo(http.MethodPost, "/api/auth/logout"); s != http.StatusOK {
		t.Fatalf("logout on instance two = %d", s)
	}
	expectSignedOutSoon(t, b, one)
}

// ownServer starts a Redis or MongoDB-protocol server for this test alone
// (the test stops and starts it) and points env at it.
func ownServer(t *testing.T, env map[string]string, store, db string) *testservers.Proc {
	t.Helper()
	env["SESSION_STORE"] = store
	if store == "redis" {
		srv := testservers.Redis(t)
		env["REDIS_URL"] = "redis://" + srv.Addr
		return srv
	}
	srv := testservers.Mongo(t)
	env["MONGODB_SESSION_URL"] = "mongodb://" + srv.Addr + "/" + db
	return srv
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func status(t *testing.T, b *browser, u string) (int, string) {
	t.Helper()
	r := b.get(u)
	return r.Status, r.Body
}

// TestStoreOutage503AndRecovery stops each server store under a signed-in
// user: session routes give a readable 503, /readyz says unavailable, and
// everything works again once the server is back, without a restart.
func TestStoreOutage503AndRecovery(t *testing.T) {
	p := startIDP(t)
	for _, store := range []string{"redis", "mongo"} {
		t.Run(store, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			srv := ownServer(t, env, store, "outage")
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Ada", "ada@example.com")

			srv.Stop(t)
			code, body := status(t, b, a.URL+"/api/auth/me")
			var e struct{ Error string }
			if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "session store") {
				t.Fatalf("/api/auth/me with the store down = %d %s; want 503 with a readable error", code, body)
			}
			if strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
				t.Fatalf("503 body leaks internals: %s", body)
			}
			if code, _ := status(t, b, a.URL+"/readyz"); code != http.StatusServiceUnavailable {
				t.Fatalf("/readyz with the store down = %d, want 503", code)
			}
			if code, _ := status(t, b, a.URL+"/healthz"); code != http.StatusOK {
				t.Fatalf("/healthz with the store down = %d, want 200 (the process is alive)", code)
			}
			if code, body := status(t, b, a.URL+"/"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not answering") {
				t.Fatalf("home with the store down = %d\n%s", code, body)
			}
			if code, body := status(t, b, a.URL+"/api/auth/google"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not answering") {
				t.Fatalf("login with the store down = %d\n%s", code, body)
			}

			srv.Start(t)
			waitFor(t, 15*time.Second, func() bool { c, _ := status(t, b, a.URL+"/readyz"); return c == http.StatusOK })
			waitFor(t, 15*time.Second, func() bool { return b.me(a).Status == http.StatusOK })
			expectSignedIn(t, b, a, "ada@example.com")
		})
	}
}

// TestStartsWithStoreDown: a server store that is down at start-up does not
// stop the app; it reports 503 until the store comes.
func TestStartsWithStoreDown(t *testing.T) {
	p := startIDP(t)
	for _, store := range []string{"redis", "mongo"} {
		t.Run(store, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			srv := ownServer(t, env, store, "startdown")
			srv.Stop(t)
			a := startApp(t, env)
			if !strings.Contains(a.logs.String(), "not reachable yet") {
				t.Fatalf("no clear log line about the unreachable store:\n%s", a.logs)
			}
			b := newBrowser(t)
			if code, _ := status(t, b, a.URL+"/readyz"); code != http.StatusServiceUnavailable {
				t.Fatalf("/readyz = %d, want 503", code)
			}
			srv.Start(t)
			waitFor(t, 15*time.Second, func() bool { c, _ := status(t, b, a.URL+"/readyz"); return c == http.StatusOK })
			b.login(a, "Ada", "ada@example.com")
			expectSignedIn(t, b, a, "ada@example.com")
		})
	}
}

// TestOutageUnderLoad stops the store while signed-in requests keep coming:
// every answer is 200 or a readable 503 (never a 500 or a dropped
// connection), the app serves again within 2 seconds of the store's return
// without a restart, the session from before is still there, and no
// goroutines are left behind.
func TestOutageUnderLoad(t *testing.T) {
	p := startIDP(t)
	for _, store := range []string{"redis", "mongo"} {
		t.Run(store, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			srv := ownServer(t, env, store, "load")
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Ada", "ada@example.com")
			sid := b.cookie(a.URL, "sid").Value
			time.Sleep(200 * time.Millisecond)
			before := runtime.NumGoroutine()

			var mu sync.Mutex
			counts := map[int]int{}
			var lastOK atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			client := &http.Client{Timeout: 10 * time.Second}
			for range 8 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/me", nil)
						req.Header.Set("Cookie", "sid="+sid)
						res, err := client.Do(req)
						code := -1
						if err == nil {
							io.Copy(io.Discard, res.Body)
							res.Body.Close()
							code = res.StatusCode
						}
						if code == http.StatusOK {
							lastOK.Store(time.Now().UnixNano())
						}
						mu.Lock()
						counts[code]++
						mu.Unlock()
						time.Sleep(5 * time.Millisecond)
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			srv.Stop(t)
			// Longer than the Mongo client's 3s server selection, so
			// requests see the outage rather than wait it out.
			time.Sleep(4 * time.Second)
			back := time.Now()
			srv.Start(t)
			waitFor(t, 10*time.Second, func() bool { return lastOK.Load() > back.UnixNano() })
			recovery := time.Duration(lastOK.Load() - back.UnixNano())
			close(stop)
			wg.Wait()
			client.CloseIdleConnections()

			t.Logf("%s: answers %v; first 200 %v after the store was back", store, counts, recovery.Round(time.Millisecond))
			for code, n := range counts {
				if code != http.StatusOK && code != http.StatusServiceUnavailable {
					t.Errorf("%d answers with status %d (-1 = connection error); want only 200 and 503", n, code)
				}
			}
			if counts[http.StatusServiceUnavailable] == 0 {
				t.Error("no 503 during the outage: the test did not see the store down")
			}
			if recovery > 2*time.Second {
				t.Errorf("first success %v after the store came back, want within 2s", recovery)
			}
			expectSignedIn(t, b, a, "ada@example.com")
			deadline := time.Now().Add(5 * time.Second)
			for runtime.NumGoroutine() > before+5 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before+5 {
				t.Errorf("goroutines: %d before the outage, %d after: a leak", before, n)
			}
		})
	}
}
