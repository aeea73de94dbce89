package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/fakeclock"
	"example.com/oauth-sessions/internal/testbackends"
	"example.com/oauth-sessions/internal/testservers"
)

// Calling the provider's API as the user (internal/apitokens): tokens kept
// from the sign-in, refreshed once across tabs and instances, revoked at
// sign-out, never shown. The provider is the development provider on its
// own server, issuing refresh tokens with rotation and reuse detection.

// offlineEnv is baseEnv asking Google (here the test provider) for offline
// access, as GOOGLE_OFFLINE_ACCESS does.
func offlineEnv(t *testing.T, p *idp, dir string) map[string]string {
	env := baseEnv(t, p, dir)
	env["GOOGLE_OFFLINE_ACCESS"] = "true"
	return env
}

// apiAnswer is a status and JSON body of /api/app/profile.
type apiAnswer struct {
	status int
	header http.Header
	body   string
}

// getWithCookie GETs u carrying only the session cookie sid.
func getWithCookie(t *testing.T, u, sid string) apiAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", u, err)
		return apiAnswer{}
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return apiAnswer{status: res.StatusCode, header: res.Header, body: string(body)}
}

// TestAPIAccessRefreshesOnceOnEveryStore: on every store, with two app
// instances where the store is shared, 20 concurrent calls of
// /api/app/profile with an expired access token all answer 200, the
// provider sees exactly one refresh, and the grant stays whole (the next
// refresh works too: no rotated refresh token was presented again).
func TestAPIAccessRefreshesOnceOnEveryStore(t *testing.T) {
	p := startIDP(t)
	for _, srv := range testbackends.All() {
		t.Run(srv.Name, func(t *testing.T) {
			clock := fakeclock.New(time.Now())
			env := withStore(t, offlineEnv(t, p, t.TempDir()), srv)
			// No touches in the bursts: they test the refresh lock. (The
			// test server standing in for one store applies a touch as a
			// read and a rewrite of the whole record, which can undo a
			// write racing it: docs/stores.md.)
			env["SESSION_TOUCH_AFTER"] = "50m"
			instances := []*app{startAppClock(t, env, listen(t), clock.Now)}
			if definition(t, srv).Shared {
				env2 := offlineEnv(t, p, t.TempDir())
				for k, v := range env {
					if k != "DATA_DIR" {
						env2[k] = v
					}
				}
				instances = append(instances, startAppClock(t, env2, listen(t), clock.Now))
			}
			b := newBrowser(t)
			b.login(instances[0], "Ada", "ada@example.com")
			sid := b.cookie(instances[0].URL, "sid").Value

			var me struct {
				API struct {
					Scopes      []string  `json:"scopes"`
					ExpiresAt   time.Time `json:"expiresAt"`
					Refreshable bool      `json:"refreshable"`
				} `json:"api"`
			}
			if err := json.Unmarshal([]byte(b.me(instances[0]).Body), &me); err != nil || !me.API.Refreshable ||
				!me.API.ExpiresAt.After(clock.Now()) {
				t.Fatalf("/api/auth/me api = %+v (%v), want a refreshable token that has not expired", me.API, err)
			}
			if r := getWithCookie(t, instances[0].URL+"/api/app/profile", sid); r.status != http.StatusOK ||
				!strings.Contains(r.body, `"email":"ada@example.com"`) || !strings.Contains(r.body, `"provider":"google"`) {
				t.Fatalf("/api/app/profile = %d %s, want the provider's UserInfo for Ada", r.status, r.body)
			}
			base := p.Stats()
			if base.RefreshTokensIssued == 0 {
				t.Fatal("the provider issued no refresh token for a sign-in with offline access")
			}

			for round := int64(1); round <= 2; round++ {
				clock.Advance(5 * time.Minute) // the access token's lifetime
				const calls = 20
				answers := make([]apiAnswer, calls)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range calls {
					wg.Go(func() {
						<-start
						answers[i] = getWithCookie(t, instances[i%len(instances)].URL+"/api/app/profile", sid)
					})
				}
				close(start)
				wg.Wait()
				for i, r := range answers {
					if r.status != http.StatusOK {
						t.Fatalf("round %d: call %d (instance %d) = %d %s (provider: %+v)\n%s", round, i, i%len(instances), r.status, r.body, p.Stats(), instances[i%len(instances)].logs)
					}
				}
				st := p.Stats()
				if got := st.Refreshes - base.Refreshes; got != round || st.ReuseDetected != base.ReuseDetected {
					t.Fatalf("round %d: the provider saw %d refreshes in all and %d reuses, want %d and none", round, got, st.ReuseDetected-base.ReuseDetected, round)
				}
			}
			for i, a := range instances {
				m := getWithCookie(t, a.URL+"/metrics", "").body
				if i == 0 && !strings.Contains(m, `oauth_token_refreshes_total{provider="google",result="ok"}`) {
					t.Errorf("instance %d's metrics have no refresh count:\n%s", i, m)
				}
			}
		})
	}
}

