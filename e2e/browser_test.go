// Package e2e drives the built binary with a real headless Chromium: sign
// in through a provider's login form, restart the server with SIGTERM,
// reload, and still be signed in.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testbackends"
	"example.com/oauth-sessions/internal/testservers"
)

var bins string // folder of the built binaries, set by TestMain

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Everything here runs the built binaries, most with a browser:
		// none of it is in the fast lane (make unit).
		fmt.Println("e2e: not in the fast lane (go test -short); ./scripts/test runs it")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins = dir
	for _, cmd := range []string{"web", "devidp"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../cmd/"+cmd).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", cmd, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	clientID     = "browser-test"
	clientSecret = "browser-test-secret"
	secret       = "browser-test-session-secret-0123456789abcdef"
)

// startProvider runs the development provider as its own server process.
func startProvider(t *testing.T) string {
	t.Helper()
	p := testservers.StartApp(t, "devidp", filepath.Join(bins, "devidp"),
		[]string{"-addr", "127.0.0.1:0", "-client-id", clientID, "-client-secret", clientSecret}, nil)
	return p.URL()
}

// startApp runs the built binary with env (KEY=value) plus the basics, on
// a port it picks (its base URL follows), and returns it and its URL.
func startApp(t *testing.T, issuer string, env ...string) (*testservers.Proc, string) {
	t.Helper()
	all := append([]string{
		"SESSION_SECRET=" + secret, "DATA_DIR=" + t.TempDir(), "SESSION_TTL=1h",
		// The browser tests and the crash test sign in many times from one
		// address.
		"LOGIN_RATE_LIMIT=1000000", "LOGIN_RATE_BURST=1000000", "LOGIN_START_MAX_PER_SECOND=1000000",
	}, env...)
	if issuer != "" {
		all = append(all, "GOOGLE_ISSUER_URL="+issuer, "GOOGLE_CLIENT_ID="+clientID, "GOOGLE_CLIENT_SECRET="+clientSecret)
	}
	p := testservers.StartApp(t, "web", filepath.Join(bins, "web"), []string{"-env-file", "/nonexistent"}, all)
	return p, p.URL()
}

// restart stops the app with SIGTERM, checks it exited cleanly, and starts
// it again on the same port, store and environment.
func restart(t *testing.T, app *testservers.Proc) {
	t.Helper()
	app.Stop(t)
	if app.LastExit != nil {
		t.Fatalf("app did not exit cleanly on SIGTERM: %v\n%s", app.LastExit, app.Logs())
	}
	app.Start(t)
}

// newBrowser starts headless Chromium with the flags this machine needs.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; install it with: apt-get install -y chromium (or run ./scripts/test, which does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1000, 760),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser without a timeout
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs steps with a time limit, failing the test with the app's log.
func do(t *testing.T, ctx context.Context, app *testservers.Proc, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		html, _ := chromedp.Run(dctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		t.Fatalf("browser steps failed at %s: %v\npage text:\n%s\napp log:\n%s", loc, err, html, app.Logs())
	}
}

