package auth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig configures an OpenID Connect provider.
type OIDCConfig struct {
	Name         string // route and Identity.Provider: "google", "demo"
	Label        string // the sign-in button's: "Google"
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURL  string
	// Scopes default to openid, email and profile.
	Scopes []string
	// AuthParams are added to the authorization request: how a provider
	// is asked for offline access (Google: access_type=offline; OpenID
	// Connect: prompt=consent with the offline_access scope).
	AuthParams url.Values
	// HTTPClient talks to the provider; nil means a client with a timeout.
	HTTPClient *http.Client
}

// OIDC is an OpenID Connect relying party for one issuer. Discovery is lazy
// and cached, so the app starts without network, a provider that is down
// or misconfigured breaks only its own sign-in, and it recovers by itself.
type OIDC struct {
	cfg  OIDCConfig
	keys *keyFetchGate

	mu         sync.Mutex
	op         *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	endSession string
	revocation string
	origins    []string // SignOutOrigins, once made
}

var (
	_ LogoutProvider = (*OIDC)(nil)
	_ APIProvider    = (*OIDC)(nil)
)

// NewOIDC returns a provider; it does not contact the issuer.
func NewOIDC(cfg OIDCConfig) *OIDC {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	client := *limitResponses(cfg.HTTPClient, 0)
	gate := &keyFetchGate{next: client.Transport}
	client.Transport = gate
	cfg.HTTPClient = &client
	return &OIDC{cfg: cfg, keys: gate}
}

// keyRefetchInterval bounds how often the provider's signing keys are
// fetched again. go-oidc fetches the key set anew whenever a token does not
// verify with the keys it holds; without a bound, every forged token (a
// back-channel logout anyone can post) would cost a request to the
// provider. A key the provider has just rotated in is found at the first
// refetch, at most this long after the previous one.
const keyRefetchInterval = 10 * time.Second

// errKeysFresh is the refusal of a refetch within keyRefetchInterval.
var errKeysFresh = errors.New("signing keys were fetched moments ago; not fetching them again yet")

// keyFetchGate is the provider client's transport: it passes every request
// on, except fetches of the key set (jwks_uri) sooner than
// keyRefetchInterval after the last one.
type keyFetchGate struct {
	next http.RoundTripper

	mu      sync.Mutex
	jwksURI string // known once discovered
	last    time.Time
}

func (g *keyFetchGate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	if g.jwksURI != "" && r.Method == http.MethodGet && r.URL.String() == g.jwksURI {
		if !g.last.IsZero() && time.Since(g.last) < keyRefetchInterval {
			g.mu.Unlock()
			return nil, errKeysFresh
		}
		g.last = time.Now()
	}
	g.mu.Unlock()
	return g.next.RoundTrip(r)
}

// Name implements Provider.
func (p *OIDC) Name() string { return p.cfg.Name }

// Label implements Provider.
func (p *OIDC) Label() string { return p.cfg.Label }

// Issuer implements Provider.
func (p *OIDC) Issuer() string { return p.cfg.Issuer }

type discovered struct {
	op         *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	endSession string
	revocation string // RFC 7009's endpoint, "" when the provider has none
}

func (p *OIDC) discover(ctx context.Context) (discovered, error) {
	p.mu.Lock()
	d := discovered{p.op, p.verifier, p.endSession, p.revocation}
	p.mu.Unlock()
	if d.op != nil {
		return d, nil
	}
	// Not under the lock: while the issuer is unreachable, logins must not
	// queue behind each other's time-outs.
	ctx, cuts := watchCuts(ctx)
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, p.cfg.HTTPClient), p.cfg.Issuer)
	if err != nil {
		return d, orTooLarge(cuts, fmt.Errorf("%w: discover %s: %w", ErrProviderUnreachable, p.cfg.Issuer, err))
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
		Revocation string `json:"revocation_endpoint"`
		JWKS       string `json:"jwks_uri"`
	}
	_ = op.Claims(&extra)
	p.keys.mu.Lock()
	p.keys.jwksURI = extra.JWKS
	p.keys.mu.Unlock()
	p.mu.Lock()
	if p.op == nil {
		p.op, p.verifier, p.endSession = op, op.Verifier(&oidc.Config{ClientID: p.cfg.ClientID}), extra.EndSession
		p.revocation = extra.Revocation
		p.origins = nil // made again with the end_session_endpoint's
	}
	d = discovered{p.op, p.verifier, p.endSession, p.revocation}
	p.mu.Unlock()
	return d, nil
}

