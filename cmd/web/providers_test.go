package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/auth/githubtest"
	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
)

// Sign-in through several providers at once: Google (a development
// provider standing in at GOOGLE_ISSUER_URL), GitHub (its stand-in) and a
// generic OpenID Connect provider (another development provider, labelled
// "Keycloak"), each a real HTTP server.

const (
	ghClientID     = "gh-client"
	ghClientSecret = "gh-client-secret"
)

// octocat is GitHub's test account, with a verified primary address.
var octocat = githubtest.User{ID: 583231, Login: "octocat", Name: "The Octocat", AvatarURL: "https://avatars.example/u/583231",
	Emails: []githubtest.Email{{Email: "octocat@github.example", Primary: true, Verified: true}}}

// providers is the three providers of a test.
type providers struct {
	google, oidc *idp
	github       *githubtest.Server
}

func startProviders(t *testing.T) providers {
	t.Helper()
	return providers{google: startIDP(t), oidc: startIDP(t), github: githubtest.Start(t, ghClientID, ghClientSecret, octocat)}
}

// env configures all three, over baseEnv (which configures Google).
func (ps providers) env(t *testing.T, dir string) map[string]string {
	env := baseEnv(t, ps.google, dir)
	for k, v := range map[string]string{
		"GITHUB_CLIENT_ID": ghClientID, "GITHUB_CLIENT_SECRET": ghClientSecret, "GITHUB_URL": ps.github.URL, "GITHUB_API_URL": ps.github.APIURL,
		"OIDC_ISSUER_URL": ps.oidc.URL, "OIDC_CLIENT_ID": idpClientID, "OIDC_CLIENT_SECRET": idpClientSecret, "OIDC_NAME": "Keycloak",
	} {
		env[k] = v
	}
	return env
}

// start begins a sign-in with provider and returns the authorize URL.
func (b *browser) start(a *app, provider string) string {
	b.t.Helper()
	res := b.get(a.URL + "/api/auth/" + provider)
	if res.Status != http.StatusFound || res.Location == "" {
		b.t.Fatalf("GET /api/auth/%s = %d %q\n%s\napp log:\n%s", provider, res.Status, res.Location, res.Body, a.logs)
	}
	return res.Location
}

// authorize submits a provider's form (the authorize URL's parameters
// plus fields) and returns the callback URL the provider redirects to.
func (b *browser) authorize(authorizeURL string, fields url.Values) string {
	b.t.Helper()
	if page := b.get(authorizeURL); page.Status != http.StatusOK || !strings.Contains(page.Body, "<form") {
		b.t.Fatalf("provider page = %d\n%s", page.Status, page.Body)
	}
	au, _ := url.Parse(authorizeURL)
	form := au.Query()
	for k, v := range fields {
		form[k] = v
	}
	res := b.postForm(au.Scheme+"://"+au.Host+au.Path, form)
	if res.Status != http.StatusFound {
		b.t.Fatalf("provider form post = %d\n%s", res.Status, res.Body)
	}
	return res.Location
}

// fields of the provider forms: the development provider's and GitHub's.
func person(name, email string) url.Values {
	return url.Values{"name": {name}, "email": {email}, "action": {"allow"}}
}

func githubLogin(login string) url.Values {
	return url.Values{"login": {login}, "action": {"allow"}}
}

// loginVia runs a whole sign-in with provider and checks it lands home.
func (b *browser) loginVia(a *app, provider string, fields url.Values) {
	b.t.Helper()
	res := b.get(b.authorize(b.start(a, provider), fields))
	if res.Status != http.StatusFound || res.Location != "/" {
		b.t.Fatalf("%s callback = %d %q, want 302 to /\n%s\napp log:\n%s", provider, res.Status, res.Location, res.Body, a.logs)
	}
}

