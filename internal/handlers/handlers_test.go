package handlers_test

import (
	"bytes"
	"encoding/json"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	oauthsessions "example.com/oauth-sessions"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/fakeclock"
	"example.com/oauth-sessions/internal/handlers"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/metrics"
	// BEGIN remove:notes
	"example.com/oauth-sessions/internal/notes"
	// END remove:notes
	"example.com/oauth-sessions/internal/sessionstore/memstore"
	"example.com/oauth-sessions/internal/telemetry"
)

const base = "http://app.test"

// testApp is the whole handler, as the program builds it, over the memory
// store and the built-in demo provider, on a fake clock. Requests go to it
// in-process: no network, no server.
type testApp struct {
	handler http.Handler
	clock   *fakeclock.Clock
	store   *memstore.Store
	codec   *httpsession.Codec
	logs    *bytes.Buffer
	// BEGIN remove:notes
	notes *notes.SQLite // in a file of the test's, on its clock
	// END remove:notes
}

func newApp(tb testing.TB, withCache bool) *testApp {
	tb.Helper()
	return newAppWith(tb, appOptions{cache: withCache})
}

// appOptions change the test app.
type appOptions struct {
	cache bool
	// accessTTL is how long the demo provider's access tokens live (0:
	// its default, 5 minutes).
	accessTTL time.Duration
	// tracing, when set, traces the handler as the program does.
	tracing *telemetry.Tracing
}

func newAppWith(tb testing.TB, o appOptions) *testApp {
	tb.Helper()
	withCache, accessTTL := o.cache, o.accessTTL
	clock := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	store := memstore.New(memstore.Options{Now: clock.Now})
	tb.Cleanup(func() { store.Close() })
	codec, err := httpsession.NewCodec([]string{"handlers-test-secret-0123456789abcdef"}, 3600)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl, err := template.ParseFS(oauthsessions.Files, "web/templates/*.html")
	if err != nil {
		tb.Fatal(err)
	}
	static, err := fs.Sub(oauthsessions.Files, "static")
	if err != nil {
		tb.Fatal(err)
	}
	callback := base + "/api/auth/demo/callback"
	dev, err := devprovider.New(devprovider.Config{Issuer: base + "/demo-idp", ClientID: "demo", ClientSecret: "demo-secret", RedirectURIs: []string{callback}, AccessTokenTTL: accessTTL})
	if err != nil {
		tb.Fatal(err)
	}
	var cache *httpsession.Cache
	if withCache {
		cache = httpsession.NewCache(store, 100)
	}
	logs := &bytes.Buffer{}
	m := metrics.New()
	baseURL, _ := url.Parse(base)
	a := &testApp{clock: clock, store: store, codec: codec, logs: logs}
	d := handlers.Deps{
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Backend: m.Store("memory", store), Cache: cache, StoreName: "memory",
		Codec: codec, Metrics: m, Now: clock.Now,
		Providers: []auth.Provider{auth.NewOIDC(auth.OIDCConfig{Name: "demo", Label: "Development provider", Issuer: base + "/demo-idp", ClientID: "demo",
			ClientSecret: "demo-secret", RedirectURL: callback, HTTPClient: dev.Client(),
			// Offline access, as the program asks the demo provider.
			Scopes: []string{"openid", "email", "profile", "offline_access"}, AuthParams: url.Values{"prompt": {"consent"}}})},
		DevProvider: dev, DevProviderPath: "/demo-idp",
		BaseURL: baseURL, SessionTTL: time.Hour, TouchAfter: time.Minute,
		Templates: tmpl, Static: static,
	}
	// BEGIN remove:notes
	if a.notes, err = notes.OpenSQLite(tb.Context(), tb.TempDir()+"/app.db", clock.Now); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.notes.Close() })
	d.Notes = a.notes
	// END remove:notes
	d.Traced = o.tracing.Enabled()
	a.handler = o.tracing.Handler(handlers.New(d), "/healthz")
	return a
}

