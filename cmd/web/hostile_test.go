package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/testbackends"
)

// TestHostileIDTokens: a token whose signature does not verify, or that is
// not signed at all, never signs anyone in.
func TestHostileIDTokens(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	unsigned := func(tok string) string {
		parts := strings.Split(tok, ".")
		hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		return hdr + "." + parts[1] + "."
	}
	badSig := func(tok string) string {
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		sig[5] ^= 0x01
		return parts[0] + "." + parts[1] + "." + string(sig)
	}
	for name, hook := range map[string]func(string) string{"alg none": unsigned, "bad signature": badSig} {
		t.Run(name, func(t *testing.T) {
			p.SetTamperToken(hook)
			defer p.SetTamperToken(nil)
			b := newBrowser(t)
			r := b.get(b.approve(b.startLogin(a, ""), "Ada", "ada@example.com"))
			b.refused(a, r, "could not be verified")
		})
	}
	if n := len(rows(t, dir)); n != 0 {
		t.Fatalf("%d rows after refused logins, want 0", n)
	}
}

// TestHostileCallbacks: a missing or reused code fails cleanly.
func TestHostileCallbacks(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))

	b := newBrowser(t)
	cb, _ := url.Parse(b.approve(b.startLogin(a, ""), "Ada", "ada@example.com"))
	q := cb.Query()
	q.Del("code")
	b.refused(a, b.get(a.URL+cb.Path+"?"+q.Encode()), "no authorization code")

	// A code already redeemed, presented with a fresh flow of the same browser.
	b2 := newBrowser(t)
	first, _ := url.Parse(b2.approve(b2.startLogin(a, ""), "Ada", "ada@example.com"))
	if r := b2.get(first.String()); r.Status != http.StatusFound {
		t.Fatalf("first callback = %d", r.Status)
	}
	second, _ := url.Parse(b2.approve(b2.startLogin(a, ""), "Ada", "ada@example.com"))
	q = second.Query()
	q.Set("code", first.Query().Get("code"))
	r := b2.get(a.URL + second.Path + "?" + q.Encode())
	if r.Status != http.StatusSeeOther || !strings.Contains(b2.get(a.URL+"/").Body, "could not be verified") {
		t.Fatalf("reused code = %d, want 303 home with a notice", r.Status)
	}
}

// TestHostileCookies: duplicated cookies and signed tokens of the wrong
// shape are treated as no session and reach no store.
func TestHostileCookies(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	good := b.cookie(a.URL, "sid").Value
	codec, _ := httpsession.NewCodec([]string{testSecret}, 3600)
	wrongLength, _ := codec.EncodeCookie("sid", httpsession.NewToken()[:20])
	wrongAlphabet, _ := codec.EncodeCookie("sid", strings.Repeat("!", 43))
	cases := map[string]string{
		"signed, wrong length":    "sid=" + wrongLength,
		"signed, wrong alphabet":  "sid=" + wrongAlphabet,
		"duplicated, bad first":   "sid=garbage; sid=" + good,
		"cookie for another name": "oauth_x=" + good,
	}
	for name, header := range cases {
		res := rawGet(t, a.URL+"/api/auth/me", header)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: /api/auth/me = %d, want 401", name, res.StatusCode)
		}
	}
}

// TestAtRest: what each store holds (the SQLite file, a dump of a store
// server's data) has neither the cookie's token nor user data in plain
// text.
func TestAtRest(t *testing.T) {
	p := startIDP(t)
	for _, srv := range testbackends.All() {
		if srv.Dump == nil {
			continue // nothing outside the process to copy
		}
		t.Run(srv.Name, func(t *testing.T) {
			env := withStore(t, baseEnv(t, p, t.TempDir()), srv)
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Grace Hopper", "grace.hopper@example.com")
			codec, _ := httpsession.NewCodec([]string{testSecret}, 3600)
			token, err := codec.DecodeCookie("sid", b.cookie(a.URL, "sid").Value)
			if err != nil {
				t.Fatal(err)
			}
			dump := srv.Dump(t, env)
			if !bytes.Contains(dump, []byte(httpsession.KeyFor(token))) {
				t.Fatalf("the dump does not hold the session's key: dumped the wrong place (%d bytes)", len(dump))
			}
			for _, secret := range []string{token, "grace.hopper@example.com", "Grace Hopper"} {
				if bytes.Contains(dump, []byte(secret)) {
					t.Errorf("the %s dump contains %q", srv.Name, secret)
				}
			}
		})
	}
}