// TestSeveralProvidersSideBySide: each configured provider has its button
// and its sign-in, with identities that do not collide; a sign-out goes on
// to the provider's end_session_endpoint where there is one.
func TestSeveralProvidersSideBySide(t *testing.T) {
	ps := startProviders(t)
	// Google's stand-in, like Google, has no end_session_endpoint.
	ps.google.SetDiscovery(func(doc map[string]any) { delete(doc, "end_session_endpoint") })
	a := startApp(t, ps.env(t, t.TempDir()))

	home := newBrowser(t).get(a.URL + "/?returnTo=/app")
	for _, want := range []string{
		`data-provider="google" href="/api/auth/google?returnTo=%2Fapp">Sign in with Google</a>`,
		`data-provider="github" href="/api/auth/github?returnTo=%2Fapp">Sign in with GitHub</a>`,
		`data-provider="oidc" href="/api/auth/oidc?returnTo=%2Fapp">Sign in with Keycloak</a>`,
	} {
		if !strings.Contains(home.Body, want) {
			t.Errorf("home page lacks the button %s", want)
		}
	}
	if strings.Contains(home.Body, "development provider") {
		t.Error("the demo login is offered beside real providers")
	}
	// With several providers, a page behind sign-in sends visitors to the
	// buttons, coming back after.
	if r := newBrowser(t).get(a.URL + "/app"); r.Status != http.StatusSeeOther || r.Location != "/?returnTo=%2Fapp" {
		t.Errorf("/app signed out = %d %q, want 303 to the home page's buttons", r.Status, r.Location)
	}

	users := map[string]*browser{"google": newBrowser(t), "github": newBrowser(t), "oidc": newBrowser(t)}
	users["google"].loginVia(a, "google", person("Grace Hopper", "grace@example.com"))
	users["github"].loginVia(a, "github", githubLogin("octocat"))
	users["oidc"].loginVia(a, "oidc", person("Ada Lovelace", "ada@example.com"))
	want := map[string]struct{ id, email, name string }{
		"google": {"google|" + devprovider.Subject("grace@example.com"), "grace@example.com", "Grace Hopper"},
		"github": {"github|583231", "octocat@github.example", "The Octocat"},
		"oidc":   {"oidc|" + devprovider.Subject("ada@example.com"), "ada@example.com", "Ada Lovelace"},
	}
	check := func(a *app) {
		t.Helper()
		for provider, b := range users {
			me := expectSignedIn(t, b, a, want[provider].email)
			if me.User.Provider != provider || me.User.ID != want[provider].id || me.User.Name != want[provider].name {
				t.Errorf("%s user = %+v, want %+v", provider, me.User, want[provider])
			}
		}
	}
	check(a)
	if page := users["oidc"].get(a.URL + "/"); !strings.Contains(page.Body, `<dd id="provider">Keycloak</dd>`) {
		t.Errorf("home page does not say the user signed in with Keycloak")
	}
	a = a.restart(t)
	check(a)

	// The CSP lets the sign-out form go on to the OIDC provider.
	if csp := home.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+ps.google.URL) || !strings.Contains(csp, ps.oidc.URL) {
		t.Errorf("CSP %q does not allow the providers' sign-out as a form target", csp)
	}
	// Sign-outs: Keycloak's has an end_session_endpoint, Google's and
	// GitHub's do not.
	out := users["oidc"].postForm(a.URL+"/api/auth/logout", nil)
	end, _ := url.Parse(out.Location)
	q := end.Query()
	if out.Status != http.StatusSeeOther || !strings.HasPrefix(out.Location, ps.oidc.URL+"/logout?") || q.Get("client_id") != idpClientID ||
		q.Get("post_logout_redirect_uri") != a.URL+"/" || q.Get("state") == "" || q.Get("id_token_hint") == "" {
		t.Fatalf("OIDC sign-out = %d %q, want 303 to its end_session_endpoint with the hint, client_id, BASE_URL/ and a state", out.Status, out.Location)
	}
	back := users["oidc"].get(out.Location)
	if back.Status != http.StatusFound || !strings.HasPrefix(back.Location, a.URL+"/?state=") {
		t.Fatalf("end_session_endpoint = %d %q, want back to BASE_URL/", back.Status, back.Location)
	}
	expectSignedOut(t, users["oidc"], a)
	for _, provider := range []string{"google", "github"} {
		if out := users[provider].postForm(a.URL+"/api/auth/logout", nil); out.Status != http.StatusSeeOther || out.Location != "/" {
			t.Errorf("%s sign-out = %d %q, want 303 to / (no end_session_endpoint)", provider, out.Status, out.Location)
		}
		expectSignedOut(t, users[provider], a)
	}
}

