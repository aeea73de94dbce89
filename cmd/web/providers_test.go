package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	// BEGIN remove:github
	"example.com/oauth-sessions/internal/auth/githubtest"
	// END remove:github
	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
)

// Sign-in through several providers at once: Google (a development
// provider standing in at GOOGLE_ISSUER_URL) and one of each other kind
// this template has, each a real HTTP server.

// providers are the providers of a test.
type providers struct {
	google *idp
	// BEGIN remove:github
	github *githubtest.Server // GitHub's stand-in (github_test.go)
	// END remove:github
	// BEGIN remove:oidc
	oidc *idp // the generic OpenID Connect provider: another development provider, labelled "Keycloak"
	// END remove:oidc
	signIns []signIn // one of each, Google's first
}

// signIn is a provider as the app and its user see it, and someone who
// signs in there.
type signIn struct {
	provider string            // the route, and user.provider
	label    string            // the button's "Sign in with ..."
	issuer   string            // its URL, and the iss of its answers
	openID   bool              // an OpenID Connect provider: signing out may go on there
	vars     map[string]string // what configures the app for it, but for baseEnv's Google
	fields   url.Values        // its login form, filled in
	id       string            // who the app then says is signed in
	email    string
	name     string
}

func startProviders(t *testing.T) providers {
	t.Helper()
	ps := providers{google: startIDP(t)}
	ps.signIns = append(ps.signIns, signIn{provider: "google", label: "Google", issuer: ps.google.URL, openID: true,
		fields: person("Grace Hopper", "grace@example.com"), id: "google|" + devprovider.Subject("grace@example.com"), email: "grace@example.com", name: "Grace Hopper"})
	// BEGIN remove:github
	ps.addGitHub(t)
	// END remove:github
	// BEGIN remove:oidc
	ps.oidc = startIDP(t)
	ps.signIns = append(ps.signIns, signIn{provider: "oidc", label: "Keycloak", issuer: ps.oidc.URL, openID: true,
		vars:   map[string]string{"OIDC_ISSUER_URL": ps.oidc.URL, "OIDC_CLIENT_ID": idpClientID, "OIDC_CLIENT_SECRET": idpClientSecret, "OIDC_NAME": "Keycloak"},
		fields: person("Ada Lovelace", "ada@example.com"), id: "oidc|" + devprovider.Subject("ada@example.com"), email: "ada@example.com", name: "Ada Lovelace"})
	// END remove:oidc
	return ps
}

