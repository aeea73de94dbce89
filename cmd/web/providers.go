package main

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"time"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/config"
	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/ratelimit"
)

// providerTimeout bounds each call to a provider (the providers' own
// default when tracing is off).
const providerTimeout = 10 * time.Second

// devProviderPath is where the built-in demo provider is mounted.
const devProviderPath = "/demo-idp"

// signInProviders returns the configured providers in the order of their
// buttons, which is the order below. With none configured in development,
// it returns the demo provider instead, and the handler serving it. Adding
// a provider is a type implementing auth.Provider, its variables in
// package config, and a few lines here.
//
// traced wraps a transport so that the calls to providers are traced
// (spans under the request's, traceparent sent on); it returns the
// transport itself when tracing is off.
func signInProviders(cfg *config.Config, secret string, traced func(http.RoundTripper) http.RoundTripper) ([]auth.Provider, http.Handler, error) {
	base := cfg.BaseURL.String()
	// Nil (each provider's default) unless traced.
	var client *http.Client
	if rt := traced(nil); rt != nil {
		client = &http.Client{Timeout: providerTimeout, Transport: rt}
	}
	callback := func(name string) string { return base + "/api/auth/" + name + "/callback" }
	var out []auth.Provider
	if cfg.GoogleConfigured() {
		google := auth.OIDCConfig{
			Name: "google", Label: "Google", Issuer: cfg.GoogleIssuerURL,
			ClientID: cfg.GoogleClientID, ClientSecret: cfg.GoogleClientSecret, RedirectURL: callback("google"),
			Scopes:     append([]string{"openid", "email", "profile"}, cfg.GoogleScopes...),
			HTTPClient: client,
		}
		if cfg.GoogleOfflineAccess {
			// Google's way to a refresh token (it has no offline_access
			// scope); consent, because Google issues one only then.
			google.AuthParams = url.Values{"access_type": {"offline"}, "include_granted_scopes": {"true"}, "prompt": {"consent"}}
		}
		out = append(out, auth.NewOIDC(google))
	}
	// BEGIN remove:github
	if cfg.GitHubConfigured() {
		out = append(out, auth.NewGitHub(auth.GitHubConfig{
			ClientID: cfg.GitHubClientID, ClientSecret: cfg.GitHubClientSecret, RedirectURL: callback("github"),
			URL: cfg.GitHubURL, APIURL: cfg.GitHubAPIURL, Scopes: cfg.GitHubScopes, HTTPClient: client,
		}))
	}
	// END remove:github
	// BEGIN remove:oidc
	if cfg.OIDCConfigured() {
		generic := auth.OIDCConfig{
			Name: "oidc", Label: cfg.OIDCName, Issuer: cfg.OIDCIssuerURL, Scopes: cfg.OIDCScopes,
			ClientID: cfg.OIDCClientID, ClientSecret: cfg.OIDCClientSecret, RedirectURL: callback("oidc"),
			HTTPClient: client,
		}
		if cfg.OIDCOfflineAccess {
			generic.Scopes, generic.AuthParams = offlineAccess(generic.Scopes)
		}
		out = append(out, auth.NewOIDC(generic))
	}
	// END remove:oidc
	if !cfg.DemoLogin {
		return out, nil, nil
	}
	// The demo's keys and client secret come from the session secret, so
	// instances sharing it act as one provider behind a load balancer.
	seed, err := hkdf.Key(sha256.New, []byte(secret), nil, "oauth-sessions demo provider v1", 64)
	if err != nil {
		return nil, nil, fmt.Errorf("demo provider keys: %w", err)
	}
	clientSecret := base64.RawURLEncoding.EncodeToString(seed[32:])
	issuer := base + devProviderPath
	dev, err := devprovider.New(devprovider.Config{
		Issuer: issuer, ClientID: "demo-client", ClientSecret: clientSecret,
		RedirectURIs: []string{callback("demo")}, Seed: seed[:32], AppName: cfg.AppName,
		PostLogoutRedirectURIs: []string{base + "/"},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start demo provider: %w", err)
	}
	// The demo asks for offline access, so that calling an API as the
	// user, refresh included, works with no credentials at all.
	scopes, params := offlineAccess([]string{"openid", "email", "profile"})
	devClient := dev.Client()
	if rt := traced(devClient.Transport); rt != nil {
		devClient.Transport = rt
	}
	demo := auth.NewOIDC(auth.OIDCConfig{
		Name: "demo", Label: "Development provider", Issuer: issuer,
		ClientID: "demo-client", ClientSecret: clientSecret, RedirectURL: callback("demo"),
		Scopes: scopes, AuthParams: params,
		// In-process: the server need not reach its own public URL.
		HTTPClient: devClient,
	})
	return []auth.Provider{demo}, dev, nil
}

// offlineAccess is how OpenID Connect asks for a refresh token (Core §11):
// the offline_access scope, which providers honour only with
// prompt=consent.
func offlineAccess(scopes []string) ([]string, url.Values) {
	return append(slices.Clone(scopes), "offline_access"), url.Values{"prompt": {"consent"}}
}

// Back-channel logout limits. Only failed tokens count against an
// address (a provider ending many sessions at once posts one valid token
// per session from one address, and must never be refused); what a flood
// of forged tokens from many addresses can take is a few signature checks
// at once, in which genuine tokens wait their turn. (Forged tokens cannot
// make the app fetch the provider's keys more than once per 10 seconds:
// see auth.keyFetchGate.)
const (
	logoutsPerClientPerMinute = 1200 // failed tokens per address, also the burst
)

// logoutLimits returns the per-address budget of failed logout tokens and
// how many are checked at once: one per core, so a flood takes at most
// the CPU it would take anyway and the rest of the app keeps its share of
// the scheduler.
func logoutLimits() (failures *ratelimit.Memory, verifications int) {
	return ratelimit.NewMemory(ratelimit.PerMinute(logoutsPerClientPerMinute, logoutsPerClientPerMinute), maxLimitedClients, nil),
		max(2, runtime.GOMAXPROCS(0))
}