// reconnectAnswer is the JSON of a call refused for want of access.
type reconnectAnswer struct {
	Error     string `json:"error"`
	Reconnect string `json:"reconnect"`
}

// TestAPIAccessRevokedAtProvider: access revoked at the provider (the
// user removed the app's access, changed their password) makes API calls
// answer 401 with where to reconnect, keeps the sign-in session, shows
// Reconnect on the page; reconnecting grants access again.
func TestAPIAccessRevokedAtProvider(t *testing.T) {
	p := startIDP(t)
	clock := fakeclock.New(time.Now())
	a := startAppClock(t, offlineEnv(t, p, t.TempDir()), listen(t), clock.Now)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")

	for _, expired := range []bool{false, true} {
		if n := p.RevokeUser("ada@example.com"); n != 1 {
			t.Fatalf("the provider revoked %d grants of Ada's, want her one", n)
		}
		if expired {
			// The refresh, not the API, finds out: invalid_grant.
			clock.Advance(6 * time.Minute)
		}
		r := b.get(a.URL + "/api/app/profile?returnTo=/app")
		var ans reconnectAnswer
		if err := json.Unmarshal([]byte(r.Body), &ans); err != nil || r.Status != http.StatusUnauthorized ||
			ans.Reconnect != "/api/auth/google?returnTo=%2Fapp" || ans.Error == "" {
			t.Fatalf("expired=%v: /api/app/profile after revocation = %d %s, want 401 with a reconnect link", expired, r.Status, r.Body)
		}
		me := b.me(a)
		if me.Status != http.StatusOK || strings.Contains(me.Body, `"api"`) {
			t.Fatalf("expired=%v: /api/auth/me after revocation = %d %s, want still signed in, with no API access kept", expired, me.Status, me.Body)
		}
		page := b.get(a.URL + "/app")
		if page.Status != http.StatusOK || !strings.Contains(page.Body, `id="reconnect"`) || !strings.Contains(page.Body, `href="/api/auth/google?returnTo=%2Fapp"`) {
			t.Fatalf("expired=%v: /app after revocation = %d, want a Reconnect link\n%s", expired, page.Status, page.Body)
		}

		// Reconnect: the whole sign-in again, back to /app, and the API works.
		start := b.get(a.URL + ans.Reconnect)
		if start.Status != http.StatusFound {
			t.Fatalf("reconnect = %d, want off to the provider", start.Status)
		}
		cb := b.approve(start.Location, "Ada", "ada@example.com")
		if back := b.get(cb); back.Status != http.StatusFound || back.Location != "/app" {
			t.Fatalf("reconnect callback = %d %q, want back to /app", back.Status, back.Location)
		}
		if r := b.get(a.URL + "/api/app/profile"); r.Status != http.StatusOK {
			t.Fatalf("expired=%v: after reconnecting, /api/app/profile = %d %s", expired, r.Status, r.Body)
		}
	}
}

