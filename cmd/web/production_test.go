package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rawGet sends one request with an explicit Cookie header: Go's cookie jar
// (like a browser) will not send Secure cookies over plain http, and these
// tests talk to the app behind where a TLS proxy would be.
func rawGet(t *testing.T, u, cookie string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

func cookieNamed(res *http.Response, prefix string) *http.Cookie {
	for _, c := range res.Cookies() {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	return nil
}

func productionEnv(t *testing.T, p *idp) map[string]string {
	env := baseEnv(t, p, t.TempDir())
	env["APP_ENV"] = "production"
	env["BASE_URL"] = "https://app.example.com"
	env["SESSION_SECRET"] = "production-secret-0123456789abcdef-0123456789"
	env["TRUST_PROXY"] = "true"
	delete(env, "SESSION_TTL") // the production default
	return env
}

func TestProductionCookiesHeadersAndLogin(t *testing.T) {
	p := startIDPTLS(t)
	env := productionEnv(t, p)
	a := startApp(t, env)
	local := a.URL

	start := rawGet(t, local+"/api/auth/google", "", "X-Forwarded-Proto", "https")
	flow := cookieNamed(start, "__Host-oauth_")
	if start.StatusCode != http.StatusFound || flow == nil {
		t.Fatalf("start = %d, cookies %v; want a __Host-oauth_ cookie", start.StatusCode, start.Header["Set-Cookie"])
	}
	if !flow.Secure || !flow.HttpOnly || flow.SameSite != http.SameSiteLaxMode || flow.Path != "/" || flow.Domain != "" {
		t.Fatalf("flow cookie %+v: want Secure, HttpOnly, Lax, Path=/, no Domain", flow)
	}
	for h, want := range map[string]string{
		"Strict-Transport-Security": "max-age=",
		"Content-Security-Policy":   "frame-ancestors 'none'",
		"X-Content-Type-Options":    "nosniff",
		"Referrer-Policy":           "same-origin",
		"X-Frame-Options":           "DENY",
	} {
		if !strings.Contains(start.Header.Get(h), want) {
			t.Errorf("header %s = %q, want it to contain %q", h, start.Header.Get(h), want)
		}
	}

	// The provider sends the browser back to the public URL; deliver that
	// callback to the app as the TLS proxy would.
	b := newBrowser(t)
	cb, _ := url.Parse(b.approve(start.Header.Get("Location"), "Ada", "ada@example.com"))
	if cb.Scheme != "https" || cb.Host != "app.example.com" {
		t.Fatalf("redirect_uri = %s, want the https BASE_URL", cb)
	}
	done := rawGet(t, local+cb.Path+"?"+cb.RawQuery, flow.Name+"="+flow.Value, "X-Forwarded-Proto", "https")
	sid := cookieNamed(done, "__Host-sid")
	if done.StatusCode != http.StatusFound || sid == nil || !sid.Secure || !sid.HttpOnly {
		t.Fatalf("callback = %d, cookies %v; want a Secure HttpOnly __Host-sid", done.StatusCode, done.Header["Set-Cookie"])
	}
	if sid.MaxAge < 86000 {
		t.Fatalf("production session Max-Age %d, want ~24h (the production default)", sid.MaxAge)
	}
	me := rawGet(t, local+"/api/auth/me", "__Host-sid="+sid.Value)
	if me.StatusCode != http.StatusOK {
		t.Fatalf("/api/auth/me with __Host-sid = %d", me.StatusCode)
	}
	// A plain "sid" cookie is not what production reads.
	if r := rawGet(t, local+"/api/auth/me", "sid="+sid.Value); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/api/auth/me with an unprefixed cookie = %d, want 401", r.StatusCode)
	}
	if strings.Contains(a.logs.String(), "development provider") {
		t.Fatal("production offered the demo login")
	}
}

func TestTrustProxyDecidesSecureCookies(t *testing.T) {
	p := startIDP(t)
	for _, trust := range []string{"true", "false"} {
		env := baseEnv(t, p, t.TempDir())
		env["TRUST_PROXY"] = trust
		a := startApp(t, env)
		res := rawGet(t, a.URL+"/api/auth/google", "", "X-Forwarded-Proto", "https")
		secure := cookieNamed(res, "__Host-oauth_")
		plain := cookieNamed(res, "oauth_")
		if trust == "true" && (secure == nil || !secure.Secure) {
			t.Errorf("TRUST_PROXY=true behind https: cookies %v; want Secure __Host-", res.Header["Set-Cookie"])
		}
		if trust == "false" && (plain == nil || plain.Secure) {
			t.Errorf("TRUST_PROXY=false: a forged X-Forwarded-Proto changed the cookies: %v", res.Header["Set-Cookie"])
		}
	}
}

func TestRequestLimitsAndMetrics(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	if r := rawGet(t, a.URL+"/", "", "X-Huge", strings.Repeat("a", 100<<10)); r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("100 KB header = %d, want 431", r.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/api/auth/logout", bytes.NewReader(make([]byte, 1<<20)))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("1 MiB body = %d, want 413", res.StatusCode)
	}

	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	b.get(a.URL + "/api/auth/google/callback?state=bogus")
	m := b.get(a.URL + "/metrics")
	for _, want := range []string{
		`auth_logins_total{provider="google",reason="",stage="started"} 1`,
		`auth_logins_total{provider="google",reason="",stage="succeeded"} 1`,
		`auth_logins_total{provider="google",reason="bad_state",stage="failed"} 1`,
		`session_store_operation_duration_seconds_count{operation="save",store="sqlite"}`,
		`session_store_live_records{store="sqlite"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(a.logs.String(), b.cookie(a.URL, "sid").Value) {
		t.Error("a request log line contains the session cookie")
	}
	if !strings.Contains(a.logs.String(), `msg=request method=GET path=/api/auth/me status=`) && !strings.Contains(a.logs.String(), "request_id=") {
		t.Error("no structured request log lines")
	}
}

func TestBadConfigFailsWithOneLine(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-env-file", "/nonexistent"}, func(k string) string {
		return map[string]string{"SESSION_STORE": "postgres"}[k]
	}, &out, io.Discard, nil)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "config: SESSION_STORE:") {
		t.Fatalf("run with a bad SESSION_STORE = %v; want one line naming SESSION_STORE", err)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	_, port, _ := net.SplitHostPort(a.addr)
	check := func(env ...string) error {
		return run(context.Background(), []string{"-env-file", "/nonexistent", "healthcheck"},
			func(k string) string { return envOf(env...)[k] }, io.Discard, io.Discard, nil)
	}
	if err := check("PORT", port); err != nil {
		t.Fatalf("healthcheck against a running app (PORT): %v", err)
	}
	if err := check("LISTEN_ADDR", a.addr, "PORT", "1"); err != nil {
		t.Fatalf("healthcheck against a running app (LISTEN_ADDR wins over PORT): %v", err)
	}
	if err := check("PORT", closedPort(t)); err == nil {
		t.Fatal("healthcheck against a closed port succeeded")
	}
	if err := check("LISTEN_ADDR", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Fatalf("healthcheck with port 0 = %v, want an error that says the port is picked at start", err)
	}
}

// closedPort returns a loopback port nothing listens on (it was free a
// moment ago): for checks that a client fails, never for a server.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// envOf is a map of KEY, value pairs.
func envOf(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestSmallHardening: HEAD wherever GET works; a client's request id only
// when short and plain; a provider's error value clipped; one spelling per
// cookie; the content security policy.
func TestSmallHardening(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	sid := b.cookie(a.URL, "sid")

	for _, path := range []string{"/", "/healthz", "/readyz", "/api/auth/me", "/app", "/static/style.css", "/no-such-page"} {
		get := b.get(a.URL + path)
		req, _ := http.NewRequest(http.MethodHead, a.URL+path, nil)
		head := b.do(req)
		if head.Status != get.Status || head.Body != "" || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("HEAD %s = %d %q (%s); GET = %d (%s)", path, head.Status, head.Body, head.Header.Get("Content-Type"), get.Status, get.Header.Get("Content-Type"))
		}
	}

	long := strings.Repeat("x", 500)
	for id, echoed := range map[string]bool{"req-123.abc": true, long: false, "a b<script>": false} {
		res := rawGet(t, a.URL+"/healthz", "", "X-Request-Id", id)
		got := res.Header.Get("X-Request-Id")
		if (got == id) != echoed || got == "" || len(got) > 64 {
			t.Errorf("X-Request-Id %.20q came back as %.70q; want it echoed: %v", id, got, echoed)
		}
	}
	if strings.Contains(a.logs.String(), long) {
		t.Error("a long client request id reached the log")
	}

	// A provider error of any length is clipped in the page and the log.
	authorize := b.startLogin(a, "")
	au, _ := url.Parse(authorize)
	cb := a.URL + "/api/auth/google/callback?state=" + url.QueryEscape(au.Query().Get("state")) + "&error=" + strings.Repeat("E", 5000)
	if r := b.get(cb); strings.Contains(r.Body, strings.Repeat("E", 100)) {
		t.Errorf("the page shows the provider's 5000-character error value")
	}
	if strings.Contains(a.logs.String(), strings.Repeat("E", 100)) {
		t.Error("the log holds the provider's 5000-character error value")
	}

	// Another spelling of the same cookie (padding bits set) is refused.
	raw, err := base64.URLEncoding.DecodeString(sid.Value)
	if err != nil {
		t.Fatal(err)
	}
	if base64.URLEncoding.EncodeToString(raw) != sid.Value {
		t.Fatal("the app's own cookie is not canonical")
	}
	respelt := respell(sid.Value)
	if respelt == sid.Value {
		t.Fatal("no other spelling of the cookie found")
	}
	if alt, err := base64.URLEncoding.DecodeString(respelt); err != nil || !bytes.Equal(alt, raw) {
		t.Fatalf("the respelt cookie does not decode alike: %v", err)
	}
	if r := rawGet(t, a.URL+"/api/auth/me", "sid="+respelt); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("another spelling of the session cookie = %d, want 401", r.StatusCode)
	}

	csp := rawGet(t, a.URL+"/", "").Header.Get("Content-Security-Policy")
	if strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("Content-Security-Policy %q: want no unsafe-inline and form-action 'self'", csp)
	}
}

// respell returns v with the padding bits of its last significant base64
// character set: the same bytes, spelt differently.
func respell(v string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	trimmed := strings.TrimRight(v, "=")
	pad := len(v) - len(trimmed)
	if pad == 0 {
		return v
	}
	last := strings.IndexByte(alphabet, trimmed[len(trimmed)-1])
	spare := 2 * pad // bits of the last character that carry nothing: 2 per "="
	return trimmed[:len(trimmed)-1] + string(alphabet[last|(1<<spare-1)]) + v[len(trimmed):]
}

// TestIdleConnectionsCannotCrowdOut: with MAX_CONNECTIONS held by idle
// keep-alive connections, a new client is still served promptly.
func TestIdleConnectionsCannotCrowdOut(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["MAX_CONNECTIONS"] = "16"
	a := startApp(t, env)
	var idle []net.Conn
	for range 16 {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := keepAliveRequest(c); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c) // now idle, kept alive
	}
	start := time.Now()
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Get(a.URL + "/healthz")
	if err != nil {
		t.Fatalf("a new client with every connection held idle: %v", err)
	}
	res.Body.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a new client waited %s behind idle connections", d)
	}
	t.Logf("served after %s with %d idle connections at the limit", time.Since(start).Round(time.Millisecond), len(idle))
}

// TestListeningLineWhateverTheLevel: the line that names the address a
// server with port 0 got is written even at LOG_LEVEL=error.
func TestListeningLineWhateverTheLevel(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["LOG_LEVEL"] = "error"
	a := startApp(t, env)
	if !strings.Contains(a.logs.String(), `msg="Server listening" addr=`+a.addr) {
		t.Fatalf("no listening line naming %s at LOG_LEVEL=error:\n%s", a.addr, a.logs)
	}
}