// env configures them all, over baseEnv (which configures Google).
func (ps providers) env(t *testing.T, dir string) map[string]string {
	env := baseEnv(t, ps.google, dir)
	for _, s := range ps.signIns {
		for k, v := range s.vars {
			env[k] = v
		}
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

// person fills in the development provider's form.
func person(name, email string) url.Values {
	return url.Values{"name": {name}, "email": {email}, "action": {"allow"}}
}

// loginVia runs a whole sign-in with provider and checks it lands home.
func (b *browser) loginVia(a *app, provider string, fields url.Values) {
	b.t.Helper()
	res := b.get(b.authorize(b.start(a, provider), fields))
	if res.Status != http.StatusFound || res.Location != "/" {
		b.t.Fatalf("%s callback = %d %q, want 302 to /\n%s\napp log:\n%s", provider, res.Status, res.Location, res.Body, a.logs)
	}
}

// signOutThere signs b out with the form and checks the browser goes on
// to the end_session_endpoint of the provider at issuer, with the ID
// token as hint, the client_id, BASE_URL/ and a state, and comes back.
func (b *browser) signOutThere(a *app, issuer string) {
	b.t.Helper()
	out := b.postForm(a.URL+"/api/auth/logout", nil)
	end, _ := url.Parse(out.Location)
	q := end.Query()
	if out.Status != http.StatusSeeOther || !strings.HasPrefix(out.Location, issuer+"/logout?") || q.Get("client_id") != idpClientID ||
		q.Get("post_logout_redirect_uri") != a.URL+"/" || q.Get("state") == "" || q.Get("id_token_hint") == "" {
		b.t.Fatalf("sign-out = %d %q, want 303 to %s's end_session_endpoint with the hint, client_id, BASE_URL/ and a state", out.Status, out.Location, issuer)
	}
	back := b.get(out.Location)
	if back.Status != http.StatusFound || !strings.HasPrefix(back.Location, a.URL+"/?state=") {
		b.t.Fatalf("end_session_endpoint = %d %q, want back to BASE_URL/", back.Status, back.Location)
	}
	expectSignedOut(b.t, b, a)
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
	for _, s := range ps.signIns {
		want := `data-provider="` + s.provider + `" href="/api/auth/` + s.provider + `?returnTo=%2Fapp">Sign in with ` + s.label + `</a>`
		if !strings.Contains(home.Body, want) {
			t.Errorf("home page lacks the button %s", want)
		}
	}
	if strings.Contains(home.Body, "development provider") {
		t.Error("the demo login is offered beside real providers")
	}
	// With several providers, a page behind sign-in sends visitors to the
	// buttons, coming back after (in a copy left with Google alone,
	// straight to its sign-in).
	buttons := "/?returnTo=%2Fapp"
	if len(ps.signIns) == 1 {
		buttons = "/api/auth/google?returnTo=%2Fapp"
	}
	if r := newBrowser(t).get(a.URL + "/app"); r.Status != http.StatusSeeOther || r.Location != buttons {
		t.Errorf("/app signed out = %d %q, want 303 to %s", r.Status, r.Location, buttons)
	}

	users := map[string]*browser{}
	for _, s := range ps.signIns {
		users[s.provider] = newBrowser(t)
		users[s.provider].loginVia(a, s.provider, s.fields)
	}
	check := func(a *app) {
		t.Helper()
		for _, s := range ps.signIns {
			me := expectSignedIn(t, users[s.provider], a, s.email)
			if me.User.Provider != s.provider || me.User.ID != s.id || me.User.Name != s.name {
				t.Errorf("%s user = %+v, want %+v", s.provider, me.User, s)
			}
		}
	}
	check(a)
	for _, s := range ps.signIns {
		if page := users[s.provider].get(a.URL + "/"); !strings.Contains(page.Body, `<dd id="provider">`+s.label+`</dd>`) {
			t.Errorf("home page does not say the user signed in with %s", s.label)
		}
	}
	a = a.restart(t)
	check(a)

	// The CSP lets the sign-out form go on to the OpenID Connect providers.
	csp := home.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "form-action 'self' "+ps.google.URL) {
		t.Errorf("CSP %q does not allow Google's sign-out as a form target", csp)
	}
	for _, s := range ps.signIns {
		if s.openID && !strings.Contains(csp, s.issuer) {
			t.Errorf("CSP %q does not allow %s's sign-out as a form target", csp, s.label)
		}
	}
	// Sign-outs: Keycloak's has an end_session_endpoint; the others do not,
	// and signing out stays here.
	// BEGIN remove:oidc
	users["oidc"].signOutThere(a, ps.oidc.URL)
	delete(users, "oidc")
	// END remove:oidc
	for provider, b := range users {
		if out := b.postForm(a.URL+"/api/auth/logout", nil); out.Status != http.StatusSeeOther || out.Location != "/" {
			t.Errorf("%s sign-out = %d %q, want 303 to / (no end_session_endpoint)", provider, out.Status, out.Location)
		}
		expectSignedOut(t, b, a)
	}
}

// TestSignOutAtTheProvider: with an end_session_endpoint at the provider
// (Google's stand-in has one here), signing out goes on there with the ID
// token kept, sealed, in the session, across a restart.
func TestSignOutAtTheProvider(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	a = a.restart(t)
	expectSignedIn(t, b, a, "ada@example.com")
	b.signOutThere(a, p.URL)
}

// TestCallbackMixUpIsRefused: a callback must come back on the route of
// the provider the flow was started with, and when it names its issuer
// (RFC 9207), name that provider's.
func TestCallbackMixUpIsRefused(t *testing.T) {
	ps := startProviders(t)
	a := startApp(t, ps.env(t, t.TempDir()))

	for _, from := range ps.signIns {
		for _, to := range ps.signIns {
			if to.provider == from.provider {
				continue
			}
			b := newBrowser(t)
			cb, _ := url.Parse(b.authorize(b.start(a, from.provider), from.fields))
			b.refused(a, b.get(a.URL+"/api/auth/"+to.provider+"/callback?"+cb.RawQuery), "came back for another provider")
			b.refused(a, b.get(cb.String()), "already used") // the same state on its own route: used up

			b = newBrowser(t)
			back := b.authorize(b.start(a, from.provider), from.fields)
			b.refused(a, b.get(back+"&iss="+url.QueryEscape(to.issuer)), "came from another provider")
		}
		b := newBrowser(t)
		back := b.authorize(b.start(a, from.provider), from.fields)
		if r := b.get(back + "&iss=" + url.QueryEscape(from.issuer)); r.Status != http.StatusFound || r.Location != "/" {
			t.Fatalf("%s callback with its own iss = %d %q, want 302 home\n%s", from.provider, r.Status, r.Location, r.Body)
		}
	}
}

// TestProviderRefusals: a provider keeping the profile for UserInfo, one
// whose UserInfo is about someone else, one that does not vouch for the
// address, and ALLOWED_EMAIL_DOMAINS for every provider.
func TestProviderRefusals(t *testing.T) {
	ps := startProviders(t)
	ps.google.SetTamper(devprovidertest.WithoutProfileInIDToken)
	dir := t.TempDir()
	a := startApp(t, ps.env(t, dir))

	// Email and name only from UserInfo: taken from there.
	b := newBrowser(t)
	b.loginVia(a, "google", person("Ada Lovelace", "ada@example.org"))
	if me := expectSignedIn(t, b, a, "ada@example.org"); me.User.Name != "Ada Lovelace" {
		t.Fatalf("UserInfo-only profile: %+v", me.User)
	}
	ps.google.SetUserInfo(func(p map[string]any) { p["sub"] = "someone-else" })
	b = newBrowser(t)
	b.refused(a, b.get(b.authorize(b.start(a, "google"), person("Ada", "ada@example.org"))), "could not be verified")

	// An unverified address does not pass ALLOWED_EMAIL_DOMAINS; without
	// the setting, the user is signed in by subject.
	ps.google.SetUserInfo(func(p map[string]any) { p["email_verified"] = false })
	b = newBrowser(t)
	b.loginVia(a, "google", person("Ada", "ada@example.org"))
	if me := decodeMe(t, b.me(a)); me.User.Email != "" || me.User.ID != "google|"+devprovider.Subject("ada@example.org") {
		t.Fatalf("unverified email: %+v, want a sign-in by subject without the address", me.User)
	}
	env := a.env
	a.stop(t)
	env["ALLOWED_EMAIL_DOMAINS"] = "example.org"
	a = startApp(t, env)
	const outside = "only accepts accounts with a verified email address at: example.org"
	b = newBrowser(t)
	b.refused(a, b.get(b.authorize(b.start(a, "google"), person("Ada", "ada@example.org"))), outside)
	ps.google.SetUserInfo(nil)
	newBrowser(t).loginVia(a, "google", person("Ada", "ada@example.org"))
	// Every provider's user has an address elsewhere.
	for _, s := range ps.signIns {
		b := newBrowser(t)
		b.refused(a, b.get(b.authorize(b.start(a, s.provider), s.fields)), outside)
	}
}

// TestOneProviderDownLeavesTheOthers: each provider is discovered on its
// own, when first used; one that does not answer breaks only its button.
func TestOneProviderDownLeavesTheOthers(t *testing.T) {
	ps := startProviders(t)
	env := ps.env(t, t.TempDir())
	env["GOOGLE_ISSUER_URL"] = "http://127.0.0.1:1" // nothing listens there
	a := startApp(t, env)
	b := newBrowser(t)
	if r := b.get(a.URL + "/api/auth/google"); r.Status != http.StatusBadGateway || !strings.Contains(r.Body, "Google could not be reached") {
		t.Fatalf("start with Google down = %d\n%s", r.Status, r.Body)
	}
	if home := b.get(a.URL + "/"); home.Status != http.StatusOK || !strings.Contains(home.Body, "Sign in with Google") {
		t.Fatalf("home page with one provider down = %d", home.Status)
	}
	for _, s := range ps.signIns[1:] {
		b := newBrowser(t)
		b.loginVia(a, s.provider, s.fields)
		expectSignedIn(t, b, a, s.email)
	}
}
