package main

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestDrainOnShutdown: after SIGTERM the server keeps serving for
// SHUTDOWN_DRAIN while /readyz reports not ready and responses close their
// connections, then stops accepting and exits cleanly.
func TestDrainOnShutdown(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["SHUTDOWN_DRAIN"] = "1500ms"
	a := startApp(t, env)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")

	began := time.Now()
	a.cancel() // what SIGTERM does
	a.cancel = nil
	waitFor(t, time.Second, func() bool {
		res, err := http.Get(a.URL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz refused during the drain: %v", err)
		}
		res.Body.Close()
		return res.StatusCode == http.StatusServiceUnavailable
	})
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/me", nil)
	res, err := b.Do(req)
	if err != nil {
		t.Fatalf("signed-in request during the drain: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !res.Close {
		t.Fatalf("during the drain /api/auth/me = %d, close %v; want 200 and Connection: close", res.StatusCode, res.Close)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the app did not stop within 10s of the end of the drain")
	}
	if d := time.Since(began); d < 1500*time.Millisecond {
		t.Fatalf("stopped after %s, before the 1.5s drain ended", d)
	}
	// The test holds the socket too (restarts serve it again): once it
	// lets go, nothing may be listening, if the app closed its own.
	a.ln.Close()
	if c, err := net.DialTimeout("tcp", a.addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting connections after shutdown")
	}
}
