package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
	"example.com/oauth-sessions/internal/testservers"
)

// testSecret is a fixed SESSION_SECRET so restarts keep sessions valid.
const testSecret = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"

// idp is an OpenID Connect provider with a login form, on its own server.
type idp struct {
	*devprovidertest.Provider
	URL    string
	tokens *tokenRecorder
}

const (
	idpClientID     = "test-client"
	idpClientSecret = "test-client-secret"
)

func startIDP(t *testing.T) *idp {
	t.Helper()
	return startIDPOn(t, false)
}

// startIDPTLS starts the provider over https, as production requires; the
// process trusts its certificate (TestMain).
func startIDPTLS(t *testing.T) *idp {
	t.Helper()
	return startIDPOn(t, true)
}

func startIDPOn(t *testing.T, tls bool, edits ...func(*devprovider.Config)) *idp {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	scheme := "http"
	if tls {
		scheme = "https"
	}
	issuer := scheme + "://" + srv.Listener.Addr().String()
	cfg := devprovider.Config{Issuer: issuer, ClientID: idpClientID, ClientSecret: idpClientSecret}
	for _, edit := range edits {
		edit(&cfg)
	}
	p, err := devprovidertest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokenRecorder{next: p}
	srv.Config.Handler = rec
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &idp{Provider: p, URL: issuer, tokens: rec}
}

// tokenRecorder passes requests to the provider and keeps every token its
// token endpoint issues, so that tests can look for them where they must
// never be (logs, metrics, pages).
type tokenRecorder struct {
	next http.Handler

	mu     sync.Mutex
	issued []string
	// traceparents are the W3C trace contexts the token requests carried.
	traceparents []string
}

func (t *tokenRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/token") {
		t.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	t.next.ServeHTTP(rec, r)
	t.mu.Lock()
	t.traceparents = append(t.traceparents, r.Header.Get("Traceparent"))
	t.mu.Unlock()
	var answer map[string]any
	if json.Unmarshal(rec.Body.Bytes(), &answer) == nil {
		t.mu.Lock()
		for _, k := range []string{"access_token", "refresh_token"} { // (the ID token is the hint of a sign-out at the provider, by design)
			if v, ok := answer[k].(string); ok && v != "" {
				t.issued = append(t.issued, v)
			}
		}
		t.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// Traceparents returns the traceparent header of every token request.
func (t *tokenRecorder) Traceparents() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.traceparents)
}

// Issued returns every token the provider has issued so far.
func (t *tokenRecorder) Issued() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.issued)
}

// TestMain makes the process trust the certificate every httptest TLS
// server uses (SSL_CERT_FILE is read when the system roots are first
// loaded), so the app talks https to test providers as it must in
// production.
func TestMain(m *testing.M) {
	srv := httptest.NewTLSServer(nil)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	srv.Close()
	dir, err := os.MkdirTemp("", "web-test-ca")
	if err != nil {
		panic(err)
	}
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		panic(err)
	}
	os.Setenv("SSL_CERT_FILE", file)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// app is one run of the program, started in-process through run().