// SignOutOrigins implements LogoutProvider. The issuer's origin is known
// without discovery, so pages served before this process has discovered
// the provider (after a restart) still allow the usual case, an
// end_session_endpoint on the issuer's host. Every page asks, so the list
// is made once, and again only when discovery finds another origin.
func (p *OIDC) SignOutOrigins() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.origins == nil {
		for _, raw := range []string{p.cfg.Issuer, p.endSession} {
			if u, err := url.Parse(raw); err == nil && u.Host != "" {
				if o := u.Scheme + "://" + u.Host; !slices.Contains(p.origins, o) {
					p.origins = append(p.origins, o)
				}
			}
		}
	}
	return p.origins
}

func (p *OIDC) oauth2Config(op *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		RedirectURL:  p.cfg.RedirectURL,
		Endpoint:     op.Endpoint(),
		Scopes:       p.cfg.Scopes,
	}
}

// Start implements Provider.
func (p *OIDC) Start(ctx context.Context, returnTo string) (Flow, string, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return Flow{}, "", err
	}
	f := newFlow(p.cfg.Name, returnTo, true)
	opts := []oauth2.AuthCodeOption{oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)}
	for k, v := range p.cfg.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, strings.Join(v, " ")))
	}
	return f, p.oauth2Config(d.op).AuthCodeURL(f.State, opts...), nil
}

// claims are the identity claims the app takes from the ID token or, when
// the token lacks them, from the UserInfo endpoint.
type claims struct {
	Subject       string `json:"sub"`
	Email         string `json:"email"`
	EmailVerified *bool  `json:"email_verified"`
	Name          string `json:"name"`
	Picture       string `json:"picture"`
	SessionID     string `json:"sid"`
}

// Finish implements Provider.
func (p *OIDC) Finish(ctx context.Context, f Flow, code string) (Result, error) {
	ctx, cuts := watchCuts(ctx)
	res, err := p.finish(ctx, f, code)
	if err == nil {
		err = checkSizes(res)
	}
	if err != nil {
		return Result{}, orTooLarge(cuts, err)
	}
	return res, nil
}

func (p *OIDC) finish(ctx context.Context, f Flow, code string) (Result, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return Result{}, err
	}
	ctx = oidc.ClientContext(ctx, p.cfg.HTTPClient)
	tok, err := p.oauth2Config(d.op).Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Result{}, exchangeError(err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Result{}, fmt.Errorf("%w: no id_token in the token response", ErrRejected)
	}
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		return Result{}, fmt.Errorf("%w: id_token: %w", ErrRejected, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return Result{}, fmt.Errorf("%w: id_token nonce does not match the login", ErrRejected)
	}
	var c claims
	if err := idt.Claims(&c); err != nil {
		return Result{}, fmt.Errorf("%w: id_token claims: %w", ErrRejected, err)
	}
	if c.Email == "" || c.Name == "" {
		// With response_type=code a provider may keep the profile for
		// UserInfo (OIDC Core 5.4): ask it, as the same subject.
		if err := p.userInfo(ctx, d.op, tok, idt.Subject, &c); err != nil {
			return Result{}, err
		}
	}
	if c.EmailVerified == nil || !*c.EmailVerified {
		// An address the provider does not vouch for must not pass for the
		// user's: it would pass ALLOWED_EMAIL_DOMAINS and file the session
		// under someone else's sessions. Google always sends the claim.
		c.Email = ""
	}
	id := Identity{ID: p.cfg.Name + "|" + idt.Subject, Email: c.Email, Name: c.Name, Picture: c.Picture, Provider: p.cfg.Name}
	res := Result{Identity: id, Subject: idt.Subject, SessionID: c.SessionID, Token: tok, Scopes: GrantedScopes(tok, p.cfg.Scopes)}
	if err := checkToken(tok); err != nil {
		return Result{}, err
	}
	if d.endSession != "" {
		res.IDToken = raw // only worth keeping as a later id_token_hint
	}
	return res, nil
}