// meStatus asks /api/auth/me with the session cookie sid, as a client
// holding a copy of it would.
func meStatus(t *testing.T, base, sid string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/me", nil)
	req.Header.Set("Cookie", "sid="+sid)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(sel)))
	if err != nil {
		t.Fatalf("read #%s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signIn clicks the sign-in button, fills in the provider's form and waits
// for the home page to show the user.
func signIn(t *testing.T, ctx context.Context, app *testservers.Proc, name, email string, shots bool) {
	t.Helper()
	do(t, ctx, app, chromedp.WaitVisible(chromedp.ID("sign-in")))
	if shots {
		screenshot(t, ctx, "1-signed-out")
	}
	do(t, ctx, app,
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SetValue(chromedp.ID("name"), name),
		chromedp.SetValue(chromedp.ID("email"), email),
	)
	if shots {
		screenshot(t, ctx, "2-provider-login")
	}
	do(t, ctx, app, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("user-name")))
	if got := text(t, ctx, "user-name"); got != name {
		t.Fatalf("signed in as %q, want %q", got, name)
	}
}

// storeEnv returns the environment that runs the app on srv's backend.
func storeEnv(t *testing.T, srv storetest.Server) []string {
	t.Helper()
	var env []string
	for k, v := range srv.Env(t) {
		env = append(env, k+"="+v)
	}
	return env
}

func TestBrowserSignInSurvivesRestart(t *testing.T) {
	issuer := startProvider(t)
	for i, srv := range testbackends.All() {
		store := srv.Name
		t.Run(store, func(t *testing.T) {
			app, base := startApp(t, issuer, storeEnv(t, srv)...)
			ctx := newBrowser(t)
			shots := i == 0 // the default store: the README's walkthrough
			do(t, ctx, app, chromedp.Navigate(base+"/"))
			signIn(t, ctx, app, "Ada Lovelace", "ada@example.com", shots)
			if got := text(t, ctx, "store"); got != store {
				t.Fatalf("page says store %q, want %q", got, store)
			}
			if shots {
				screenshot(t, ctx, "3-signed-in")
			}
			// Times read as people say them, the exact local time on hover
			// (page.js; the server's fallback says the same in UTC).
			expires, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.querySelector("#expires time").textContent, document.querySelector("#expires time").title]`))
			if err != nil || expires[0] != "in 1 hour" || expires[1] == "" || strings.Contains(expires[1], "UTC") {
				t.Fatalf("expiry shown as %q (%v), want \"in 1 hour\" with the exact local time on hover", expires, err)
			}
			if n := count(t, ctx, "#survived"); n != 0 {
				t.Fatal("the page says the session survived a restart before any restart")
			}

			restart(t, app)
			do(t, ctx, app, chromedp.Reload())
			if store == "memory" { // keeps nothing across a restart // keeps nothing across a restart
				do(t, ctx, app, chromedp.WaitVisible(chromedp.ID("session-lost")))
				if msg := text(t, ctx, "session-lost"); !strings.Contains(msg, "restart signed you out") {
					t.Fatalf("memory store after restart says %q; want why the user is signed out", msg)
				}
				return
			}
			do(t, ctx, app, chromedp.WaitVisible(chromedp.ID("user-name")), chromedp.WaitVisible(chromedp.ID("survived")))
			if got := text(t, ctx, "user-name"); got != "Ada Lovelace" {
				t.Fatalf("after restart the page shows %q, want still signed in as Ada Lovelace", got)
			}
			if got := text(t, ctx, "survived"); !strings.Contains(got, "survived a restart") || !strings.Contains(got, store) {
				t.Fatalf("after restart the page says %q, want that the session survived, in the %s store", got, store)
			}
			if shots {
				screenshot(t, ctx, "4-after-restart")
				phone(t, ctx, app, false)
				do(t, ctx, app, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("survived")))
				screenshot(t, ctx, "5-phone-after-restart")
			}
		})
	}
}

func TestBrowserTwoTabsAndSignOut(t *testing.T) {
	issuer := startProvider(t)
	app, base := startApp(t, issuer)
	ctx := newBrowser(t)

	// Two tabs of one browser start a login each before either finishes.
	tab1, cancel1 := chromedp.NewContext(ctx)
	defer cancel1()
	tab2, cancel2 := chromedp.NewContext(ctx)
	defer cancel2()
	for _, tab := range []context.Context{tab1, tab2} {
		if err := chromedp.Do(tab); err != nil { // open the tab without a timeout
			t.Fatalf("open tab: %v", err)
		}
	}
	do(t, tab1, app, chromedp.Navigate(base+"/api/auth/google?returnTo=/"), chromedp.WaitVisible(chromedp.ID("email")))
	do(t, tab2, app, chromedp.Navigate(base+"/api/auth/google?returnTo=/"), chromedp.WaitVisible(chromedp.ID("email")))
	do(t, tab2, app, chromedp.SetValue(chromedp.ID("name"), "Tab Two"), chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("user-name")))
	do(t, tab1, app, chromedp.SetValue(chromedp.ID("name"), "Tab One"), chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("user-name")))
	if got := text(t, tab1, "user-name"); got != "Tab One" {
		t.Fatalf("first tab signed in as %q", got)
	}

	// Keep a copy of the session cookie, then sign out with the button.
	cookies, err := chromedp.Call(tab1, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		t.Fatal(err)
	}
	var sid string
	for _, c := range cookies.Cookies {
		if c.Name == "sid" {
			sid = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax {
				t.Fatalf("sid cookie: HttpOnly %v SameSite %q; want HttpOnly and Lax", c.HTTPOnly, c.SameSite)
			}
		}
	}
	if sid == "" {
		t.Fatal("browser has no sid cookie after signing in")
	}
	do(t, tab1, app, chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("signed-out")))

	// Back does not bring the session back.
	do(t, tab1, app, chromedp.NavigateBack(), chromedp.WaitVisible(chromedp.ID("signed-out")))

	if code := meStatus(t, base, sid); code != http.StatusUnauthorized {
		t.Fatalf("cookie copied before sign-out: /api/auth/me = %d, want 401", code)
	}
}

func TestBrowserDemoLogin(t *testing.T) {
	app, base := startApp(t, "") // no Google credentials: the built-in provider
	ctx := newBrowser(t)
	do(t, ctx, app, chromedp.Navigate(base+"/"))
	label := text(t, ctx, "sign-in")
	if !strings.Contains(label, "development provider") {
		t.Fatalf("sign-in button says %q; want the demo login clearly labelled", label)
	}
	signIn(t, ctx, app, "Demo User", "demo@example.com", false)
	restart(t, app)
	do(t, ctx, app, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("user-name")))
	if got := text(t, ctx, "user-name"); got != "Demo User" {
		t.Fatalf("after restart: %q", got)
	}
}