// TestCallbackMixUpIsRefused: a callback must come back on the route of
// the provider the flow was started with, and when it names its issuer
// (RFC 9207), name that provider's.
func TestCallbackMixUpIsRefused(t *testing.T) {
	ps := startProviders(t)
	a := startApp(t, ps.env(t, t.TempDir()))

	b := newBrowser(t)
	cb, _ := url.Parse(b.authorize(b.start(a, "oidc"), person("Ada", "ada@example.com")))
	b.refused(a, b.get(a.URL+"/api/auth/github/callback?"+cb.RawQuery), "another provider")
	b.refused(a, b.get(cb.String()), "already used") // the same state on its own route: used up

	for iss, status := range map[string]int{ps.google.URL: http.StatusSeeOther, ps.oidc.URL: http.StatusFound} {
		b := newBrowser(t)
		cb := b.authorize(b.start(a, "oidc"), person("Ada", "ada@example.com"))
		if r := b.get(cb + "&iss=" + url.QueryEscape(iss)); r.Status != status {
			t.Fatalf("OIDC callback with iss=%s = %d, want %d\n%s", iss, r.Status, status, r.Body)
		}
	}
}

// TestProviderRefusals: GitHub without a verified primary address,
// ALLOWED_EMAIL_DOMAINS for every provider, a provider keeping the profile
// for UserInfo, and one whose UserInfo is about someone else.
func TestProviderRefusals(t *testing.T) {
	ps := startProviders(t)
	ps.github.SetUser(githubtest.User{ID: 2, Login: "unverified", Emails: []githubtest.Email{{Email: "u@example.com", Primary: true}}})
	ps.oidc.SetTamper(devprovidertest.WithoutProfileInIDToken)
	dir := t.TempDir()
	a := startApp(t, ps.env(t, dir))

	b := newBrowser(t)
	b.refused(a, b.get(b.authorize(b.start(a, "github"), githubLogin("unverified"))), "no verified primary email address")

	// Email and name only from UserInfo: taken from there.
	b = newBrowser(t)
	b.loginVia(a, "oidc", person("Ada Lovelace", "ada@example.com"))
	if me := expectSignedIn(t, b, a, "ada@example.com"); me.User.Name != "Ada Lovelace" {
		t.Fatalf("UserInfo-only profile: %+v", me.User)
	}
	ps.oidc.SetUserInfo(func(p map[string]any) { p["sub"] = "someone-else" })
	b = newBrowser(t)
	b.refused(a, b.get(b.authorize(b.start(a, "oidc"), person("Ada", "ada@example.com"))), "could not be verified")

	// An unverified address does not pass ALLOWED_EMAIL_DOMAINS, from any
	// provider; without the setting, the user is signed in by subject.
	ps.oidc.SetUserInfo(func(p map[string]any) { p["email_verified"] = false })
	b = newBrowser(t)
	b.loginVia(a, "oidc", person("Ada", "ada@example.com"))
	if me := decodeMe(t, b.me(a)); me.User.Email != "" || me.User.ID != "oidc|"+devprovider.Subject("ada@example.com") {
		t.Fatalf("unverified email: %+v, want a sign-in by subject without the address", me.User)
	}
	env := a.env
	a.stop(t)
	env["ALLOWED_EMAIL_DOMAINS"] = "example.com"
	a = startApp(t, env)
	for provider, fields := range map[string]url.Values{"oidc": person("Ada", "ada@example.com"), "github": githubLogin("octocat")} {
		b := newBrowser(t)
		b.refused(a, b.get(b.authorize(b.start(a, provider), fields)), "only accepts accounts with a verified email address at: example.com")
	}
	ps.oidc.SetUserInfo(nil)
	newBrowser(t).loginVia(a, "oidc", person("Ada", "ada@example.com"))
}

// TestOneProviderDownLeavesTheOthers: each provider is discovered on its
// own, when first used; one that does not answer breaks only its button.
func TestOneProviderDownLeavesTheOthers(t *testing.T) {
	ps := startProviders(t)
	env := ps.env(t, t.TempDir())
	env["OIDC_ISSUER_URL"] = "http://127.0.0.1:1" // nothing listens there
	a := startApp(t, env)
	b := newBrowser(t)
	if r := b.get(a.URL + "/api/auth/oidc"); r.Status != http.StatusBadGateway || !strings.Contains(r.Body, "Keycloak could not be reached") {
		t.Fatalf("start with the OIDC provider down = %d\n%s", r.Status, r.Body)
	}
	if home := b.get(a.URL + "/"); home.Status != http.StatusOK || !strings.Contains(home.Body, "Sign in with Keycloak") {
		t.Fatalf("home page with one provider down = %d", home.Status)
	}
	b.loginVia(a, "google", person("Ada", "ada@example.com"))
	expectSignedIn(t, b, a, "ada@example.com")
	g := newBrowser(t)
	g.loginVia(a, "github", githubLogin("octocat"))
	expectSignedIn(t, g, a, "octocat@github.example")
}
