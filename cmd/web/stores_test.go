package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testbackends"
	"example.com/oauth-sessions/internal/testservers"
)

// withStore adds what the backend needs to env (its server started, its
// own namespace) and returns env.
func withStore(t *testing.T, env map[string]string, srv storetest.Server) map[string]string {
	t.Helper()
	for k, v := range srv.Env(t) {
		env[k] = v
	}
	return env
}

// definition returns the built-in backend srv runs.
func definition(t *testing.T, srv storetest.Server) sessionstore.Definition {
	t.Helper()
	d, ok := sessionstore.Lookup(backends(), srv.Name)
	if !ok {
		t.Fatalf("internal/testbackends names %q, which cmd/web/backends.go does not list", srv.Name)
	}
	return d
}

// TestTestBackendsMatchTheList: every built-in backend has its test
// servers, in the same order, and nothing else does.
func TestTestBackendsMatchTheList(t *testing.T) {
	var built, tested []string
	for _, d := range backends() {
		built = append(built, d.Name)
	}
	for _, s := range testbackends.All() {
		tested = append(tested, s.Name)
	}
	if strings.Join(built, ",") != strings.Join(tested, ",") {
		t.Fatalf("cmd/web/backends.go lists %v, internal/testbackends %v", built, tested)
	}
}

// TestEveryStoreKeepsSessionsAcrossRestart: with every sign-in provider
// configured at once, a sign-in through each survives a restart of the app
// on every persistent store (and the memory store says why it does not).
func TestEveryStoreKeepsSessionsAcrossRestart(t *testing.T) {
	ps := startProviders(t)
	for _, srv := range testbackends.All() {
		def := definition(t, srv)
		for _, name := range append([]string{def.Name}, def.Aliases...) {
			t.Run(name, func(t *testing.T) {
				env := withStore(t, ps.env(t, t.TempDir()), srv)
				env["SESSION_STORE"] = name
				a := startApp(t, env)
				if !strings.Contains(a.logs.String(), "Initializing session store") {
					t.Fatalf("no start-up log line:\n%s", a.logs)
				}
				users := []struct {
					provider, email string
					fields          url.Values
					b               *browser
				}{
					{"google", "ada@example.com", person("Ada Lovelace", "ada@example.com"), newBrowser(t)},
					// BEGIN remove:github
					{"github", "octocat@github.example", githubLogin("octocat"), newBrowser(t)},
					// END remove:github
					// BEGIN remove:oidc
					{"oidc", "grace@example.com", person("Grace Hopper", "grace@example.com"), newBrowser(t)},
					// END remove:oidc
				}
				for _, u := range users {
					u.b.loginVia(a, u.provider, u.fields)
					me := expectSignedIn(t, u.b, a, u.email)
					if me.Session.Store != def.Name || me.User.Provider != u.provider {
						t.Fatalf("session store %q, provider %q; want %q, %q", me.Session.Store, me.User.Provider, def.Name, u.provider)
					}
				}
				a = a.restart(t)
				for _, u := range users {
					if def.Persistent {
						expectSignedIn(t, u.b, a, u.email)
						continue
					}
					expectSignedOut(t, u.b, a)
					home := u.b.get(a.URL + "/")
					if !strings.Contains(home.Body, "the restart signed you out") {
						t.Fatalf("home page after a restart of a store that keeps nothing does not say why the user is signed out:\n%s", home.Body)
					}
				}
			})
		}
	}
}

// serverStores returns the backends whose server a test may stop.
func serverStores() []storetest.Server {
	var out []storetest.Server
	for _, s := range testbackends.All() {
		if s.Own != nil {
			out = append(out, s)
		}
	}
	return out
}

// TestServerRestartKeepsSessions: the store's server restarts under the
// app; the session is still there once it is back.
func TestServerRestartKeepsSessions(t *testing.T) {
	p := startIDP(t)
	for _, srv := range serverStores() {
		t.Run(srv.Name, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			extra, server := srv.Own(t)
			for k, v := range extra {
				env[k] = v
			}
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Ada", "ada@example.com")
			server.Restart(t)
			waitFor(t, 15*time.Second, func() bool { return b.me(a).Status == http.StatusOK })
			expectSignedIn(t, b, a, "ada@example.com")
		})
	}
}

