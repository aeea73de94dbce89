//go:build bench

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	// BEGIN remove:redis
	"github.com/redis/go-redis/v9"
	// END remove:redis

	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
)

// abuse is the second attack round (issue 23), each attack at full size
// against the built binary, with its goal and verdict: connections held
// idle or trickled, forged logout tokens from many addresses, and a
// distributed flood of sign-in starts. The short versions are tests
// (connections_test.go, flood_test.go).
func abuse(t *testing.T, rep *report, bin string, stores map[string]map[string]string) {
	rep.f("## Abuse, round 2: connections, forged logouts, distributed floods\n\n")
	rep.f("The built app with its defaults (`MAX_CONNECTIONS=1024`, `MAX_CONNECTIONS_PER_ADDRESS=64`, `LOGIN_START_MAX_PER_SECOND=100`), SQLite, not pinned: attackers and probes are goroutines of the benchmark on the same two cores. Attackers use loopback source addresses 127.0.0.2 and up (a connection's address); the floods of requests name their addresses in `X-Forwarded-For` with `TRUST_PROXY=true`, as behind a proxy. A probe is a new client: a new connection every 100 ms for the attack's length, `GET /healthz`, 5 s timeout.\n\n")
	rep.f("| attack | length | attack size | result | goal | verdict |\n|---|---|---|---|---|---|\n")
	row := func(attack, length, size, result, goal string, ok bool) {
		rep.f("| %s | %s | %s | %s | %s | %s |\n", attack, length, size, result, goal, verdict(ok))
	}
	const d = 20 * time.Second
	base := []string{"SESSION_STORE=sqlite", "SESSION_SQLITE_PATH=" + t.TempDir() + "/sessions.db"}

	// 1. Idle keep-alive connections past the cap, from 20 addresses.
	{
		app, url := benchAppPinned(t, false, bin, base...)
		stop := holdConnections(t, app.Addr, 1100, 20, func(c net.Conn) error { return keepAliveRequest(c) }, nil)
		p := probe(url, during(d))
		held := stop()
		row("idle keep-alive connections, reconnecting when closed", d.String(), "1,100 from 20 addresses ("+fmt.Sprint(held)+" connections made)", p.String(), "new client p99 < 1 s", p.p99 < time.Second && p.failed == 0)
		app.Stop(t)
	}
	// 2. Slow clients: headers trickled a line a second, bodies a byte a
	// second, 3,000 connections from one address; and headers from 50
	// addresses (60 each, under the per-address cap).
	trickleHeaders := func(c net.Conn) error {
		_, err := fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: app\r\n")
		return err
	}
	trickle := func(line string) func(net.Conn) error {
		return func(c net.Conn) error { _, err := fmt.Fprint(c, line); return err }
	}
	slowBody := func(c net.Conn) error {
		_, err := fmt.Fprint(c, "POST /api/auth/logout HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n")
		return err
	}
	for _, slow := range []struct {
		name      string
		addresses int
		open      func(net.Conn) error
		every     func(net.Conn) error
	}{
		{"headers trickled, a line a second", 1, trickleHeaders, trickle("X-Slow: 1\r\n")},
		{"bodies trickled, a byte a second (Content-Length: 60000)", 1, slowBody, trickle("a")},
		{"headers trickled, a line a second", 50, trickleHeaders, trickle("X-Slow: 1\r\n")},
	} {
		app, url := benchAppPinned(t, false, bin, base...)
		stop := holdConnections(t, app.Addr, 3000, slow.addresses, slow.open, slow.every)
		p := probe(url, during(d))
		held := stop()
		row("slow clients: "+slow.name, d.String(), fmt.Sprintf("3,000 from %d address(es) (%d connections made)", slow.addresses, held), p.String(), "new client p99 < 1 s", p.p99 < time.Second && p.failed == 0)
		app.Stop(t)
	}

	// 3. Forged logout tokens from 5,000 addresses at full speed, and 20
	// genuine ones from the provider's address.
	{
		idp := startIDP(t)
		proc, url := benchAppPinned(t, false, bin, slices.Concat(base, []string{"TRUST_PROXY=true", "GOOGLE_ISSUER_URL=" + idp.URL,
			"GOOGLE_CLIENT_ID=" + idpClientID, "GOOGLE_CLIENT_SECRET=" + idpClientSecret})...)
		a := &app{URL: url, logs: &syncBuffer{}}
		users := make([]*browser, 20)
		for i := range users {
			users[i] = newBrowser(t)
			users[i].login(a, "User", fmt.Sprintf("user%d@example.com", i))
		}
		forged := func() string {
			tok, _ := idp.Sign(idp.LogoutClaims(idpClientID, devprovider.Subject("victim@example.com"), ""))
			i := strings.LastIndexByte(tok, '.') + 5
			return tok[:i] + string('A'+(tok[i]-'A'+1)%26) + tok[i+1:]
		}
		f := startFlood(16, among("198.51", 5000), func(addr string) (bool, error) {
			status, err := postLogoutFrom(url, "google", forged(), addr)
			return status == http.StatusBadRequest, err
		})
		time.Sleep(2 * time.Second) // the flood under way
		start, accepted := time.Now(), 0
		for i := range users {
			tok, _ := idp.Sign(idp.LogoutClaims(idpClientID, devprovider.Subject(fmt.Sprintf("user%d@example.com", i)), ""))
			if status, err := postLogoutFrom(url, "google", tok, "203.0.113.7"); err == nil && status == http.StatusOK {
				accepted++
			}
			time.Sleep(500 * time.Millisecond)
		}
		rate := f.stop()
		signedOut := 0
		for _, u := range users {
			if u.me(a).Status == http.StatusUnauthorized {
				signedOut++
			}
		}
		row("forged back-channel logout tokens (valid but for the signature)", time.Since(start).Round(time.Second).String(), fmt.Sprintf("%.0f/s from 5,000 addresses", rate),
			fmt.Sprintf("%d of 20 genuine accepted, %d of 20 users signed out", accepted, signedOut), "20 of 20, signed out", accepted == 20 && signedOut == 20)
		proc.Stop(t)
	}

	// 4. Sign-in starts from 5,000 addresses at full speed for 60 s; a new
	// visitor (an address never seen) every 0.5 s.
	{
		env := map[string]string{"SESSION_STORE": "sqlite", "SESSION_SQLITE_PATH": t.TempDir() + "/sessions.db"}
		app, url := benchAppPinned(t, false, bin, slices.Concat(environ(env), []string{"TRUST_PROXY=true",
			"LOGIN_RATE_LIMIT=10", "LOGIN_RATE_BURST=20", "LOGIN_START_MAX_PER_SECOND=100"})...)
		count := func() int {
			s := openFrom(t, env)
			defer s.Close()
			n := 0
			for range s.All(context.Background()) {
				n++
			}
			return n
		}
		before := count()
		f := startFlood(16, among("198.18", 5000), func(addr string) (bool, error) { return startFrom(url, addr) })
		const length = 60 * time.Second
		visitors, started := 0, 0
		for end := time.Now().Add(length); time.Now().Before(end); visitors++ {
			if ok, err := startFrom(url, fmt.Sprintf("203.%d.%d.%d", visitors/62500, visitors/250%250, visitors%250+1)); err == nil && ok {
				started++
			}
			time.Sleep(500 * time.Millisecond)
		}
		rate := f.stop()
		added := count() - before
		// Two ceilings of 100/s (and their bursts) for a minute; about
		// 0.5 KB a flow record.
		bound := 2 * 100 * (60 + 1)
		row("sign-in starts from many addresses", length.String(), fmt.Sprintf("%.0f/s from 5,000 addresses", rate),
			fmt.Sprintf("%d of %d new visitors started (%.0f%%); store +%d flows (about %.1f MB) in the minute", started, visitors, 100*float64(started)/float64(visitors), added, float64(added)*0.5/1024),
			fmt.Sprintf("≥ 90%% started; ≤ %d flows a minute (≈ %.0f MB)", bound, float64(bound)*0.5/1024), float64(started) >= 0.9*float64(visitors) && added <= bound)
		app.Stop(t)
	}
	// 6. A provider whose UserInfo answer never ends (300 MB): the sign-in
	// is refused after MaxResponse, and the process's peak memory shows it.
	{
		var written atomic.Int64
		endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			chunk := []byte(strings.Repeat("a", 64<<10))
			_, _ = w.Write([]byte(`{"sub":"x","name":"`))
			for written.Load() < 300<<20 {
				n, err := w.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
			_, _ = w.Write([]byte(`"}`))
		}))
		idp := startIDP(t)
		idp.SetTamper(devprovidertest.WithoutProfileInIDToken)
		idp.SetDiscovery(func(doc map[string]any) { doc["userinfo_endpoint"] = endless.URL })
		proc, url := benchAppPinned(t, false, bin, slices.Concat(base, []string{"GOOGLE_ISSUER_URL=" + idp.URL,
			"GOOGLE_CLIENT_ID=" + idpClientID, "GOOGLE_CLIENT_SECRET=" + idpClientSecret})...)
		a := &app{URL: url, logs: &syncBuffer{}}
		b := newBrowser(t)
		res := b.get(b.approve(b.startLogin(a, ""), "Ada", "ada@example.com"))
		endless.CloseClientConnections()
		peak := peakRSS(proc.PID())
		me := b.me(a).Status
		endless.Close()
		row("a provider's UserInfo answer of 300 MB", "one sign-in", fmt.Sprintf("the provider wrote %.1f MB before the app hung up", float64(written.Load())/(1<<20)),
			fmt.Sprintf("callback %d, /api/auth/me %d; the app's peak RSS %d MB", res.Status, me, peak>>20), "refused after at most 1 MB read; peak RSS tens of MB, not hundreds",
			res.Status == http.StatusSeeOther && me == http.StatusUnauthorized && peak < 100<<20)
		proc.Stop(t)
	}

	// BEGIN remove:redis
	// 5. The same flood from 60,000 addresses against a Redis of 3 MB
	// (maxmemory, noeviction): what the per-address counters take there.
	if _, ok := stores["redis"]; ok {
		env := fresh(t, "redis")
		opts, err := redis.ParseURL(env["REDIS_URL"])
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(opts)
		ctx := context.Background()
		was, _ := rdb.ConfigGet(ctx, "maxmemory").Result()
		for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "3mb"}} {
			if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
				t.Fatal(err)
			}
		}
		proc, url := benchAppPinned(t, false, bin, slices.Concat(environ(env), []string{"TRUST_PROXY=true",
			"LOGIN_RATE_LIMIT=10", "LOGIN_RATE_BURST=20", "LOGIN_START_MAX_PER_SECOND=100"})...)
		f := startFlood(16, among("10.0", 60000), func(addr string) (bool, error) { return startFrom(url, addr) })
		time.Sleep(d) // the flood's length
		keys, bytes := 0, int64(0)
		iter := rdb.Scan(ctx, 0, env["REDIS_KEY_PREFIX"]+"rl:login:*", 1000).Iterator()
		for iter.Next(ctx) {
			keys++
			if n, err := rdb.MemoryUsage(ctx, iter.Val()).Result(); err == nil {
				bytes += n
			}
		}
		rate := f.stop()
		proc.Stop(t)
		if len(was) == 1 {
			for _, v := range was {
				_ = rdb.ConfigSet(ctx, "maxmemory", v).Err()
			}
		}
		rdb.Close()
		row("sign-in starts from many addresses, Redis of 3 MB", d.String(), fmt.Sprintf("%.0f/s from 60,000 addresses", rate),
			fmt.Sprintf("%d rate counters, %d KB (%.1f%% of 3 MB)", keys, bytes>>10, 100*float64(bytes)/(3<<20)), "counters ≤ 10% of 3 MB", bytes <= 3<<20/10)
	}
	// END remove:redis
	rep.f("\nGoals (issue 23). Figures vary with this VM's load; every row is one run. The short versions of each attack run in the test command (`cmd/web/connections_test.go`, `cmd/web/flood_test.go`).\n\n")
}