// TestAPIAccessProviderDown: while the provider cannot refresh (5xx), API
// calls answer 503 with Retry-After and the tokens are kept: once it is
// back, the same refresh token works.
func TestAPIAccessProviderDown(t *testing.T) {
	p := startIDP(t)
	clock := fakeclock.New(time.Now())
	a := startAppClock(t, offlineEnv(t, p, t.TempDir()), listen(t), clock.Now)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	clock.Advance(5 * time.Minute)

	p.SetRefreshFailure(http.StatusServiceUnavailable)
	for range 2 {
		r := b.get(a.URL + "/api/app/profile")
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, "cannot be reached") {
			t.Fatalf("/api/app/profile with the provider down = %d %q %s, want 503 with Retry-After", r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	}
	if me := b.me(a); !strings.Contains(me.Body, `"refreshable":true`) {
		t.Fatalf("the tokens were not kept through the outage: %s", me.Body)
	}
	if page := b.get(a.URL + "/app"); page.Status != http.StatusOK || !strings.Contains(page.Body, `id="api-problem"`) {
		t.Fatalf("/app with the provider down = %d, want the page with the problem said\n%s", page.Status, page.Body)
	}
	p.SetRefreshFailure(0)
	if r := b.get(a.URL + "/api/app/profile"); r.Status != http.StatusOK {
		t.Fatalf("/api/app/profile once the provider is back = %d %s", r.Status, r.Body)
	}
	if st := p.Stats(); st.Refreshes != 1 || st.ReuseDetected != 0 {
		t.Fatalf("provider stats %+v, want one refresh and no reuse", st)
	}
}

// TestSignOutRevokesTokens: signing out, signing out the other sessions
// and revoking one session each revoke that session's refresh token at
// the provider (RFC 7009), after the session is gone.
func TestSignOutRevokesTokens(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, offlineEnv(t, p, t.TempDir()))
	revocations := func(want int64) {
		t.Helper()
		testservers.WaitUntil(t, 10*time.Second, func() bool { return p.Stats().Revocations == want },
			"the provider to see %d revocations (it saw %d)\n%s", want, p.Stats().Revocations, a.logs)
	}

	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	res := b.postForm(a.URL+"/api/auth/logout", url.Values{})
	if res.Status != http.StatusSeeOther {
		t.Fatalf("sign-out = %d", res.Status)
	}
	revocations(1)
	if live := p.RevokeUser("ada@example.com"); live != 0 {
		t.Fatalf("after sign-out the provider still has %d live grants of Ada's, want none", live)
	}

	// Three sessions; this one signs the other two out, one at a time.
	others := []*browser{newBrowser(t), newBrowser(t)}
	for _, o := range others {
		o.login(a, "Bob", "bob@example.com")
	}
	me := newBrowser(t)
	me.login(a, "Bob", "bob@example.com")
	var list struct {
		Sessions []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(me.get(a.URL+"/api/auth/sessions").Body), &list); err != nil || len(list.Sessions) != 3 {
		t.Fatalf("Bob's sessions: %+v %v", list, err)
	}
	for _, s := range list.Sessions {
		if !s.Current {
			req, _ := http.NewRequest(http.MethodDelete, a.URL+"/api/auth/sessions/"+s.ID, nil)
			req.Header.Set("Origin", a.URL)
			if r := me.do(req); r.Status != http.StatusOK {
				t.Fatalf("revoke session %s = %d %s", s.ID, r.Status, r.Body)
			}
			break
		}
	}
	revocations(2)
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/api/auth/sessions/revoke-others", nil)
	req.Header.Set("Origin", a.URL)
	if r := me.do(req); r.Status != http.StatusOK || !strings.Contains(r.Body, `"revoked":1`) {
		t.Fatalf("revoke-others = %d %s", r.Status, r.Body)
	}
	revocations(3)
	if live := p.RevokeUser("bob@example.com"); live != 1 {
		t.Fatalf("Bob has %d live grants at the provider, want only his current session's", live)
	}
}