// TestTwoInstancesShareTheStore: for every store several instances can
// share, in each of its deployments (its Variants: a cluster), a session
// made on one is served by the other, and a sign-out on one, or a delete
// behind the app's back (its Remove: an operator's tool), is seen by the
// other, even with the session in its cache.
func TestTwoInstancesShareTheStore(t *testing.T) {
	p := startIDP(t)
	codec, err := httpsession.NewCodec([]string{testSecret}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range testbackends.All() {
		if !definition(t, srv).Shared {
			continue
		}
		for _, v := range append([]storetest.Variant{{Name: srv.Name, Env: srv.Env}}, srv.Variants...) {
			t.Run(v.Name, func(t *testing.T) {
				env1 := baseEnv(t, p, t.TempDir())
				for k, val := range v.Env(t) {
					env1[k] = val
				}
				env2 := baseEnv(t, p, t.TempDir())
				for k, val := range env1 {
					if k != "PORT" && k != "BASE_URL" && k != "DATA_DIR" {
						env2[k] = val
					}
				}
				one, two := startApp(t, env1), startApp(t, env2)
				cached := strings.Contains(one.logs.String(), "Session cache on")
				// BEGIN remove:redis
				if srv.Name == "redis" && !cached {
					t.Fatalf("no session cache on %s:\n%s", v.Name, one.logs)
				}
				// END remove:redis

				endings := []string{"sign-out on the other instance"}
				if srv.Remove != nil {
					endings = append(endings, "deleted behind the app's back")
				}
				for _, ending := range endings {
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
					// Instance one has the session in its cache now, where it
					// caches: the ending must reach it.
					before := int(metric(t, one, "session_cache_hits_total"))
					for range 5 {
						expectSignedIn(t, b, one, "ada@example.com")
					}
					if hits := int(metric(t, one, "session_cache_hits_total")) - before; cached && hits < 4 {
						t.Fatalf("%d of 5 checks answered from the cache, want most", hits)
					}
					if ending == "sign-out on the other instance" {
						if s := onTwo(http.MethodPost, "/api/auth/logout"); s != http.StatusOK {
							t.Fatalf("logout on instance two = %d", s)
						}
					} else {
						token, err := codec.DecodeCookie("sid", sid)
						if err != nil {
							t.Fatal(err)
						}
						srv.Remove(t, env1, httpsession.KeyFor(token))
					}
					expectSignedOutSoon(t, b, one)
				}
			})
		}
	}
}

// ownServer starts a server of this test's own for srv (the test stops and
// starts it) and points env at it.
func ownServer(t *testing.T, env map[string]string, srv storetest.Server) *testservers.Proc {
	t.Helper()
	extra, server := srv.Own(t)
	for k, v := range extra {
		env[k] = v
	}
	return server
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	testservers.WaitUntil(t, d, ok, "the condition")
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
	t.Parallel() // mostly waiting on servers that are down
	p := startIDP(t)
	for _, backend := range serverStores() {
		t.Run(backend.Name, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			srv := ownServer(t, env, backend)
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
	t.Parallel() // mostly waiting on servers that are down
	p := startIDP(t)
	for _, backend := range serverStores() {
		t.Run(backend.Name, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			srv := ownServer(t, env, backend)
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
	// Not parallel: it counts the process's goroutines.
	p := startIDP(t)
	for _, backend := range serverStores() {
		t.Run(backend.Name, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			srv := ownServer(t, env, backend)
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Ada", "ada@example.com")
			sid := b.cookie(a.URL, "sid").Value
			before := runtime.NumGoroutine()

			var mu sync.Mutex
			counts := map[int]int{}
			var lastOK atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			client := &http.Client{Timeout: 10 * time.Second}
			pace := time.NewTicker(time.Millisecond) // about 1000 requests/s in all
			defer pace.Stop()
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
						select {
						case <-pace.C:
						case <-stop:
							return
						}
					}
				})
			}
			count := func(code int) int { mu.Lock(); defer mu.Unlock(); return counts[code] }
			waitFor(t, 10*time.Second, func() bool { return count(http.StatusOK) >= 50 })
			srv.Stop(t)
			// Every worker sees the outage (some clients answer only once
			// their server selection gives up, after seconds) before the
			// store comes back.
			waitFor(t, 15*time.Second, func() bool { return count(http.StatusServiceUnavailable) >= 8 })
			back := time.Now()
			srv.Start(t)
			waitFor(t, 10*time.Second, func() bool { return lastOK.Load() > back.UnixNano() })
			recovery := time.Duration(lastOK.Load() - back.UnixNano())
			close(stop)
			wg.Wait()
			client.CloseIdleConnections()

			t.Logf("%s: answers %v; first 200 %v after the store was back", backend.Name, counts, recovery.Round(time.Millisecond))
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
			testservers.WaitUntil(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before+5 },
				"goroutines back near the %d before the outage (a leak otherwise)", before)
		})
	}
}

// TestFullStoreRefusesOnlyNewSignIns: when the store refuses writes for
// lack of room, a new sign-in gets a readable 503, signed-in users carry
// on, /readyz stays 200 and says so, a metric counts it; with room again,
// sign-ins work without a restart.
func TestFullStoreRefusesOnlyNewSignIns(t *testing.T) {
	p := startIDP(t)
	filled := 0
	for _, srv := range testbackends.All() {
		if srv.Fill == nil {
			continue
		}
		filled++
		t.Run(srv.Name, func(t *testing.T) {
			env := baseEnv(t, p, t.TempDir())
			ownServer(t, env, srv)
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Ada", "ada@example.com")
			release := srv.Fill(t, env)

			c := newBrowser(t)
			r := c.get(a.URL + "/api/auth/google")
			if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "sign-ins are paused") {
				t.Fatalf("a sign-in with the store full = %d\n%s", r.Status, r.Body)
			}
			if strings.Contains(r.Body, "OOM") || strings.Contains(r.Body, ".go:") {
				t.Fatalf("the 503 page leaks the store's error:\n%s", r.Body)
			}
			for range 10 {
				expectSignedIn(t, b, a, "ada@example.com")
			}
			ready := b.get(a.URL + "/readyz")
			var body struct{ Status, Writes string }
			if ready.Status != http.StatusOK || json.Unmarshal([]byte(ready.Body), &body) != nil || body.Writes != "refused" {
				t.Fatalf("/readyz with the store full = %d %s; want 200 with writes refused", ready.Status, ready.Body)
			}
			if n := metric(t, a, "session_store_writes_refused_total"); n < 1 {
				t.Fatalf("session_store_writes_refused_total = %.0f", n)
			}

			release()
			c.login(a, "Bob", "bob@example.com")
			expectSignedIn(t, c, a, "bob@example.com")
		})
	}
	if filled == 0 {
		t.Log("no built-in backend can be filled by a test")
	}
}