// session saves a login session for id as a sign-in leaves it and returns
// its cookie.
func (a *testApp) session(tb testing.TB, id auth.Identity) *http.Cookie {
	tb.Helper()
	m := httpsession.NewManager(a.store, a.codec, httpsession.Options{Now: a.clock.Now,
		Kinds: []httpsession.Kind{{Name: httpsession.KindLogin, Cookie: "sid", TTL: time.Hour}}})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	s, err := m.Fresh(r, "sid")
	if err != nil {
		tb.Fatal(err)
	}
	s.Values[httpsession.KeyUser] = id
	if err := s.Save(r, w); err != nil {
		tb.Fatal(err)
	}
	return w.Result().Cookies()[0]
}

// browser returns a client that keeps cookies, does not follow redirects
// and sends its requests to the handler in-process.
func (a *testApp) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: inProcess{a.handler},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	// The handler gets its own request, as from a server: middleware may
	// replace its body, which the client then closes.
	in := r.Clone(r.Context())
	if in.Body == nil {
		in.Body = http.NoBody
	}
	in.RemoteAddr = "192.0.2.1:1234"
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	res := rec.Result()
	res.Request = r
	return res, nil
}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, c *http.Client, method, path string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, nil)
	return roundTrip(t, c, req, header...)
}

// roundTrip sends req with the header's name, value pairs and reads the
// whole reply.
func roundTrip(t testing.TB, c *http.Client, req *http.Request, header ...string) reply {
	t.Helper()
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, string(b)}
}

// strictJSON decodes body into v, failing on fields v does not have: the
// response shapes are the contract.
func strictJSON(t *testing.T, body string, v any) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("body %q does not have the documented shape: %v", body, err)
	}
}

type errorJSON struct {
	Error string `json:"error"`
}

func TestAnonymousRoutes(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	for _, tc := range []struct {
		method, path string
		status       int
		location     string // for redirects
		json         bool   // an {"error": ...} body
		contains     string
	}{
		{"GET", "/", 200, "", false, "Sign in with the development provider"},
		{"GET", "/healthz", 200, "", false, `{"status":"ok"}`},
		{"GET", "/readyz", 200, "", false, `{"status":"ready","store":"memory"}`},
		{"GET", "/api/auth/me", 401, "", true, "not signed in"},
		{"GET", "/api/auth/sessions", 401, "", true, "not signed in"},
		{"DELETE", "/api/auth/sessions/abc", 401, "", true, "not signed in"},
		{"GET", "/api/app/hello", 401, "", true, "not signed in"},
		{"GET", "/app", 303, "/api/auth/demo?returnTo=%2Fapp", false, ""},
		{"GET", "/sessions", 303, "/api/auth/demo?returnTo=%2Fsessions", false, ""},
		{"GET", "/no-such-page", 404, "", false, "Page not found"},
		{"GET", "/favicon.ico", 200, "", false, "<svg"},
		{"GET", "/api/no-such-route", 404, "", true, ""},
		{"POST", "/api/auth/logout", 200, "", false, `{"ok":true}`},
	} {
		r := do(t, c, tc.method, tc.path, "Sec-Fetch-Site", "same-origin")
		if r.status != tc.status || r.header.Get("Location") != tc.location || !strings.Contains(r.body, tc.contains) {
			t.Errorf("%s %s = %d %q %q; want %d %q containing %q", tc.method, tc.path, r.status, r.header.Get("Location"), r.body, tc.status, tc.location, tc.contains)
		}
		if tc.json {
			var e errorJSON
			strictJSON(t, r.body, &e)
			if e.Error == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Errorf("%s %s: error body %q (%s); want {\"error\": ...} as JSON", tc.method, tc.path, r.body, r.header.Get("Content-Type"))
			}
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" && tc.path != "/favicon.ico" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tc.method, tc.path, cc)
		}
	}
	css := do(t, c, "GET", "/static/style.css")
	if css.status != 200 || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") || !strings.Contains(css.header.Get("Cache-Control"), "max-age") {
		t.Errorf("static file = %d %s %s; want cacheable CSS", css.status, css.header.Get("Content-Type"), css.header.Get("Cache-Control"))
	}
	// A missing file is not cached: once it exists, browsers must see it.
	for _, path := range []string{"/static/nonexistent.css", "/static/", "/static/../go.mod"} {
		if r := do(t, c, "GET", path); r.status != 404 || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s = %d, Cache-Control %q; want 404 with no-store", path, r.status, r.header.Get("Cache-Control"))
		}
	}
	if n := a.store.Len(); n != 0 {
		t.Fatalf("anonymous requests left %d records in the store, want 0", n)
	}
}