// TestTokensNeverShown: after a whole run (sign-in with offline access,
// API calls, a refresh, the CLI, sign-out), no token the provider issued
// appears in the logs, the metrics, any page or JSON answer, or the
// `web sessions` command's output.
func TestTokensNeverShown(t *testing.T) {
	p := startIDP(t)
	clock := fakeclock.New(time.Now())
	env := offlineEnv(t, p, t.TempDir())
	a := startAppClock(t, env, listen(t), clock.Now)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	var seen strings.Builder
	for _, path := range []string{"/", "/app", "/sessions", "/api/auth/me", "/api/app/profile", "/api/auth/sessions"} {
		r := b.get(a.URL + path)
		seen.WriteString(r.Body)
		for k, v := range r.Header {
			seen.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	clock.Advance(5 * time.Minute)
	if r := b.get(a.URL + "/api/app/profile"); r.Status != http.StatusOK {
		t.Fatalf("profile after expiry = %d %s", r.Status, r.Body)
	} else {
		seen.WriteString(r.Body)
	}
	seen.WriteString(b.get(a.URL + "/app").Body)
	seen.WriteString(getWithCookie(t, a.URL+"/metrics", "").body)
	for _, args := range [][]string{{"list"}, {"list", "--user", "ada@example.com"}, {"stats"}} {
		out, err := runSessions(t, env, args...)
		if err != nil {
			t.Fatalf("web sessions %v: %v\n%s", args, err, out)
		}
		seen.WriteString(out)
	}
	b.postForm(a.URL+"/api/auth/logout", url.Values{})
	testservers.WaitUntil(t, 10*time.Second, func() bool { return p.Stats().Revocations == 1 }, "the sign-out's revocation")
	clock.Advance(time.Second)
	seen.WriteString(a.logs.String())

	issued := p.tokens.Issued()
	if len(issued) < 4 { // sign-in: access, refresh, ID token; refresh: access, refresh
		t.Fatalf("the provider issued %d tokens, want at least 4", len(issued))
	}
	all := seen.String()
	for _, tok := range issued {
		for _, part := range []string{tok, tok[:24], tok[len(tok)-24:]} {
			if strings.Contains(all, part) {
				t.Fatalf("a token the provider issued (…%s) appears in what the app showed or logged", tok[len(tok)-8:])
			}
		}
	}
}

// upstream is a remote API that records what it receives.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func startUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

// rawRequestLine sends a GET request line exactly as given (no client cleans or
// re-encodes its path) and returns the status.
func rawRequestLine(t *testing.T, a *app, path, sid string) int {
	t.Helper()
	conn, err := net.Dial("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nCookie: sid=%s\r\nConnection: close\r\n\r\n", path, a.addr, sid)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestAPIProxy: API_PROXY forwards /api/remote/{name}/… to its origin and
// path prefix only, with the user's access token and without the
// browser's cookies or credentials; anonymous callers, cross-origin
// writes and every way out of the prefix are refused before the remote
// sees anything.
func TestAPIProxy(t *testing.T) {
	p := startIDP(t)
	evil := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	api := startUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/base/away":
			http.Redirect(w, r, evil.URL+"/steal", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Set-Cookie", "remote=1")
			fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
		}
	})
	env := offlineEnv(t, p, t.TempDir())
	env["API_PROXY"] = "things=" + api.URL + "/base"
	a := startApp(t, env)
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	sid := b.cookie(a.URL, "sid").Value

	req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/remote/things/items/7?full=1", nil)
	req.Header.Set("Authorization", "Basic YWRhOnNlY3JldA==")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	r := b.do(req)
	if r.Status != http.StatusOK || r.Body != `{"path":"/base/items/7"}` || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("GET through the proxy = %d %q Set-Cookie=%q", r.Status, r.Body, r.Header.Get("Set-Cookie"))
	}
	got := api.requests()
	if len(got) != 1 {
		t.Fatalf("the remote saw %d requests, want 1", len(got))
	}
	in := got[0]
	bearer, _ := strings.CutPrefix(in.Header.Get("Authorization"), "Bearer ")
	if in.URL.RawQuery != "full=1" || !slices.Contains(p.tokens.Issued(), bearer) || in.Header.Get("Cookie") != "" || in.Header.Get("X-Forwarded-For") != "" {
		t.Fatalf("the remote got query %q, Authorization %q (an issued access token: %v), Cookie %q, X-Forwarded-For %q",
			in.URL.RawQuery, in.Header.Get("Authorization"), slices.Contains(p.tokens.Issued(), bearer), in.Header.Get("Cookie"), in.Header.Get("X-Forwarded-For"))
	}

	// Refused before the remote sees anything.
	if r := newBrowser(t).get(a.URL + "/api/remote/things/items"); r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, "not signed in") {
		t.Fatalf("anonymous call = %d %s, want 401", r.Status, r.Body)
	}
	post, _ := http.NewRequest(http.MethodPost, a.URL+"/api/remote/things/items", strings.NewReader(`{}`))
	post.Header.Set("Origin", "https://evil.example")
	post.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(post); r.Status != http.StatusForbidden {
		t.Fatalf("cross-origin POST = %d %s, want 403", r.Status, r.Body)
	}
	escapes := []string{
		"/api/remote/things/../x", "/api/remote/things/a/../../x", "/api/remote/things/%2e%2e/x", "/api/remote/things/%252e%252e/x",
		"/api/remote/things/a%2fb", "/api/remote/things/a%5cb", "/api/remote/things/a\\b", "/api/remote/things//" + strings.TrimPrefix(evil.URL, "http://") + "/x",
		"/api/remote/things/" + evil.URL + "/x", "/api/remote/things/./x", "/api/remote/things/%00",
	}
	for _, path := range escapes {
		if status := rawRequestLine(t, a, path, sid); status != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", path, status)
		}
	}
	if status := rawRequestLine(t, a, "/api/remote/other/x", sid); status != http.StatusNotFound {
		t.Errorf("an unconfigured name = %d, want 404", status)
	}
	if r := b.get(a.URL + "/api/remote/things/away"); r.Status != http.StatusBadGateway {
		t.Fatalf("a redirect to another host = %d %s, want 502", r.Status, r.Body)
	}
	if n := len(api.requests()); n != 2 { // the first call, and the redirecting one
		t.Fatalf("the remote saw %d requests, want 2: refused calls reached it", n)
	}
	if n := len(evil.requests()); n != 0 {
		t.Fatalf("another host saw %d requests through the proxy", n)
	}
}