// TestOneStateOneSession: two codes for one state, delivered by two
// concurrent callbacks carrying the same flow cookie, make exactly one
// session, on every store (the flow is taken from the store atomically).
func TestOneStateOneSession(t *testing.T) {
	p := startIDP(t)
	for _, srv := range testbackends.All() {
		t.Run(srv.Name, func(t *testing.T) {
			a := startApp(t, withStore(t, baseEnv(t, p, t.TempDir()), srv))
			const tries = 30
			var winner *http.Cookie
			for try := range tries {
				b := newBrowser(t)
				authorize := b.startLogin(a, "")
				first, second := b.approve(authorize, "Ada", "ada@example.com"), b.approve(authorize, "Ada", "ada@example.com")
				if first == second {
					t.Fatal("the provider issued the same code twice")
				}
				results := make(chan response, 2)
				for _, cb := range []string{first, second} {
					go func() { results <- b.get(cb) }()
				}
				won := 0
				for range 2 {
					r := <-results
					switch r.Status {
					case http.StatusFound:
						won++
					case http.StatusSeeOther: // home, with a notice
					default:
						t.Fatalf("try %d: callback = %d\n%s", try, r.Status, r.Body)
					}
				}
				if won != 1 {
					t.Fatalf("try %d: %d of 2 concurrent callbacks for one state signed in, want exactly 1", try, won)
				}
				winner = b.cookie(a.URL, "sid")
			}
			// Every session of the user: one per try, none twice.
			req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/sessions", nil)
			req.AddCookie(winner)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var list sessionsBody
			if err := json.NewDecoder(res.Body).Decode(&list); err != nil || len(list.Sessions) != tries {
				t.Fatalf("the user has %d sessions after %d sign-ins, want %d (%v)", len(list.Sessions), tries, tries, err)
			}
		})
	}
}

// metric reads one counter or gauge from /metrics (0 when absent).
func metric(t *testing.T, a *app, line string) float64 {
	t.Helper()
	res, err := http.Get(a.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, line+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestFakeFlowCookiesCostLittle: a login start carrying 2,500 made-up flow
// cookies looks at the newest few only, clears none of them (none is the
// app's), calls the store for none of them and writes one line of log.
func TestFakeFlowCookiesCostLittle(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	var cookies []string
	for i := range 2500 {
		cookies = append(cookies, fmt.Sprintf("oauth_%04x=x", i))
	}
	rejectedBefore := metric(t, a, `session_cookies_rejected_total{reason="bad cookie"}`)
	deletesBefore := metric(t, a, `session_store_operation_duration_seconds_count{operation="delete",store="sqlite"}`)
	logsBefore := strings.Count(a.logs.String(), "\n")
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/google", nil)
	req.Header.Set("Cookie", strings.Join(cookies, "; "))
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	logLines := strings.Count(a.logs.String(), "\n") - logsBefore
	if res.StatusCode != http.StatusFound {
		t.Fatalf("login start with 2,500 fake flow cookies = %d, want 302", res.StatusCode)
	}
	if n := len(res.Header.Values("Set-Cookie")); n != 1 {
		t.Errorf("%d Set-Cookie headers, want 1 (the new flow's)", n)
	}
	if n := metric(t, a, `session_cookies_rejected_total{reason="bad cookie"}`) - rejectedBefore; n > maxFlowsLookedAt {
		t.Errorf("%.0f cookies checked, want at most the newest %d", n, maxFlowsLookedAt)
	}
	if n := metric(t, a, `session_store_operation_duration_seconds_count{operation="delete",store="sqlite"}`) - deletesBefore; n != 0 {
		t.Errorf("%.0f store deletes for made-up cookies, want 0", n)
	}
	if logLines > 2 {
		t.Errorf("%d log lines for one request, want the start and the request (no line per cookie):\n%s", logLines, a.logs.String())
	}
	if n := len(rows(t, dir)); n != 1 {
		t.Errorf("%d rows, want the one new flow", n)
	}
}

// maxFlowsLookedAt is how many of a browser's flow cookies a login start
// looks at (handlers.maxPendingLogins).
const maxFlowsLookedAt = 5

// TestAbandonedLoginsAreCleared: a browser that started many logins has
// its own flows cleared (they are the app's), newest first.
func TestAbandonedLoginsAreCleared(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	for range maxFlowsLookedAt {
		b.startLogin(a, "")
	}
	if n := len(rows(t, dir)); n != maxFlowsLookedAt {
		t.Fatalf("%d flow rows after %d starts", n, maxFlowsLookedAt)
	}
	b.startLogin(a, "") // the sixth: the five before are cleared
	if n := len(rows(t, dir)); n != 1 {
		t.Fatalf("%d flow rows after the browser's abandoned logins were cleared, want 1", n)
	}
	u, _ := url.Parse(a.URL)
	if n := len(b.Jar.Cookies(u)); n != 1 {
		t.Fatalf("the browser keeps %d cookies, want its one new flow's", n)
	}
}