// userInfo fills what the ID token lacked from the UserInfo endpoint,
// whose answer must be about the ID token's subject.
func (p *OIDC) userInfo(ctx context.Context, op *oidc.Provider, tok *oauth2.Token, subject string, c *claims) error {
	if op.UserInfoEndpoint() == "" {
		return nil // nothing more to learn; the user is known by subject
	}
	ui, err := op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return fmt.Errorf("%w: userinfo: %w", ErrProviderUnreachable, err)
	}
	var more claims
	if err := ui.Claims(&more); err != nil {
		return fmt.Errorf("%w: userinfo claims: %w", ErrRejected, err)
	}
	if more.Subject != subject {
		// Another user's profile (a mix-up or a malicious endpoint): OIDC
		// Core 5.3.2 says it must not be used.
		return fmt.Errorf("%w: userinfo is about another subject", ErrRejected)
	}
	if c.Email == "" {
		c.Email, c.EmailVerified = more.Email, more.EmailVerified
	}
	if c.Name == "" {
		c.Name = more.Name
	}
	if c.Picture == "" {
		c.Picture = more.Picture
	}
	return nil
}

// exchangeError sorts a failed code exchange: the provider's refusal, or
// no answer.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: token endpoint: %s", ErrRejected, re.ErrorCode)
	}
	return fmt.Errorf("%w: token endpoint: %w", ErrProviderUnreachable, err)
}

// EndSessionURL implements LogoutProvider.
func (p *OIDC) EndSessionURL(ctx context.Context, idToken, postLogoutRedirect, state string) (string, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	if d.endSession == "" {
		return "", nil
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return "", fmt.Errorf("%w: end_session_endpoint: %w", ErrRejected, err)
	}
	q := u.Query()
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	q.Set("client_id", p.cfg.ClientID)
	q.Set("post_logout_redirect_uri", postLogoutRedirect)
	q.Set("state", state)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// logoutTokenMaxAge bounds how old a back-channel logout token's iat may
// be (and how far in the future, for clock skew).
const (
	logoutTokenMaxAge = 5 * time.Minute
	clockSkew         = time.Minute
)

// VerifyLogoutToken implements LogoutProvider: a JWS signed by the
// provider's keys (never alg none), its iss, aud = this client, exp, a jti,
// the back-channel logout event, no nonce, sid or sub (go-oidc), and an
// iat that is present and recent.
func (p *OIDC) VerifyLogoutToken(ctx context.Context, raw string, now time.Time) (LogoutToken, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return LogoutToken{}, err
	}
	lt, err := d.verifier.VerifyLogout(oidc.ClientContext(ctx, p.cfg.HTTPClient), raw)
	if err != nil {
		return LogoutToken{}, fmt.Errorf("%w: logout token: %w", ErrRejected, err)
	}
	switch {
	case lt.IssuedAt.IsZero():
		return LogoutToken{}, fmt.Errorf("%w: logout token without iat", ErrRejected)
	case now.Sub(lt.IssuedAt) > logoutTokenMaxAge:
		return LogoutToken{}, fmt.Errorf("%w: logout token issued %s ago", ErrRejected, now.Sub(lt.IssuedAt).Round(time.Second))
	case lt.IssuedAt.Sub(now) > clockSkew:
		return LogoutToken{}, fmt.Errorf("%w: logout token issued in the future", ErrRejected)
	}
	until := lt.IssuedAt.Add(logoutTokenMaxAge)
	if lt.Expiry.Before(until) {
		until = lt.Expiry
	}
	until = until.Add(clockSkew)
	return LogoutToken{ID: lt.TokenID, Subject: lt.Subject, SessionID: lt.SessionID, PassesUntil: until}, nil
}

// Refresh implements APIProvider.
func (p *OIDC) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	return refresh(ctx, p.cfg.HTTPClient, p.oauth2Config(d.op), refreshToken)
}

// Revoke implements APIProvider, with the discovery document's
// revocation_endpoint.
func (p *OIDC) Revoke(ctx context.Context, token, hint string) (bool, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return false, err
	}
	if d.revocation == "" {
		return false, nil
	}
	return true, revoke(ctx, p.cfg.HTTPClient, d.revocation, p.cfg.ClientID, p.cfg.ClientSecret, token, hint)
}

// Profile implements APIProvider with the UserInfo endpoint.
func (p *OIDC) Profile(ctx context.Context, accessToken string) (json.RawMessage, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	endpoint := d.op.UserInfoEndpoint()
	if endpoint == "" {
		return nil, fmt.Errorf("%w: %s has no UserInfo endpoint", ErrRejected, p.cfg.Issuer)
	}
	return getWithToken(ctx, p.cfg.HTTPClient, endpoint, accessToken, nil)
}