type app struct {
	URL    string
	addr   string       // where it listens
	ln     net.Listener // the test's own socket there, served again by a restart
	env    map[string]string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	clock  func() time.Time // nil: the real one
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// baseEnv is the environment of an app signing in against p, keeping its
// SQLite file and secret in dir. It names no port: startApp hands the
// program a listener on 127.0.0.1:0, and BASE_URL follows it.
func baseEnv(t *testing.T, p *idp, dir string) map[string]string {
	return map[string]string{
		"DATA_DIR":             dir,
		"SESSION_SECRET":       testSecret,
		"SESSION_TTL":          "1h",
		"GOOGLE_CLIENT_ID":     idpClientID,
		"GOOGLE_CLIENT_SECRET": idpClientSecret,
		"GOOGLE_ISSUER_URL":    p.URL,
		"LOG_LEVEL":            "debug",
		// Tests sign in many times from one address; the limits have
		// tests of their own.
		"LOGIN_RATE_LIMIT": "1000000", "LOGIN_RATE_BURST": "1000000", "LOGIN_START_MAX_PER_SECOND": "1000000",
	}
}

// startApp runs the program with env on a port the system picks and waits
// until /healthz answers.
func startApp(t *testing.T, env map[string]string) *app {
	t.Helper()
	return startAppOn(t, env, listen(t))
}

// listen is a socket of the test's on 127.0.0.1, for an app instance.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startAppOn runs the program with env on a copy of ln, and waits until
// /healthz answers. The test keeps ln itself open, so a restart serves
// the same socket again: no port is probed, and none is let go to be
// bound again (another process could take it in between).
func startAppOn(t *testing.T, env map[string]string, ln net.Listener) *app {
	t.Helper()
	return startAppClock(t, env, ln, nil)
}

// startAppClock is startAppOn with the handlers reading clock (nil: the
// real one) for session times and token expiry.
func startAppClock(t *testing.T, env map[string]string, ln net.Listener, clock func() time.Time) *app {
	t.Helper()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	dup, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if clock != nil {
		ctx = context.WithValue(ctx, clockKey{}, clock)
	}
	a := &app{URL: "http://" + ln.Addr().String(), addr: ln.Addr().String(), ln: ln, env: env, cancel: cancel, done: make(chan error, 1), logs: &syncBuffer{}, clock: clock}
	getenv := func(k string) string { return env[k] }
	go func() { a.done <- run(ctx, []string{"-env-file", "/nonexistent/.env"}, getenv, a.logs, a.logs, dup) }()
	testservers.WaitUntil(t, 15*time.Second, func() bool {
		select {
		case err := <-a.done:
			t.Fatalf("app exited during start-up: %v\n%s", err, a.logs)
		default:
		}
		res, err := http.Get(a.URL + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, "the app answering /healthz:\n%s", a.logs)
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop shuts the app down the way SIGTERM does and waits for run to return.
func (a *app) stop(t *testing.T) {
	t.Helper()
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.cancel = nil
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("run returned %v\n%s", err, a.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("app did not stop within 15s")
	}
}

// restart stops the app and starts it again with the same environment.
func (a *app) restart(t *testing.T) *app {
	t.Helper()
	a.stop(t)
	return startAppClock(t, a.env, a.ln, a.clock)
}

// browser is a cookie-keeping client that does not follow redirects, so each
// step of the flow can be checked.
type browser struct {
	*http.Client
	t *testing.T
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, Client: &http.Client{
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	Status   int
	Body     string
	Location string
	Header   http.Header
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	res, err := b.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Body: string(body), Location: res.Header.Get("Location"), Header: res.Header}
}

func (b *browser) get(u string) response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) postForm(u string, form url.Values) response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// cookie returns the browser's cookie called name for u.
func (b *browser) cookie(u, name string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, c := range b.Jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// startLogin begins a login and returns the provider's authorize URL.
func (b *browser) startLogin(a *app, returnTo string) string {
	b.t.Helper()
	u := a.URL + "/api/auth/google"
	if returnTo != "" {
		u += "?returnTo=" + url.QueryEscape(returnTo)
	}
	res := b.get(u)
	if res.Status != http.StatusFound || res.Location == "" {
		b.t.Fatalf("GET /api/auth/google = %d %q, want a redirect to the provider\n%s\napp log:\n%s", res.Status, res.Location, res.Body, a.logs)
	}
	return res.Location
}

// approve fills in the provider's login form and returns the callback URL.
func (b *browser) approve(authorizeURL, name, email string) string {
	b.t.Helper()
	page := b.get(authorizeURL)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "<form") {
		b.t.Fatalf("provider login page = %d\n%s", page.Status, page.Body)
	}
	au, _ := url.Parse(authorizeURL)
	form := au.Query()
	form.Set("name", name)
	form.Set("email", email)
	form.Set("action", "allow")
	res := b.postForm(au.Scheme+"://"+au.Host+au.Path, form)
	if res.Status != http.StatusFound {
		b.t.Fatalf("provider form post = %d\n%s", res.Status, res.Body)
	}
	return res.Location
}

// login runs the whole flow and checks it lands on returnTo.
func (b *browser) login(a *app, name, email string) {
	b.t.Helper()
	cb := b.approve(b.startLogin(a, ""), name, email)
	res := b.get(cb)
	if res.Status != http.StatusFound || res.Location != "/" {
		b.t.Fatalf("callback = %d %q, want 302 to /\n%s", res.Status, res.Location, res.Body)
	}
}

// me returns the status and body of /api/auth/me.
func (b *browser) me(a *app) response {
	b.t.Helper()
	return b.get(a.URL + "/api/auth/me")
}

// refused checks that a callback signed no one in: the browser is sent
// home (303) where a one-time notice containing want says why, and the
// sign-in buttons are there again; a reload does not show it twice.
func (b *browser) refused(a *app, r response, want string) {
	b.t.Helper()
	if r.Status != http.StatusSeeOther || (r.Location != "/" && !strings.HasPrefix(r.Location, "/?returnTo=")) {
		b.t.Fatalf("callback = %d %q, want 303 home with a notice\n%s", r.Status, r.Location, r.Body)
	}
	home := b.get(a.URL + r.Location)
	if home.Status != http.StatusOK || !strings.Contains(home.Body, `id="notice"`) || !strings.Contains(home.Body, want) || !strings.Contains(home.Body, `id="sign-in"`) {
		b.t.Fatalf("home after a refused sign-in = %d, want a notice containing %q and the sign-in button\n%s", home.Status, want, home.Body)
	}
	if again := b.get(a.URL + "/"); strings.Contains(again.Body, `id="notice"`) {
		b.t.Fatal("the notice is shown again on reload")
	}
	expectSignedOut(b.t, b, a)
}