func TestCrossOriginStateChangesAreRefused(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	for _, tc := range []struct{ method, path string }{
		{"POST", "/api/auth/logout"}, {"DELETE", "/api/auth/sessions/x"}, {"POST", "/api/auth/sessions/revoke-others"},
	} {
		r := do(t, c, tc.method, tc.path, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		var e errorJSON
		strictJSON(t, r.body, &e)
		if r.status != http.StatusForbidden || !strings.Contains(e.Error, "cross-origin") {
			t.Errorf("cross-origin %s %s = %d %s, want 403", tc.method, tc.path, r.status, r.body)
		}
	}
}

// signIn runs the demo login in-process, from the sign-in link to the
// callback, and returns where it lands.
func signIn(t testing.TB, c *http.Client, returnTo string) string {
	t.Helper()
	start := do(t, c, "GET", "/api/auth/google?returnTo="+url.QueryEscape(returnTo))
	auth, err := url.Parse(start.header.Get("Location"))
	if start.status != http.StatusFound || err != nil || auth.Path != "/demo-idp/authorize" {
		t.Fatalf("start = %d %q", start.status, start.header.Get("Location"))
	}
	if page := do(t, c, "GET", auth.RequestURI()); page.status != 200 || !strings.Contains(page.body, "<form") {
		t.Fatalf("provider page = %d", page.status)
	}
	form := auth.Query()
	form.Set("name", "Ada Lovelace")
	form.Set("email", "ada@example.com")
	form.Set("action", "allow")
	req, _ := http.NewRequest(http.MethodPost, base+"/demo-idp/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.Do(req)
	if err != nil || res.StatusCode != http.StatusFound {
		t.Fatalf("provider form = %v %v", res, err)
	}
	cb, _ := url.Parse(res.Header.Get("Location"))
	back := do(t, c, "GET", cb.RequestURI())
	if back.status != http.StatusFound {
		t.Fatalf("callback = %d %s", back.status, back.body)
	}
	return back.header.Get("Location")
}

func TestSignedInRoutes(t *testing.T) {
	a := newApp(t, true)
	c := a.browser()
	if got := signIn(t, c, "/app"); got != "/app" {
		t.Fatalf("after the sign-in the browser goes to %q, want back to /app", got)
	}

	var me struct {
		User struct {
			ID       string `json:"id"`
			Email    string `json:"email"`
			Name     string `json:"name"`
			Picture  string `json:"picture"`
			Provider string `json:"provider"`
		} `json:"user"`
		Session struct {
			Store     string    `json:"store"`
			CreatedAt time.Time `json:"createdAt"`
			ExpiresAt time.Time `json:"expiresAt"`
		} `json:"session"`
		API struct {
			Scopes      []string  `json:"scopes"`
			ExpiresAt   time.Time `json:"expiresAt"`
			Refreshable bool      `json:"refreshable"`
		} `json:"api"`
	}
	r := do(t, c, "GET", "/api/auth/me")
	strictJSON(t, r.body, &me)
	if !slices.Equal(me.API.Scopes, []string{"openid", "email", "profile", "offline_access"}) || !me.API.Refreshable ||
		!me.API.ExpiresAt.Equal(a.clock.Now().Add(5*time.Minute)) {
		t.Errorf("/api/auth/me api = %+v, want the demo's scopes, refreshable, expiring in 5 minutes", me.API)
	}
	if r.status != 200 || me.User.Email != "ada@example.com" || me.User.Name != "Ada Lovelace" || me.User.Provider != "demo" ||
		me.Session.Store != "memory" || !me.Session.ExpiresAt.Equal(me.Session.CreatedAt.Add(time.Hour)) || !me.Session.CreatedAt.Equal(a.clock.Now()) {
		t.Fatalf("/api/auth/me = %d %+v", r.status, me)
	}

	app := do(t, c, "GET", "/app")
	if app.status != 200 || !strings.Contains(app.body, "Hello, Ada Lovelace") || app.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("/app = %d %q (Cache-Control %q)", app.status, app.body, app.header.Get("Cache-Control"))
	}
	var hello struct {
		Greeting string `json:"greeting"`
	}
	r = do(t, c, "GET", "/api/app/hello")
	strictJSON(t, r.body, &hello)
	if r.status != 200 || hello.Greeting != "Hello, Ada Lovelace" {
		t.Fatalf("/api/app/hello = %d %q", r.status, r.body)
	}

	var list struct {
		Sessions []struct {
			ID         string    `json:"id"`
			Current    bool      `json:"current"`
			Device     string    `json:"device"`
			CreatedAt  time.Time `json:"createdAt"`
			LastSeenAt time.Time `json:"lastSeenAt"`
			ExpiresAt  time.Time `json:"expiresAt"`
		} `json:"sessions"`
	}
	r = do(t, c, "GET", "/api/auth/sessions")
	strictJSON(t, r.body, &list)
	if r.status != 200 || len(list.Sessions) != 1 || !list.Sessions[0].Current {
		t.Fatalf("/api/auth/sessions = %d %s", r.status, r.body)
	}
	var revoked struct {
		Revoked int `json:"revoked"`
	}
	r = do(t, c, "POST", "/api/auth/sessions/revoke-others", "Sec-Fetch-Site", "same-origin")
	strictJSON(t, r.body, &revoked)
	if r.status != 200 || revoked.Revoked != 0 {
		t.Fatalf("revoke-others = %d %s", r.status, r.body)
	}
	if r := do(t, c, "DELETE", "/api/auth/sessions/not-mine", "Sec-Fetch-Site", "same-origin"); r.status != 404 {
		t.Fatalf("revoking an unknown session = %d, want 404", r.status)
	}
	if p := do(t, c, "GET", "/sessions"); p.status != 200 || !strings.Contains(p.body, "ada@example.com") {
		t.Fatalf("/sessions = %d", p.status)
	}

	// The demo provider has an end_session_endpoint: the JSON answer says
	// where to sign out there too (RP-initiated logout).
	var ok struct {
		OK             bool   `json:"ok"`
		ProviderLogout string `json:"providerLogout"`
	}
	r = do(t, c, "POST", "/api/auth/logout", "Sec-Fetch-Site", "same-origin")
	strictJSON(t, r.body, &ok)
	end, err := url.Parse(ok.ProviderLogout)
	if r.status != 200 || !ok.OK || err != nil || end.Host != "app.test" || end.Path != "/demo-idp/logout" {
		t.Fatalf("logout = %d %s", r.status, r.body)
	}
	q := end.Query()
	if q.Get("client_id") != "demo" || q.Get("post_logout_redirect_uri") != base+"/" || q.Get("state") == "" || strings.Count(q.Get("id_token_hint"), ".") != 2 {
		t.Fatalf("end-session URL %s lacks client_id, post_logout_redirect_uri=BASE_URL/, state or the ID token", ok.ProviderLogout)
	}
	if r := do(t, c, "GET", "/api/auth/me"); r.status != 401 {
		t.Fatalf("after logout /api/auth/me = %d, want 401", r.status)
	}
	if n := a.store.Len(); n != 0 {
		t.Fatalf("%d records left after the sign-in and the sign-out, want 0 (the flow and the session are gone)", n)
	}
}

// TestLifetimeOnTheClock: the session ends when its lifetime does, on the
// session layer's clock, in the cache too; no waiting.
func TestLifetimeOnTheClock(t *testing.T) {
	a := newApp(t, true)
	cookie := a.session(t, auth.Identity{ID: "dev|ada", Email: "ada@example.com", Name: "Ada", Provider: "demo"})
	c := a.browser()
	u, _ := url.Parse(base)
	c.Jar.SetCookies(u, []*http.Cookie{cookie})
	for range 3 { // cached after the first
		if r := do(t, c, "GET", "/api/auth/me"); r.status != 200 {
			t.Fatalf("/api/auth/me = %d", r.status)
		}
	}
	a.clock.Advance(time.Hour)
	if r := do(t, c, "GET", "/api/auth/me"); r.status != 401 {
		t.Fatalf("an hour later (SESSION_TTL) /api/auth/me = %d, want 401", r.status)
	}
}

// TestNoDeadEnds: a cancelled sign-in, a used link and a sign-out each
// land on the home page (303) with a one-time notice that a reload does
// not show again; the sessions page works with plain forms.
func TestNoDeadEnds(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	notice := func(body string) string {
		_, after, ok := strings.Cut(body, `id="notice">`)
		if !ok {
			return ""
		}
		text, _, _ := strings.Cut(after, "<")
		return text
	}
	home := func() string {
		t.Helper()
		r := do(t, c, "GET", "/")
		if r.status != 200 {
			t.Fatalf("home = %d", r.status)
		}
		return notice(r.body)
	}

	// Cancel at the provider.
	start := do(t, c, "GET", "/api/auth/google")
	authURL, _ := url.Parse(start.header.Get("Location"))
	form := authURL.Query()
	form.Set("action", "deny")
	req, _ := http.NewRequest(http.MethodPost, base+"/demo-idp/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse(res.Header.Get("Location"))
	r := do(t, c, "GET", cb.RequestURI())
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("cancelled callback = %d %q, want 303 to /", r.status, r.header.Get("Location"))
	}
	if n := home(); !strings.Contains(n, "You cancelled the sign-in") {
		t.Fatalf("home after cancelling says %q", n)
	}
	if n := home(); n != "" {
		t.Fatalf("the notice came back on reload: %q", n)
	}
	// The same callback again (Back, reload): home again, never an error.
	if r := do(t, c, "GET", cb.RequestURI()); r.status != http.StatusSeeOther || !strings.Contains(home(), "expired, was already used") {
		t.Fatalf("callback replayed = %d", r.status)
	}
	// An API client still gets the status.
	if r := do(t, c, "GET", cb.RequestURI(), "Accept", "application/json"); r.status != http.StatusBadRequest {
		t.Fatalf("callback replayed as JSON = %d, want 400", r.status)
	}

	// Two sessions of one user; the page's forms sign the other out.
	other := a.browser()
	signIn(t, other, "/")
	signIn(t, c, "/")
	page := do(t, c, "GET", "/sessions")
	if page.status != 200 || strings.Count(page.body, `<li class="session`) != 2 || !strings.Contains(page.body, "Sign out this browser") ||
		!strings.Contains(page.body, "192.0.2.0/24") || strings.Contains(page.body, "<script src=\"/static/sessions.js") {
		t.Fatalf("/sessions = %d\n%s", page.status, page.body)
	}
	_, after, _ := strings.Cut(page.body, `action="/sessions/revoke"><input type="hidden" name="id" value="`)
	id, _, _ := strings.Cut(after, `"`)
	req, _ = http.NewRequest(http.MethodPost, base+"/sessions/revoke", strings.NewReader(url.Values{"id": {id}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err = c.Do(req)
	if err != nil || res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/sessions" {
		t.Fatalf("revoke form = %v %v", res, err)
	}
	page = do(t, c, "GET", "/sessions")
	if n := notice(page.body); !strings.HasPrefix(n, "Signed out ") || !strings.Contains(page.body, `id="no-others"`) {
		t.Fatalf("after the revoke the page says %q\n%s", n, page.body)
	}
	if r := do(t, other, "GET", "/api/auth/me"); r.status != 401 {
		t.Fatalf("the revoked session answers %d", r.status)
	}

	// Sign out: the one-time notice.
	req, _ = http.NewRequest(http.MethodPost, base+"/api/auth/logout", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if res, err := c.Do(req); err != nil || res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out form = %v %v", res, err)
	}
	if n := home(); n != "You have signed out." {
		t.Fatalf("home after signing out says %q", n)
	}
}