// TestAPIAccessSurvivesBackupAndMigration: the tokens kept in a session
// move with it: served from a backup of the SQLite store, and (where the
// template has another persistent store) after `web sessions migrate`
// copies it there, the API is called with the same grant, no new sign-in,
// and a refresh still works.
func TestAPIAccessSurvivesBackupAndMigration(t *testing.T) {
	stores := persistentStores(t)
	p := startIDP(t)
	signedIn := time.Now()
	env := offlineEnv(t, p, t.TempDir())
	for k, v := range storesEnv(t) {
		if k != "DATA_DIR" {
			env[k] = v
		}
	}
	env["SESSION_STORE"] = stores[0].Name // the default, sqlite
	a := startAppClock(t, env, listen(t), fakeclock.New(signedIn).Now)
	ada, bob := newBrowser(t), newBrowser(t)
	ada.login(a, "Ada", "ada@example.com")
	bob.login(a, "Bob", "bob@example.com")
	a.stop(t)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, err := runSessions(t, env, "backup", "--to", backup); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// Served from the new store, the user's API call works at once, and
	// again after a refresh (the grant was carried, not lost). Each phase
	// starts at the sign-in's time on a clock of its own.
	calls := func(what string, b *browser, env map[string]string) {
		t.Helper()
		clock := fakeclock.New(signedIn)
		moved := startAppClock(t, env, a.ln, clock.Now)
		before := p.Stats().Refreshes
		if r := b.get(moved.URL + "/api/app/profile"); r.Status != http.StatusOK || p.Stats().Refreshes != before {
			t.Fatalf("%s: /api/app/profile = %d %s with %d refreshes; want 200 with the carried token", what, r.Status, r.Body, p.Stats().Refreshes-before)
		}
		clock.Advance(5 * time.Minute)
		if r := b.get(moved.URL + "/api/app/profile"); r.Status != http.StatusOK || p.Stats().Refreshes != before+1 {
			t.Fatalf("%s: a refresh = %d %s (%d refreshes)", what, r.Status, r.Body, p.Stats().Refreshes-before)
		}
		moved.stop(t)
	}
	restored := copyEnv(env)
	restored["SESSION_SQLITE_PATH"] = backup
	calls("restored from a backup", ada, restored)

	if len(stores) > 1 { // a template cut down to SQLite has nowhere to migrate to
		from, to := stores[0].Name, stores[len(stores)-1].Name
		if out, err := runSessions(t, env, "migrate", "--from", from, "--to", to); err != nil {
			t.Fatalf("migrate %s → %s: %v\n%s", from, to, err, out)
		}
		migrated := copyEnv(env)
		migrated["SESSION_STORE"] = to
		calls("migrated from "+from+" to "+to, bob, migrated)
	}
}
