// Package auth runs the OpenID Connect authorization-code flow: it builds the
// provider's login URL (state, nonce, PKCE S256), exchanges the code and
// verifies the ID token. Sessions are not its business; handlers keep the
// flow and the resulting identity in the session store.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Identity is who signed in, as the provider's verified ID token says.
type Identity struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Name     string `json:"name"`
	Picture  string `json:"picture"`
	Provider string `json:"provider"`
}

// DisplayName is how pages address the user: the name, else the email,
// else the provider's subject.
func (i Identity) DisplayName() string {
	switch {
	case i.Name != "":
		return i.Name
	case i.Email != "":
		return i.Email
	}
	return i.ID
}

// Flow is what a started login must remember until its callback, and
// nothing more: every started login is a record in the store for ten
// minutes, so it is kept small (short keys, 128-bit state and nonce).
type Flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`           // PKCE code verifier
	ReturnTo string `json:"r,omitempty"` // a relative path; "" is "/"
}

// FlowTTL is how long a started login may take, as in the original guide.
const FlowTTL = 10 * time.Minute

// Errors a caller tells apart to choose the page and status.
var (
	// ErrProviderUnreachable: discovery, the token or the key endpoint did
	// not answer. Trying again later may work.
	ErrProviderUnreachable = errors.New("sign-in provider unreachable")
	// ErrRejected: the provider answered but its answer does not verify
	// (bad signature, issuer, audience, nonce, expiry) or was refused.
	ErrRejected = errors.New("sign-in rejected")
)

// ProviderConfig configures a Provider.
type ProviderConfig struct {
	Name         string // reported as Identity.Provider: "google", "demo"
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURL  string
	// HTTPClient talks to the provider; nil means a client with a timeout.
	HTTPClient *http.Client
}

// Provider is an OpenID Connect relying party for one issuer. Discovery is
// lazy and cached, so the app starts without network and recovers by itself
// once the provider can be reached.
type Provider struct {
	cfg ProviderConfig

	mu       sync.Mutex
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// NewProvider returns a Provider; it does not contact the issuer.
func NewProvider(cfg ProviderConfig) *Provider {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Provider{cfg: cfg}
}

// Name is the provider's label.
func (p *Provider) Name() string { return p.cfg.Name }

func (p *Provider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	op, v := p.oidc, p.verifier
	p.mu.Unlock()
	if op != nil {
		return op, v, nil
	}
	// Not under the lock: while the issuer is unreachable, logins must not
	// queue behind each other's time-outs.
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, p.cfg.HTTPClient), p.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: discover %s: %w", ErrProviderUnreachable, p.cfg.Issuer, err)
	}
	v = op.Verifier(&oidc.Config{ClientID: p.cfg.ClientID})
	p.mu.Lock()
	if p.oidc == nil {
		p.oidc, p.verifier = op, v
	}
	op, v = p.oidc, p.verifier
	p.mu.Unlock()
	return op, v, nil
}

func (p *Provider) oauth2Config(op *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		RedirectURL:  p.cfg.RedirectURL,
		Endpoint:     op.Endpoint(),
		Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
	}
}

// Start returns a new flow for a login that returns to returnTo afterwards,
// and the provider URL to send the browser to.
func (p *Provider) Start(ctx context.Context, returnTo string) (Flow, string, error) {
	op, _, err := p.discover(ctx)
	if err != nil {
		return Flow{}, "", err
	}
	f := Flow{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier()}
	if back := SafeReturnPath(returnTo); back != "/" {
		f.ReturnTo = back
	}
	u := p.oauth2Config(op).AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return f, u, nil
}

// Finish exchanges code for tokens and verifies the ID token against f.
func (p *Provider) Finish(ctx context.Context, f Flow, code string) (Identity, error) {
	op, verifier, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx = oidc.ClientContext(ctx, p.cfg.HTTPClient)
	tok, err := p.oauth2Config(op).Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return Identity{}, fmt.Errorf("%w: token endpoint: %s", ErrRejected, re.ErrorCode)
		}
		return Identity{}, fmt.Errorf("%w: token endpoint: %w", ErrProviderUnreachable, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Identity{}, fmt.Errorf("%w: no id_token in the token response", ErrRejected)
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: id_token: %w", ErrRejected, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return Identity{}, fmt.Errorf("%w: id_token nonce does not match the login", ErrRejected)
	}
	var claims struct {
		Email         string `json:"email"`
		EmailVerified *bool  `json:"email_verified"`
		Name          string `json:"name"`
		Picture       string `json:"picture"`
	}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: id_token claims: %w", ErrRejected, err)
	}
	if claims.EmailVerified == nil || !*claims.EmailVerified {
		// An address the provider does not vouch for must not pass for the
		// user's: it would pass ALLOWED_EMAIL_DOMAINS and file the session
		// under someone else's sessions. Google always sends the claim.
		claims.Email = ""
	}
	return Identity{ID: idt.Subject, Email: claims.Email, Name: claims.Name, Picture: claims.Picture, Provider: p.cfg.Name}, nil
}

// CheckState compares a callback's state with the flow's in constant time.
func CheckState(f Flow, state string) bool {
	return f.State != "" && subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) == 1
}

// EmailAllowed reports whether email is in one of the allowed domains; an
// empty list allows everyone.
func EmailAllowed(email string, domains []string) bool {
	if len(domains) == 0 {
		return true
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return false
	}
	domain := strings.ToLower(email[at+1:])
	for _, d := range domains {
		if domain == d {
			return true
		}
	}
	return false
}

// SafeReturnPath returns p if it is a path on this site, else "/". It refuses
// anything a browser could read as another origin: schemes, "//host",
// backslashes (browsers treat "/\host" as "//host"), control characters, and
// encoded forms of those.
func SafeReturnPath(p string) string {
	if p == "" || len(p) > 2048 || p[0] != '/' {
		return "/"
	}
	decoded := p
	for range 3 { // catch double and triple encoding too
		d, err := url.PathUnescape(decoded)
		if err != nil {
			return "/"
		}
		if d == decoded {
			break
		}
		decoded = d
	}
	for _, s := range []string{p, decoded} {
		if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
			return "/"
		}
		if strings.ContainsAny(s, "\\\x00\r\n\t") {
			return "/"
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return p
}

// randomString returns 128 random bits, encoded: a state or a nonce.
func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// OwnerKey is the label under which a user's sessions are indexed in the
// store: a hash of the lower-cased email, so operators can find a user's
// sessions by address (web sessions revoke --user EMAIL) while a copy of the
// store holds no address in plain text.
func OwnerKey(email string) string {
	sum := sha256.Sum256([]byte("owner:" + strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:16])
}

// Owner returns the index label of the identity: by email when there is
// one, else by provider and subject.
func (i Identity) Owner() string {
	if i.Email != "" {
		return OwnerKey(i.Email)
	}
	sum := sha256.Sum256([]byte("subject:" + i.Provider + "|" + i.ID))
	return hex.EncodeToString(sum[:16])
}

// Device returns a short description of a browser from its User-Agent,
// e.g. "Chrome on Linux", for the "your sessions" page.
func Device(userAgent string) string {
	ua := userAgent
	browser := "Unknown browser"
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"HeadlessChrome/", "Headless Chrome"},
		{"Chrome/", "Chrome"}, {"Chromium/", "Chromium"}, {"Safari/", "Safari"}, {"curl/", "curl"}, {"Go-http-client", "Go client"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	os := ""
	for _, o := range []struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iPadOS"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			os = o.name
			break
		}
	}
	if os == "" {
		return browser
	}
	return browser + " on " + os
}
