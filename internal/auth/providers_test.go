package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
)

const callback = "http://app.test/api/auth/x/callback"

// noRedirects is a client that shows each redirect instead of following it.
var noRedirects = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// callbackOf posts a provider's authorize form (the fields the authorize
// URL carries, plus extra) and returns the callback URL it redirects to.
func callbackOf(t *testing.T, authURL string, extra url.Values) *url.URL {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	form := u.Query()
	for k, v := range extra {
		form[k] = v
	}
	res, err := noRedirects.PostForm(u.Scheme+"://"+u.Host+u.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("authorize form = %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return back
}

// login runs p's flow up to the callback and finishes it with the code.
func login(t *testing.T, p auth.Provider, form url.Values) (auth.Result, error) {
	t.Helper()
	ctx := context.Background()
	f, authURL, err := p.Start(ctx, "/after")
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	back := callbackOf(t, authURL, form)
	if back.Query().Get("state") != f.State || !auth.CheckState(f, back.Query().Get("state")) {
		t.Fatalf("callback state %q, want the flow's", back.Query().Get("state"))
	}
	if f.ReturnTo != "/after" || f.Provider != p.Name() {
		t.Fatalf("flow %+v does not remember its provider and return path", f)
	}
	return p.Finish(ctx, f, back.Query().Get("code"))
}

// startOIDC runs the development provider as a real HTTP server.
func startOIDC(t *testing.T) (*devprovidertest.Provider, *auth.OIDC) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	dp, err := devprovidertest.New(devprovider.Config{Issuer: issuer, ClientID: "rp", ClientSecret: "rp-secret"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = dp
	srv.Start()
	t.Cleanup(srv.Close)
	return dp, auth.NewOIDC(auth.OIDCConfig{Name: "keycloak", Label: "Keycloak", Issuer: issuer, ClientID: "rp", ClientSecret: "rp-secret", RedirectURL: callback})
}

var ada = url.Values{"name": {"Ada Lovelace"}, "email": {"ada@example.com"}, "action": {"allow"}}

func TestOIDCSignIn(t *testing.T) {
	dp, p := startOIDC(t)
	res, err := login(t, p, ada)
	sub := devprovider.Subject("ada@example.com")
	want := auth.Identity{ID: "keycloak|" + sub, Email: "ada@example.com", Name: "Ada Lovelace", Provider: "keycloak"}
	if err != nil || res.Identity != want || res.Subject != sub || res.SessionID == "" || res.IDToken == "" {
		t.Fatalf("sign-in: %+v %v, want %+v with the sid and the ID token (the provider has an end_session_endpoint)", res, err, want)
	}
	end, err := p.EndSessionURL(context.Background(), res.IDToken, "http://app.test/", "st")
	u, _ := url.Parse(end)
	if err != nil || !strings.HasPrefix(end, dp.Issuer()+"/logout?") || u.Query().Get("id_token_hint") != res.IDToken ||
		u.Query().Get("client_id") != "rp" || u.Query().Get("post_logout_redirect_uri") != "http://app.test/" || u.Query().Get("state") != "st" {
		t.Fatalf("end-session URL %q %v", end, err)
	}
	if o := p.SignOutOrigins(); len(o) != 1 || o[0] != dp.Issuer() {
		t.Fatalf("sign-out origins %v, want the issuer's", o)
	}
}

// TestOIDCWithoutEndSession: a provider without end_session_endpoint
// signs out locally only, and its ID token is not kept.
func TestOIDCWithoutEndSession(t *testing.T) {
	dp, p := startOIDC(t)
	dp.SetDiscovery(func(doc map[string]any) { delete(doc, "end_session_endpoint") })
	res, err := login(t, p, ada)
	if err != nil || res.IDToken != "" {
		t.Fatalf("sign-in: %+v %v, want no ID token kept", res, err)
	}
	if end, err := p.EndSessionURL(context.Background(), "", "http://app.test/", "st"); end != "" || err != nil {
		t.Fatalf("end-session URL %q %v, want none", end, err)
	}
}

// TestOIDCClaimsFromUserInfo: a provider that keeps the profile for its
// UserInfo endpoint; and one whose UserInfo speaks of another subject.
func TestOIDCClaimsFromUserInfo(t *testing.T) {
	dp, p := startOIDC(t)
	dp.SetTamper(devprovidertest.WithoutProfileInIDToken)
	res, err := login(t, p, ada)
	if err != nil || res.Identity.Email != "ada@example.com" || res.Identity.Name != "Ada Lovelace" {
		t.Fatalf("profile only in UserInfo: %+v %v, want email and name from UserInfo", res.Identity, err)
	}
	dp.SetUserInfo(func(profile map[string]any) { profile["sub"] = "someone-else" })
	if res, err := login(t, p, ada); !errors.Is(err, auth.ErrRejected) {
		t.Fatalf("UserInfo about another subject: %+v %v, want a rejection", res.Identity, err)
	}
	// Unverified: the address is not taken as the user's.
	dp.SetUserInfo(func(profile map[string]any) { profile["email_verified"] = false })
	res, err = login(t, p, ada)
	if err != nil || res.Identity.Email != "" || res.Identity.Name != "Ada Lovelace" || res.Subject == "" {
		t.Fatalf("unverified email in UserInfo: %+v %v, want a sign-in by subject, no email", res.Identity, err)
	}
}

// TestLogoutTokens: Back-Channel Logout 1.0 §2.6, case by case.
func TestLogoutTokens(t *testing.T) {
	dp, p := startOIDC(t)
	now := time.Now()
	sign := func(c map[string]any) string {
		tok, err := dp.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := dp.LogoutClaims("rp", "user-1", "sid-1")
	lt, err := p.VerifyLogoutToken(context.Background(), sign(valid), now)
	if err != nil || lt.Subject != "user-1" || lt.SessionID != "sid-1" || lt.ID != valid["jti"] ||
		lt.PassesUntil.Before(now.Add(time.Minute)) || lt.PassesUntil.After(now.Add(10*time.Minute)) {
		t.Fatalf("valid token: %+v %v", lt, err)
	}
	spoil := func(f func(map[string]any)) string {
		c := dp.LogoutClaims("rp", "user-1", "")
		f(c)
		return sign(c)
	}
	for name, tok := range map[string]string{
		"wrong audience":  spoil(func(c map[string]any) { c["aud"] = "another-client" }),
		"wrong issuer":    spoil(func(c map[string]any) { c["iss"] = "https://evil.example" }),
		"with a nonce":    spoil(func(c map[string]any) { c["nonce"] = "n" }),
		"no event":        spoil(func(c map[string]any) { delete(c, "events") }),
		"no sub nor sid":  spoil(func(c map[string]any) { delete(c, "sub") }),
		"no jti":          spoil(func(c map[string]any) { delete(c, "jti") }),
		"no iat":          spoil(func(c map[string]any) { delete(c, "iat") }),
		"expired":         spoil(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }),
		"issued long ago": spoil(func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() }),
		"from the future": spoil(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }),
		"unsigned":        devprovidertest.Unsigned(dp.LogoutClaims("rp", "user-1", "")),
		"bad signature":   sign(valid)[:len(sign(valid))-4] + "AAAA",
		"not a JWT":       "hello",
	} {
		if lt, err := p.VerifyLogoutToken(context.Background(), tok, now); !errors.Is(err, auth.ErrRejected) {
			t.Errorf("%s: %+v %v, want a rejection", name, lt, err)
		}
	}
}

// TestForgedTokensDoNotRefetchKeys: go-oidc fetches the key set again for
// every token that does not verify; a flood of forged logout tokens must
// not become a flood of requests to the provider.
func TestForgedTokensDoNotRefetchKeys(t *testing.T) {
	var jwks atomic.Int64
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	dp, err := devprovidertest.New(devprovider.Config{Issuer: issuer, ClientID: "rp", ClientSecret: "rp-secret"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/jwks") {
			jwks.Add(1)
		}
		dp.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	p := auth.NewOIDC(auth.OIDCConfig{Name: "keycloak", Issuer: issuer, ClientID: "rp", ClientSecret: "rp-secret", RedirectURL: callback})

	good, _ := dp.Sign(dp.LogoutClaims("rp", "u", ""))
	if _, err := p.VerifyLogoutToken(context.Background(), good, time.Now()); err != nil {
		t.Fatal(err)
	}
	forger, _ := devprovider.New(devprovider.Config{Issuer: issuer, ClientID: "rp"}) // other keys, other kid
	for range 200 {
		forged, _ := forger.Sign(dp.LogoutClaims("rp", "u", ""))
		if _, err := p.VerifyLogoutToken(context.Background(), forged, time.Now()); !errors.Is(err, auth.ErrRejected) {
			t.Fatalf("forged token: %v, want a rejection", err)
		}
	}
	if n := jwks.Load(); n > 2 {
		t.Fatalf("200 forged tokens caused %d fetches of the key set, want at most 2", n)
	}
	// Genuine tokens still verify from the keys held.
	good, _ = dp.Sign(dp.LogoutClaims("rp", "u", ""))
	if _, err := p.VerifyLogoutToken(context.Background(), good, time.Now()); err != nil {
		t.Fatalf("a genuine token after the flood: %v", err)
	}
}
