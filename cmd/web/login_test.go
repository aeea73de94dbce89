package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/testservers"

	_ "modernc.org/sqlite"
)

type meBody struct {
	User struct {
		ID, Email, Name, Picture, Provider string
	} `json:"user"`
	Session struct {
		Store     string    `json:"store"`
		CreatedAt time.Time `json:"createdAt"`
		ExpiresAt time.Time `json:"expiresAt"`
	} `json:"session"`
	Error string `json:"error"`
}

func decodeMe(t *testing.T, r response) meBody {
	t.Helper()
	var m meBody
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		t.Fatalf("/api/auth/me body %q: %v", r.Body, err)
	}
	return m
}

func expectSignedIn(t *testing.T, b *browser, a *app, email string) meBody {
	t.Helper()
	r := b.me(a)
	if r.Status != http.StatusOK {
		t.Fatalf("/api/auth/me = %d %s, want 200", r.Status, r.Body)
	}
	m := decodeMe(t, r)
	if m.User.Email != email {
		t.Fatalf("/api/auth/me user = %+v, want %s", m.User, email)
	}
	return m
}

func expectSignedOut(t *testing.T, b *browser, a *app) {
	t.Helper()
	r := b.me(a)
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("/api/auth/me = %d %s, want 401", r.Status, r.Body)
	}
	if m := decodeMe(t, r); m.Error == "" {
		t.Fatalf("401 body %q has no error message", r.Body)
	}
}

// expectSignedOutSoon is expectSignedOut for a sign-out made elsewhere
// (another instance, the CLI): the app's session cache learns of it from
// the store's change feed, within milliseconds, not within the same
// instant. It fails if that takes more than a second.
func expectSignedOutSoon(t *testing.T, b *browser, a *app) {
	t.Helper()
	start := time.Now()
	testservers.WaitUntil(t, time.Second, func() bool { return b.me(a).Status == http.StatusUnauthorized },
		"a session ended elsewhere signed out here too")
	t.Logf("session ended elsewhere: signed out here after %s", time.Since(start).Round(time.Microsecond))
	expectSignedOut(t, b, a)
}

type row struct {
	key string
	exp time.Time
}

