package e2e

import (
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
	"example.com/oauth-sessions/internal/testservers"

	_ "modernc.org/sqlite"
)

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
				sid, err := devprovidertest.SignIn(base, "User", fmt.Sprintf("user%d-%d@example.com", w, i))
				if err != nil {
					continue // the app died mid-login: not completed
				}
				mu.Lock()
				done = append(done, sid)
				mu.Unlock()
			}
		})
	}
	// Kill it mid-burst, once plenty of logins have completed.
	testservers.WaitUntil(t, 30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(done) >= 100 }, "100 logins completed")
	if err := app.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	app.Stop(t) // reap the killed process
	if len(done) < 10 {
		t.Fatalf("only %d logins completed before the kill; the burst did not run", len(done))
	}
	app.Start(t)

	lost := 0
	for _, sid := range done {
		if meStatus(t, base, sid) != http.StatusOK {
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
