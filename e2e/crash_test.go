package e2e

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// login runs one whole login with a plain HTTP client and returns the
// session cookie once the callback's redirect has been received.
func login(base, email string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(base + "/api/auth/google")
	if err != nil {
		return "", err
	}
	res.Body.Close()
	authURL, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.StatusCode != http.StatusFound {
		return "", fmt.Errorf("start: %d", res.StatusCode)
	}
	form := authURL.Query()
	form.Set("name", email)
	form.Set("email", email)
	form.Set("action", "allow")
	res, err = c.PostForm(authURL.Scheme+"://"+authURL.Host+authURL.Path, form)
	if err != nil {
		return "", err
	}
	res.Body.Close()
	res, err = c.Get(res.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		return "", fmt.Errorf("callback: %d", res.StatusCode)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "sid" {
			return ck.Value, nil
		}
	}
	return "", fmt.Errorf("no sid cookie")
}

// TestKillDuringLoginBurst kills the app with SIGKILL in the middle of a
// burst of logins on SQLite. Every login whose redirect was sent must still
// be valid after a restart, and the database must be intact.
func TestKillDuringLoginBurst(t *testing.T) {
	issuer := startProvider(t)
	app, base := startApp(t, issuer)
	dataDir := ""
	for _, kv := range app.Env() {
		if v, ok := strings.CutPrefix(kv, "DATA_DIR="); ok {
			dataDir = v
		}
	}

	var mu sync.Mutex
	var done []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sid, err := login(base, fmt.Sprintf("user%d-%d@example.com", w, i))
				if err != nil {
					continue // the app died mid-login: not completed
				}
				mu.Lock()
				done = append(done, sid)
				mu.Unlock()
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := app.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	app.Stop(t) // reap the killed process
	if len(done) < 10 {
		t.Fatalf("only %d logins completed before the kill; the burst did not run", len(done))
	}
	app.Start(t)

	lost := 0
	for _, sid := range done {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/me", nil)
		req.Header.Set("Cookie", "sid="+sid)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			lost++
		}
	}
	t.Logf("%d logins completed before SIGKILL; %d lost", len(done), lost)
	if lost > 0 {
		t.Fatalf("%d of %d completed logins were lost by the crash", lost, len(done))
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check = %q, %v", check, err)
	}
}