// rows reads the SQLite session table directly, as an operator would: the
// database in dir (sessions.db unless a file name is given).
func rows(t *testing.T, dir string, file ...string) []row {
	t.Helper()
	name := "sessions.db"
	if len(file) > 0 {
		name = file[0]
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, name)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT key, expires_at FROM sessions`)
	if err != nil {
		t.Fatalf("query sessions: %v", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		var ms int64
		if err := rs.Scan(&r.key, &ms); err != nil {
			t.Fatal(err)
		}
		r.exp = time.UnixMilli(ms)
		out = append(out, r)
	}
	return out
}

func near(got, want time.Time) bool {
	d := got.Sub(want)
	return d < 5*time.Second && d > -5*time.Second
}

func TestLoginSurvivesRestart(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	expectSignedOut(t, b, a)
	b.login(a, "Ada Lovelace", "ada@example.com")
	before := expectSignedIn(t, b, a, "ada@example.com")
	if before.User.Name != "Ada Lovelace" || before.User.Provider != "google" || before.Session.Store != "sqlite" {
		t.Fatalf("me = %+v", before)
	}
	if !near(before.Session.ExpiresAt, before.Session.CreatedAt.Add(time.Hour)) {
		t.Fatalf("session expires %v, want created+SESSION_TTL (1h) from %v", before.Session.ExpiresAt, before.Session.CreatedAt)
	}

	// The page proves the restart only once there was one.
	if home := b.get(a.URL + "/"); strings.Contains(home.Body, `id="survived"`) || !strings.Contains(home.Body, "<title>Signed in as Ada Lovelace") {
		t.Fatalf("home page before any restart:\n%s", home.Body)
	}
	a = a.restart(t)
	after := expectSignedIn(t, b, a, "ada@example.com")
	if !after.Session.CreatedAt.Equal(before.Session.CreatedAt) {
		t.Fatalf("session after restart created %v, want the same session (%v)", after.Session.CreatedAt, before.Session.CreatedAt)
	}
	home := b.get(a.URL + "/")
	if !strings.Contains(home.Body, "Ada Lovelace") || !strings.Contains(home.Body, `<dd id="store">sqlite</dd>`) ||
		!strings.Contains(home.Body, "Your session survived a restart.") || !strings.Contains(home.Body, "the sqlite store kept it") {
		t.Fatalf("home page after restart does not show the user, the store and that the session survived:\n%s", home.Body)
	}
}

func TestLoginCookieAttributesAndLog(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	cb := b.approve(b.startLogin(a, ""), "Ada", "ada@example.com")
	res := b.get(cb)
	var sid *http.Cookie
	for _, c := range (&http.Response{Header: res.Header}).Cookies() {
		if c.Name == "sid" {
			sid = c
		}
	}
	if sid == nil {
		t.Fatalf("callback set no sid cookie: %v", res.Header["Set-Cookie"])
	}
	if !sid.HttpOnly || sid.SameSite != http.SameSiteLaxMode || sid.Path != "/" || sid.Secure {
		t.Fatalf("sid cookie = %+v; want HttpOnly, SameSite=Lax, Path=/, not Secure over plain http in development", sid)
	}
	if sid.MaxAge < 3590 || sid.MaxAge > 3600 {
		t.Fatalf("sid Max-Age = %d, want the session's remaining life (~3600)", sid.MaxAge)
	}
	for _, want := range []string{"Initializing session store", "storeType=sqlite", "environment=development", "Creating SQLite session store", "dbPath=", "table=sessions", "User logged in"} {
		if !strings.Contains(a.logs.String(), want) {
			t.Errorf("logs lack %q", want)
		}
	}
	token := strings.Split(sid.Value, "|")[0]
	if strings.Contains(a.logs.String(), sid.Value) || (len(token) > 20 && strings.Contains(a.logs.String(), token)) {
		t.Error("logs contain the session cookie")
	}
}

func TestStoreRowsOnlyForLogins(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	for _, path := range []string{"/", "/api/auth/me", "/healthz", "/readyz", "/static/style.css", "/nope"} {
		b.get(a.URL + path)
	}
	if r := rows(t, dir); len(r) != 0 {
		t.Fatalf("a visitor who never logs in left %d rows", len(r))
	}

	authURL := b.startLogin(a, "/after")
	flows := rows(t, dir)
	if len(flows) != 1 || !near(flows[0].exp, time.Now().Add(10*time.Minute)) {
		t.Fatalf("after starting a login: rows %+v, want one flow row expiring in ~10 minutes", flows)
	}
	res := b.get(b.approve(authURL, "Ada", "ada@example.com"))
	if res.Status != http.StatusFound || res.Location != "/after" {
		t.Fatalf("callback = %d %q, want 302 to the return path /after", res.Status, res.Location)
	}
	after := rows(t, dir)
	if len(after) != 1 || after[0].key == flows[0].key {
		t.Fatalf("after the callback: rows %+v; want only the login row, the flow row %s gone", after, flows[0].key)
	}
	if !near(after[0].exp, time.Now().Add(time.Hour)) {
		t.Fatalf("login row expires %v, want ~1h (SESSION_TTL)", after[0].exp)
	}
}

func TestTwoTabsLogInConcurrently(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	tab1 := b.startLogin(a, "/one")
	tab2 := b.startLogin(a, "/two")
	cb2 := b.approve(tab2, "Tab Two", "two@example.com")
	cb1 := b.approve(tab1, "Tab One", "one@example.com")
	if r := b.get(cb2); r.Status != http.StatusFound || r.Location != "/two" {
		t.Fatalf("second tab's callback = %d %q", r.Status, r.Location)
	}
	if r := b.get(cb1); r.Status != http.StatusFound || r.Location != "/one" {
		t.Fatalf("first tab's callback = %d %q", r.Status, r.Location)
	}
	expectSignedIn(t, b, a, "one@example.com")
}

func TestBadCookiesAre401(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	env := baseEnv(t, p, dir)
	a := startApp(t, env)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	good := b.cookie(a.URL, "sid").Value

	// A cookie signed with another secret, from another app.
	otherEnv := baseEnv(t, p, t.TempDir())
	otherEnv["SESSION_SECRET"] = "another-secret-entirely-0123456789abcdef"
	other := startApp(t, otherEnv)
	ob := newBrowser(t)
	ob.login(other, "Eve", "eve@example.com")
	foreign := ob.cookie(other.URL, "sid").Value

	flipped := []byte(good)
	flipped[len(flipped)/2] ^= 0x01
	cases := map[string]string{
		"tampered":       string(flipped),
		"truncated":      good[:len(good)-6],
		"unsigned token": httpsession.NewToken(),
		"foreign secret": foreign,
		"empty":          "",
		"garbage":        "%%%not-a-cookie%%%",
		"oversized":      strings.Repeat("A", 5000),
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/me", nil)
			req.Header.Set("Cookie", "sid="+value)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", res.StatusCode)
			}
		})
	}
	expectSignedIn(t, b, a, "ada@example.com") // the real one still works
	if n := len(rows(t, dir)); n != 1 {
		t.Fatalf("%d rows after bad cookies, want only the one login", n)
	}
}

func TestBadStateIsRefused(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	cb := b.approve(b.startLogin(a, ""), "Ada", "ada@example.com")
	if r := b.get(cb); r.Status != http.StatusFound {
		t.Fatalf("first callback = %d", r.Status)
	}
	loginRows := len(rows(t, dir))

	// Replay, unknown state, no state, and a state from another browser.
	other := newBrowser(t)
	otherCB := other.approve(other.startLogin(a, ""), "Mallory", "m@example.com")
	cu, _ := url.Parse(cb)
	q := cu.Query()
	q.Set("state", "made-up-state")
	cases := map[string]string{
		"replayed":      cb,
		"unknown":       a.URL + "/api/auth/google/callback?" + q.Encode(),
		"missing":       a.URL + "/api/auth/google/callback?code=x",
		"cross-browser": otherCB,
	}
	for name, u := range cases {
		t.Run(name, func(t *testing.T) {
			fresh := newBrowser(t)
			if name == "replayed" {
				fresh = b
			}
			r := fresh.get(u)
			if name == "replayed" { // still signed in from the first callback
				if r.Status != http.StatusSeeOther || !strings.Contains(fresh.get(a.URL+"/").Body, "Please sign in again") {
					t.Fatalf("replayed callback = %d, want 303 home with a notice", r.Status)
				}
				return
			}
			fresh.refused(a, r, "Please sign in again")
		})
	}
	if n := len(rows(t, dir)); n != loginRows+1 { // +1: the other browser's pending flow
		t.Fatalf("%d rows, want %d: a refused callback must create no session", n, loginRows+1)
	}
}

func TestBadIDTokensAreRefused(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	cases := map[string]func(map[string]any){
		"wrong nonce":    func(c map[string]any) { c["nonce"] = "not-the-nonce" },
		"no nonce":       func(c map[string]any) { delete(c, "nonce") },
		"wrong audience": func(c map[string]any) { c["aud"] = "someone-else" },
		"wrong issuer":   func(c map[string]any) { c["iss"] = "https://evil.example" },
		"expired":        func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() },
	}
	for name, tamper := range cases {
		t.Run(name, func(t *testing.T) {
			p.SetTamper(tamper)
			defer p.SetTamper(nil)
			b := newBrowser(t)
			b.refused(a, b.get(b.approve(b.startLogin(a, ""), "Ada", "ada@example.com")), "could not be verified")
		})
	}
	if n := len(rows(t, dir)); n != 0 {
		t.Fatalf("%d rows after refused logins, want 0", n)
	}
}

func TestProviderErrorIsFriendly(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	au, _ := url.Parse(b.startLogin(a, ""))
	form := au.Query()
	form.Set("action", "deny")
	res := b.postForm(au.Scheme+"://"+au.Host+au.Path, form)
	if !strings.Contains(res.Location, "error=access_denied") {
		t.Fatalf("provider did not send access_denied: %q", res.Location)
	}
	b.refused(a, b.get(res.Location), "You cancelled the sign-in")
	// With Accept: application/json the callback answers as an API would.
	req, _ := http.NewRequest(http.MethodGet, res.Location, nil)
	req.Header.Set("Accept", "application/json")
	if r := b.do(req); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, `"error"`) {
		t.Fatalf("the used callback as JSON = %d %s, want 400 {\"error\"}", r.Status, r.Body)
	}
}

func TestProviderUnreachableGivesAClearPage(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["GOOGLE_ISSUER_URL"] = "http://127.0.0.1:1" // nothing listens there
	a := startApp(t, env)                           // starts without the provider
	b := newBrowser(t)
	r := b.get(a.URL + "/api/auth/google")
	if r.Status != http.StatusBadGateway || !strings.Contains(r.Body, "could not be reached") {
		t.Fatalf("login with the provider down = %d\n%s", r.Status, r.Body)
	}
}

func TestLogout(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	old := b.cookie(a.URL, "sid").Value

	// A cross-origin POST is refused and the session survives.
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/api/auth/logout", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(req); r.Status != http.StatusForbidden {
		t.Fatalf("cross-origin logout = %d, want 403", r.Status)
	}
	expectSignedIn(t, b, a, "ada@example.com")

	req, _ = http.NewRequest(http.MethodPost, a.URL+"/api/auth/logout", nil)
	req.Header.Set("Origin", a.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if r := b.do(req); r.Status != http.StatusOK {
		t.Fatalf("logout = %d %s", r.Status, r.Body)
	}
	expectSignedOut(t, b, a)
	if n := len(rows(t, dir)); n != 0 {
		t.Fatalf("%d rows after logout, want 0 (deleted server-side)", n)
	}
	replay, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/me", nil)
	replay.Header.Set("Cookie", "sid="+old)
	if r := newBrowser(t).do(replay); r.Status != http.StatusUnauthorized {
		t.Fatalf("replayed cookie after logout = %d, want 401", r.Status)
	}
}

func TestStoreCopyRevealsNothing(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	b.login(a, "Grace Hopper", "grace.hopper@example.com")
	codec, err := httpsession.NewCodec([]string{testSecret}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	token, err := codec.DecodeCookie("sid", b.cookie(a.URL, "sid").Value)
	if err != nil {
		t.Fatalf("decode own cookie: %v", err)
	}
	a.stop(t) // flush; the copy is the file as a backup would take it
	var all []byte
	for _, f := range []string{"sessions.db", "sessions.db-wal"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err == nil {
			all = append(all, data...)
		}
	}
	if len(all) == 0 {
		t.Fatal("read nothing from the SQLite files")
	}
	for _, secret := range []string{token, "grace.hopper@example.com", "Grace Hopper", "dev|grace"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("the SQLite file contains %q in plain text", secret)
		}
	}
	if !bytes.Contains(all, []byte(httpsession.KeyFor(token))) {
		t.Error("the store key (hash of the token) was not found: the test is not looking at the right file")
	}
	info, err := os.Stat(filepath.Join(dir, "sessions.db"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("sessions.db mode = %v, want 0600", info.Mode().Perm())
	}
}

func TestSecretRotation(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	env := baseEnv(t, p, dir)
	a := startApp(t, env)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	a.stop(t)

	env["SESSION_SECRET"] = "the-new-secret-0123456789-abcdefghijklmnop," + testSecret
	a = startApp(t, env)
	expectSignedIn(t, b, a, "ada@example.com") // old session, new secret first
	nb := newBrowser(t)
	nb.login(a, "Bea", "bea@example.com") // new sessions use the new secret
	a.stop(t)

	env["SESSION_SECRET"] = "the-new-secret-0123456789-abcdefghijklmnop"
	a = startApp(t, env)
	expectSignedIn(t, nb, a, "bea@example.com")
	expectSignedOut(t, b, a) // the retired secret no longer opens anything
}

func TestReturnPathStaysOnSite(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	for _, evil := range []string{"//evil.example", "https://evil.example/x", "/\\evil.example", "/%2F%2Fevil.example", "%2F%2Fevil.example", "javascript:alert(1)"} {
		b := newBrowser(t)
		r := b.get(b.approve(b.startLogin(a, evil), "Ada", "ada@example.com"))
		if r.Status != http.StatusFound || r.Location != "/" {
			t.Errorf("returnTo %q: callback redirects to %q, want /", evil, r.Location)
		}
	}
}

// TestAbandonedLoginsAreBounded: a browser that starts login after login
// without finishing keeps at most a handful of flow cookies and rows.
func TestAbandonedLoginsAreBounded(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	b := newBrowser(t)
	for range 12 {
		b.startLogin(a, "")
	}
	u, _ := url.Parse(a.URL)
	flows := 0
	for _, c := range b.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, "oauth_") {
			flows++
		}
	}
	if flows > 5 || flows == 0 {
		t.Fatalf("%d flow cookies after 12 abandoned logins, want 1 to 5", flows)
	}
	if n := len(rows(t, dir)); n != flows {
		t.Fatalf("%d flow rows for %d flow cookies", n, flows)
	}
	b.login(a, "Ada", "ada@example.com") // and the browser can still sign in
}