// peakRSS is a process's peak resident memory (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return -1
}

// holdConnections keeps n connections to addr open from the given number
// of loopback source addresses: each is opened with open, then fed with
// every (when not nil) each second; one the server closes is opened
// again. stop ends it all and returns how many connections were made.
func holdConnections(t *testing.T, addr string, n, addresses int, open, every func(net.Conn) error) (stop func() int) {
	done := make(chan struct{})
	var made atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		src := fmt.Sprintf("127.0.%d.%d", 1+i%addresses/250, 2+i%addresses%250)
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
			for {
				select {
				case <-done:
					return
				default:
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				made.Add(1)
				if open(c) == nil {
					closed := make(chan struct{})
					go func() { // until the server closes it
						buf := make([]byte, 4096)
						for {
							if _, err := c.Read(buf); err != nil {
								close(closed)
								return
							}
						}
					}()
					tick := time.NewTicker(time.Second)
				hold:
					for {
						select {
						case <-done:
							tick.Stop()
							c.Close()
							return
						case <-closed:
							break hold
						case <-tick.C:
							if every != nil && every(c) != nil {
								break hold
							}
						}
					}
					tick.Stop()
				}
				c.Close()
			}
		})
	}
	return func() int {
		close(done)
		wg.Wait()
		return int(made.Load())
	}
}

// during is a probe's stop rule: for d from now.
func during(d time.Duration) func(int) bool {
	end := time.Now().Add(d)
	return func(int) bool { return time.Now().Before(end) }
}
