// Package devprovider is a small OpenID Connect provider with a real login
// form. The app mounts it for the credential-free demo login in development,
// cmd/devidp runs it on its own, and the tests sign in against it. It is not
// an identity provider for production: anyone can sign in as anyone.
//
// Its codes and tokens carry their grant: an authorization code, an access
// token and a refresh token are each the grant sealed under a key derived
// from Config.Seed, and the signing key comes from the same seed.
// Instances given the same seed therefore act as one provider, which is
// what lets the demo login work behind a load balancer that sends the form
// and the callback to different app instances.
//
// What it keeps in memory, bounded, is what a sealed value cannot say
// about itself: the codes already redeemed, until they expire; and, per
// refresh-token grant (a login with scope offline_access and
// prompt=consent), the current generation of its refresh token, whether it
// is revoked, whose it is and when its last token expires. That is what
// rotation, reuse detection and revocation (RFC 7009) need. The state is
// per process: a grant this process has not seen (issued by another
// instance sharing the seed, or before a restart) is taken at the
// generation its refresh token shows, so an instance detects the reuse of
// a refresh token, and honours a revocation, only when it saw them happen.
// A test of "refresh once across instances" therefore sends the app's
// instances to one provider process.
package devprovider

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

//go:embed login.html
var loginHTML string

//go:embed style.css
var styleCSS []byte

// Config configures a Provider.
type Config struct {
	// Issuer is the provider's public URL, e.g. http://localhost:8080/demo-idp.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURIs lists the accepted redirect_uri values; empty accepts any
	// (for a test provider whose clients' ports are not known in advance).
	RedirectURIs []string
	// Seed derives the signing key and the key that seals authorization
	// codes, access tokens and refresh tokens (at least 32 bytes).
	// Providers with the same seed and issuer accept each other's codes and
	// tokens. Empty: a random seed.
	Seed []byte
	// AppName, when set, is shown on the login page ("Signing in to ...").
	AppName string
	// PostLogoutRedirectURIs lists where its end_session_endpoint may send
	// the browser back to; empty accepts any http(s) URL (tests).
	PostLogoutRedirectURIs []string
	// AccessTokenTTL is how long an access token is good for (0: five
	// minutes). ID tokens are always good for five minutes.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token is good for from when it
	// is issued (0: 24 hours). Each rotation issues one good for as long
	// again, so a grant lives as long as it is used.
	RefreshTokenTTL time.Duration
	// Now is the provider's clock (nil: time.Now), so tests expire codes
	// and tokens without waiting.
	Now func() time.Time
}

// Lifetimes when Config leaves them zero.
const (
	defaultAccessTokenTTL  = 5 * time.Minute
	defaultRefreshTokenTTL = 24 * time.Hour
	idTokenTTL             = 5 * time.Minute
)

// CodeTTL is how long an authorization code may wait for its redemption.
const CodeTTL = time.Minute

// maxRedeemed bounds the memory of redeemed codes: at most this many are
// remembered until they expire. A code is only redeemed by the client
// with its secret, so reaching it means the client itself runs wild.
const maxRedeemed = 100_000

// maxGrants bounds the memory of refresh-token grants the same way (a
// test lowers Provider.maxGrants to see the bound at work).
const maxGrants = 100_000

// scopeOffline asks for a refresh token (OpenID Connect Core §11).
const scopeOffline = "offline_access"

// scopesSupported are the scopes the provider grants; it ignores others,
// as providers do with scopes they do not know.
func scopesSupported() []string { return []string{"openid", "email", "profile", scopeOffline} }

// Provider is an http.Handler serving discovery, the authorize form, the
// token, revocation, userinfo and logout endpoints and the signing keys,
// all below the issuer's path.
type Provider struct {
	cfg    Config
	key    ed25519.PrivateKey
	kid    string
	signer jose.Signer
	codes  cipher.AEAD
	prefix string
	page   *template.Template
	mux    *http.ServeMux

	mu        sync.Mutex
	redeemed  map[[32]byte]time.Time // code hash → when it expires anyway
	grants    map[string]*grantState // grant id → its state
	maxGrants int

	stats struct{ refreshes, reused, revocations, refreshIssued atomic.Int64 }
}

// grantState is what this process knows of a refresh-token grant.
type grantState struct {
	gen     int64 // the newest generation issued or presented here
	revoked bool
	email   string
	expires time.Time // when its last token known here expires: kept until then
}

// Stats counts what a provider did with refresh tokens, for tests.
type Stats struct {
	Refreshes           int64 // refresh-token grants answered with new tokens
	ReuseDetected       int64 // superseded refresh tokens presented (each revoked its grant)
	Revocations         int64 // revocation requests that revoked a live grant
	RefreshTokensIssued int64 // at code exchanges and at refreshes
}

// grant is what an authorization code carries, sealed; access and refresh
// tokens carry the part of it that outlives the code (see forToken).
type grant struct {
	ClientID    string `json:"c"`
	RedirectURI string `json:"r,omitempty"`
	Nonce       string `json:"n,omitempty"`
	Challenge   string `json:"pk,omitempty"`
	Name        string `json:"nm"`
	Email       string `json:"em"`
	SessionID   string `json:"sid"`
	Scope       string `json:"sc,omitempty"` // granted, space separated
	GrantID     string `json:"g,omitempty"`  // the refresh-token grant, if any
	Gen         int64  `json:"gn,omitempty"` // a refresh token's generation, from 1
	Expires     int64  `json:"x"`
}

// forToken is what a token of generation gen (0: an access token) issued
// for g carries: who, for which client and scopes, of which grant, until
// when; not the code's redirect URI, PKCE challenge or nonce.
func (g grant) forToken(gen int64, expires time.Time) grant {
	return grant{ClientID: g.ClientID, Name: g.Name, Email: g.Email, SessionID: g.SessionID,
		Scope: g.Scope, GrantID: g.GrantID, Gen: gen, Expires: expires.Unix()}
}

// What a sealed value is for, bound into its seal, so a code is never
// accepted as a token, nor one kind of token as another.
const (
	sealCode    = "code"
	sealAccess  = "access"
	sealRefresh = "refresh"
)

// New returns a provider; see Config.Seed for where its keys come from.
func New(cfg Config) (*Provider, error) {
	seed := cfg.Seed
	if len(seed) == 0 {
		seed = make([]byte, 32)
		_, _ = rand.Read(seed)
	}
	if len(seed) < 32 {
		return nil, errors.New("devprovider: seed shorter than 32 bytes")
	}
	if cfg.AccessTokenTTL < 0 || cfg.RefreshTokenTTL < 0 {
		return nil, errors.New("devprovider: negative token lifetime")
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = defaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = defaultRefreshTokenTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("devprovider: issuer: %w", err)
	}
	derive := func(label string) []byte {
		k, err := hkdf.Key(sha256.New, seed, []byte(cfg.Issuer), "devprovider "+label+" v1", 32)
		if err != nil {
			panic(err) // only for lengths hkdf cannot produce
		}
		return k
	}
	key := ed25519.NewKeyFromSeed(derive("signing key"))
	kidSum := sha256.Sum256(key.Public().(ed25519.PublicKey))
	block, err := aes.NewCipher(derive("code sealing"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, key: key, kid: base64.RawURLEncoding.EncodeToString(kidSum[:8]), codes: aead,
		prefix: strings.TrimRight(u.Path, "/"), redeemed: map[[32]byte]time.Time{},
		grants: map[string]*grantState{}, maxGrants: maxGrants}
	p.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: key, KeyID: p.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	p.page = template.Must(template.New("login").Parse(loginHTML))
	p.mux = http.NewServeMux()
	p.mux.HandleFunc("GET "+p.prefix+"/.well-known/openid-configuration", p.discovery)
	p.mux.HandleFunc("GET "+p.prefix+"/authorize", p.authorizeForm)
	p.mux.HandleFunc("POST "+p.prefix+"/authorize", p.authorize)
	p.mux.HandleFunc("POST "+p.prefix+"/token", p.token)
	p.mux.HandleFunc("POST "+p.prefix+"/revoke", p.revoke)
	p.mux.HandleFunc("GET "+p.prefix+"/jwks", p.jwks)
	p.mux.HandleFunc("GET "+p.prefix+"/userinfo", p.userinfo)
	p.mux.HandleFunc("POST "+p.prefix+"/userinfo", p.userinfo)
	p.mux.HandleFunc("GET "+p.prefix+"/logout", p.endSession)
	p.mux.HandleFunc("GET "+p.prefix+"/style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write(styleCSS)
	})
	return p, nil
}

// Issuer returns the provider's issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Stats returns the provider's counts so far.
func (p *Provider) Stats() Stats {
	return Stats{Refreshes: p.stats.refreshes.Load(), ReuseDetected: p.stats.reused.Load(),
		Revocations: p.stats.revocations.Load(), RefreshTokensIssued: p.stats.refreshIssued.Load()}
}

func (p *Provider) now() time.Time { return p.cfg.Now() }

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                     p.cfg.Issuer,
		"authorization_endpoint":                     p.cfg.Issuer + "/authorize",
		"token_endpoint":                             p.cfg.Issuer + "/token",
		"revocation_endpoint":                        p.cfg.Issuer + "/revoke",
		"jwks_uri":                                   p.cfg.Issuer + "/jwks",
		"userinfo_endpoint":                          p.cfg.Issuer + "/userinfo",
		"end_session_endpoint":                       p.cfg.Issuer + "/logout",
		"backchannel_logout_supported":               true,
		"backchannel_logout_session_supported":       true,
		"response_types_supported":                   []string{"code"},
		"subject_types_supported":                    []string{"public"},
		"id_token_signing_alg_values_supported":      []string{string(jose.EdDSA)},
		"code_challenge_methods_supported":           []string{"S256"},
		"scopes_supported":                           scopesSupported(),
		"grant_types_supported":                      []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported":      clientAuthMethods(),
		"revocation_endpoint_auth_methods_supported": clientAuthMethods(),
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: p.key.Public(), KeyID: p.kid, Algorithm: string(jose.EdDSA), Use: "sig"}}})
}

// Sign returns claims as a JWT signed with the provider's key, as its
// token endpoint issues ID tokens.
func (p *Provider) Sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// checkAuthorize validates the authorize parameters common to the form and
// its submission.
func (p *Provider) checkAuthorize(q url.Values) string {
	switch {
	case q.Get("response_type") != "code":
		return "response_type must be code"
	case q.Get("client_id") != p.cfg.ClientID:
		return "unknown client_id"
	case !p.redirectAllowed(q.Get("redirect_uri")):
		return "redirect_uri is not registered"
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		return "PKCE with S256 is required"
	case q.Get("state") == "":
		return "state is required"
	}
	return ""
}

func (p *Provider) redirectAllowed(uri string) bool { return registered(p.cfg.RedirectURIs, uri) }

// registered reports whether uri is in list, compared byte for byte as
// providers do; an empty list accepts any absolute http(s) URL.
func registered(list []string, uri string) bool {
	if len(list) == 0 {
		u, err := url.Parse(uri)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
	}
	return slices.Contains(list, uri)
}

func (p *Provider) authorizeForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if msg := p.checkAuthorize(q); msg != "" {
		http.Error(w, "invalid authorization request: "+msg, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = p.page.Execute(w, map[string]any{"Params": q, "Action": p.prefix + "/authorize", "Prefix": p.prefix, "AppName": p.cfg.AppName})
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	q := r.PostForm
	if msg := p.checkAuthorize(q); msg != "" {
		http.Error(w, "invalid authorization request: "+msg, http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(q.Get("redirect_uri"))
	params := back.Query()
	params.Set("state", q.Get("state"))
	if q.Get("action") == "deny" {
		params.Set("error", "access_denied")
		params.Set("error_description", "The user declined to sign in.")
	} else {
		email := strings.TrimSpace(q.Get("email"))
		name := strings.TrimSpace(q.Get("name"))
		if email == "" || !strings.Contains(email, "@") || len(email) > 254 || len(name) > 200 {
			http.Error(w, "an email address is required", http.StatusBadRequest)
			return
		}
		if name == "" {
			name = email[:strings.IndexByte(email, '@')]
		}
		code, err := p.seal(sealCode, grant{
			ClientID: q.Get("client_id"), RedirectURI: q.Get("redirect_uri"), Nonce: q.Get("nonce"),
			Challenge: q.Get("code_challenge"), Name: name, Email: email, SessionID: randomString(),
			Scope: grantedScope(q.Get("scope"), q.Get("prompt"), q.Get("access_type")), Expires: p.now().Add(CodeTTL).Unix(),
		})
		if err != nil {
			http.Error(w, "could not issue a code", http.StatusInternalServerError)
			return
		}
		params.Set("code", code)
	}
	back.RawQuery = params.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// grantedScope is what an authorization request with these scope, prompt
// and access_type parameters is granted: the supported scopes asked for,
// once each, offline_access only with prompt=consent (OpenID Connect Core
// §11). Google's way of asking, access_type=offline with prompt=consent,
// grants it too, so the app's Google settings can be tried against this
// provider.
func grantedScope(scope, prompt, accessType string) string {
	var out []string
	fields := strings.Fields(scope)
	if accessType == "offline" {
		fields = append(fields, scopeOffline)
	}
	for _, s := range fields {
		switch {
		case !slices.Contains(scopesSupported(), s), slices.Contains(out, s):
		case s == scopeOffline && !slices.Contains(strings.Fields(prompt), "consent"):
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

func (p *Provider) seal(purpose string, g grant) (string, error) {
	plain, err := json.Marshal(g)
	if err != nil {
		return "", err
	}
	out := make([]byte, p.codes.NonceSize(), p.codes.NonceSize()+len(plain)+p.codes.Overhead())
	_, _ = rand.Read(out)
	out = p.codes.Seal(out, out, plain, []byte(purpose+"|"+p.cfg.ClientID))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

func (p *Provider) open(purpose, sealed string) (grant, bool) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sealed)
	if err != nil || len(raw) < p.codes.NonceSize() {
		return grant{}, false
	}
	n := p.codes.NonceSize()
	plain, err := p.codes.Open(nil, raw[:n], raw[n:], []byte(purpose+"|"+p.cfg.ClientID))
	if err != nil {
		return grant{}, false
	}
	var g grant
	return g, json.Unmarshal(plain, &g) == nil
}

// redeem marks code used; false if it was already, or if the memory of
// redeemed codes is full of codes that have not expired yet.
func (p *Provider) redeem(code string, expires time.Time) bool {
	h := sha256.Sum256([]byte(code))
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, seen := p.redeemed[h]; seen {
		return false
	}
	if len(p.redeemed) >= maxRedeemed {
		for k, exp := range p.redeemed {
			if now.After(exp) {
				delete(p.redeemed, k)
			}
		}
		if len(p.redeemed) >= maxRedeemed {
			return false
		}
	}
	p.redeemed[h] = expires
	return true
}

// clientAuthMethods are the ways a client authenticates at the token and
// revocation endpoints (see authenticate).
func clientAuthMethods() []string { return []string{"client_secret_basic", "client_secret_post"} }

// authenticate parses the request's form and checks the client's
// credentials: HTTP Basic, form-encoded as RFC 6749 §2.3.1 has it, or
// client_id and client_secret in the form. Without them it answers
// (400 invalid_request, 401 invalid_client) and reports false.
func (p *Provider) authenticate(w http.ResponseWriter, r *http.Request) (clientID string, ok bool) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return "", false
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	if id != p.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.cfg.ClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return "", false
	}
	return id, true
}

// tokenResponse is the token endpoint's answer (RFC 6749 §5.1, OpenID
// Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	id, ok := p.authenticate(w, r)
	if !ok {
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.exchange(w, r, id)
	case "refresh_token":
		p.refresh(w, r, id)
	default:
		tokenError(w, "unsupported_grant_type")
	}
}

// exchange answers the authorization_code grant: the ID token, an access
// token and, when the login granted offline_access, a refresh token of a
// new grant.
func (p *Provider) exchange(w http.ResponseWriter, r *http.Request, clientID string) {
	code := r.PostForm.Get("code")
	g, ok := p.open(sealCode, code)
	now := p.now()
	expires := time.Unix(g.Expires, 0)
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok || now.After(expires) || g.ClientID != clientID || g.RedirectURI != r.PostForm.Get("redirect_uri"):
		tokenError(w, "invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.Challenge:
		tokenError(w, "invalid_grant")
		return
	}
	// The grant is made room for before the code is spent, so that a
	// memory too full for it leaves the code good for a retry.
	offline := slices.Contains(strings.Fields(g.Scope), scopeOffline)
	if offline {
		g.GrantID = randomString()
		if !p.track(g.GrantID, g.Email, now) {
			unavailable(w)
			return
		}
	}
	if !p.redeem(code, expires) { // single use
		if offline {
			p.forget(g.GrantID)
		}
		tokenError(w, "invalid_grant")
		return
	}
	claims := p.profile(g)
	claims["iss"], claims["aud"], claims["iat"], claims["exp"] = p.cfg.Issuer, p.cfg.ClientID, now.Unix(), now.Add(idTokenTTL).Unix()
	if g.SessionID != "" {
		claims["sid"] = g.SessionID // as providers do for clients registered for back-channel logout
	}
	if g.Nonce != "" {
		claims["nonce"] = g.Nonce
	}
	idToken, err := p.Sign(claims)
	if err != nil {
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	p.issue(w, g, 1, now, idToken)
}

// refresh answers the refresh_token grant (RFC 6749 §6) with rotation: the
// current refresh token buys new tokens and a refresh token of the next
// generation; a superseded one revokes the whole grant, as the refresh
// token has evidently been copied (OAuth 2.0 Security BCP §4.14.2).
func (p *Provider) refresh(w http.ResponseWriter, r *http.Request, clientID string) {
	g, ok := p.open(sealRefresh, r.PostForm.Get("refresh_token"))
	now := p.now()
	if !ok || g.GrantID == "" || g.Gen < 1 || g.ClientID != clientID || now.After(time.Unix(g.Expires, 0)) {
		tokenError(w, "invalid_grant")
		return
	}
	// RFC 6749 §6: a refresh may narrow the scopes, never widen them. The
	// tokens keep the grant's scopes; a narrower request is not worth the
	// bookkeeping in a test provider.
	for _, s := range strings.Fields(r.PostForm.Get("scope")) {
		if !slices.Contains(strings.Fields(g.Scope), s) {
			tokenError(w, "invalid_scope")
			return
		}
	}
	switch p.rotate(g, now) {
	case grantFull:
		unavailable(w)
		return
	case grantReused:
		p.stats.reused.Add(1)
		tokenError(w, "invalid_grant")
		return
	case grantRevoked:
		tokenError(w, "invalid_grant")
		return
	}
	p.stats.refreshes.Add(1)
	p.issue(w, g, g.Gen+1, now, "")
}

// issue answers a token request for g: an access token, a refresh token of
// generation gen when g has a grant, and idToken unless it is "".
func (p *Provider) issue(w http.ResponseWriter, g grant, gen int64, now time.Time, idToken string) {
	res := tokenResponse{TokenType: "Bearer", Scope: g.Scope, IDToken: idToken,
		// Rounded up: a lifetime under a second must not read as "no expiry".
		ExpiresIn: int64((p.cfg.AccessTokenTTL + time.Second - 1) / time.Second)}
	var err error
	res.AccessToken, err = p.seal(sealAccess, g.forToken(0, now.Add(p.cfg.AccessTokenTTL)))
	if err == nil && g.GrantID != "" {
		res.RefreshToken, err = p.seal(sealRefresh, g.forToken(gen, now.Add(p.cfg.RefreshTokenTTL)))
	}
	if err != nil {
		http.Error(w, "could not issue a token", http.StatusInternalServerError)
		return
	}
	if res.RefreshToken != "" {
		p.stats.refreshIssued.Add(1)
	}
	writeJSON(w, http.StatusOK, res)
}

// revoke is the revocation endpoint (RFC 7009): a refresh token, or an
// access token of a grant, revokes the grant, so that none of its tokens
// works any more. Whatever the token (unknown, expired, revoked already,
// malformed), the answer is 200 with an empty body (§2.2); the
// token_type_hint only spares a server a lookup, so both kinds are tried.
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	clientID, ok := p.authenticate(w, r)
	if !ok {
		return
	}
	tok := r.PostForm.Get("token")
	g, ok := p.open(sealRefresh, tok)
	if !ok {
		g, ok = p.open(sealAccess, tok)
	}
	now := p.now()
	if ok && g.GrantID != "" && g.ClientID == clientID && !now.After(time.Unix(g.Expires, 0)) {
		switch p.revokeGrant(g, now) {
		case grantFull:
			unavailable(w)
			return
		case grantRevoked:
			p.stats.revocations.Add(1)
		}
	}
	w.WriteHeader(http.StatusOK)
}

// RevokeUser revokes every live grant of the user with this email (as
// Subject compares them) that this process knows, as if the user's access
// had been withdrawn at the provider, and returns how many it revoked.
// Grants this process has not seen are not touched (see the package doc).
// It does not count as a revocation in Stats.
func (p *Provider) RevokeUser(email string) int {
	now := p.now()
	sub := Subject(email)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, st := range p.grants {
		if !st.revoked && !now.After(st.expires) && Subject(st.email) == sub {
			st.revoked = true
			n++
		}
	}
	return n
}

// What happened to a grant's state.
type grantChange int

const (
	grantRotated   grantChange = iota // moved on to the next generation
	grantReused                       // a superseded generation: now revoked
	grantRevoked                      // revoked: before (rotate), or by this call (revokeGrant)
	grantUnchanged                    // revoked already
	grantFull                         // not seen before, and no room to remember it
)

// lastExpiry is when the last token issued now expires: the grant's state
// is kept until then, so that a revocation outlives every token it stops.
func (p *Provider) lastExpiry(now time.Time) time.Time {
	return now.Add(max(p.cfg.AccessTokenTTL, p.cfg.RefreshTokenTTL))
}

// track remembers a new grant at generation 1; false if the memory of
// grants is full.
func (p *Provider) track(id, email string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.roomForGrant(now) {
		return false
	}
	p.grants[id] = &grantState{gen: 1, email: email, expires: p.lastExpiry(now)}
	return true
}

// forget drops a grant whose code turned out to be spent.
func (p *Provider) forget(id string) {
	p.mu.Lock()
	delete(p.grants, id)
	p.mu.Unlock()
}

// rotate moves g's grant on from the generation of the refresh token g to
// the next. A grant not seen here is taken at that generation, and so is
// a later generation than the one known here (another instance rotated
// it): see the package doc.
func (p *Provider) rotate(g grant, now time.Time) grantChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, known := p.grants[g.GrantID]
	switch {
	case !known:
		if !p.roomForGrant(now) {
			return grantFull
		}
		st = &grantState{email: g.Email}
		p.grants[g.GrantID] = st
	case st.revoked:
		return grantRevoked
	case g.Gen < st.gen:
		st.revoked = true
		return grantReused
	}
	st.gen = g.Gen + 1
	st.expires = p.lastExpiry(now)
	return grantRotated
}

// revokeGrant revokes the grant of the live token g: grantRevoked if it
// was live, grantUnchanged if it was revoked already.
func (p *Provider) revokeGrant(g grant, now time.Time) grantChange {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, known := p.grants[g.GrantID]
	switch {
	case !known:
		if !p.roomForGrant(now) {
			return grantFull
		}
		// Other instances may have issued its tokens until now.
		p.grants[g.GrantID] = &grantState{gen: g.Gen, revoked: true, email: g.Email, expires: p.lastExpiry(now)}
		return grantRevoked
	case st.revoked:
		return grantUnchanged
	}
	st.revoked = true
	return grantRevoked
}

// revoked reports whether this process knows the grant as revoked.
func (p *Provider) revoked(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.grants[id]
	return ok && st.revoked
}

// roomForGrant reports whether one more grant may be remembered, forgetting
// those whose tokens have all expired when the memory is full. Revoked
// grants stay until then: forgetting one early would let its tokens work
// again. The caller holds p.mu.
func (p *Provider) roomForGrant(now time.Time) bool {
	if len(p.grants) < p.maxGrants {
		return true
	}
	for id, st := range p.grants {
		if now.After(st.expires) {
			delete(p.grants, id)
		}
	}
	return len(p.grants) < p.maxGrants
}

// profile is who signed in, as the ID token and the userinfo endpoint say.
func (p *Provider) profile(g grant) map[string]any {
	return map[string]any{"sub": Subject(g.Email), "email": g.Email, "email_verified": true, "name": g.Name}
}

// Subject is the sub the provider gives the user with this email.
func Subject(email string) string { return "dev|" + strings.ToLower(email) }

// userinfo is the UserInfo endpoint: the profile of the access token's
// user (OpenID Connect Core §5.3).
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g, valid := p.open(sealAccess, strings.TrimSpace(tok))
	if !ok || !valid || p.now().After(time.Unix(g.Expires, 0)) || g.GrantID != "" && p.revoked(g.GrantID) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	writeJSON(w, http.StatusOK, p.profile(g))
}

// endSession is the end_session_endpoint (RP-initiated logout): the
// provider keeps no sessions, so it only checks the request and sends the
// browser back to the registered post_logout_redirect_uri with the state.
func (p *Provider) endSession(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	back := q.Get("post_logout_redirect_uri")
	switch {
	case q.Get("client_id") != "" && q.Get("client_id") != p.cfg.ClientID:
		http.Error(w, "invalid logout request: unknown client_id", http.StatusBadRequest)
		return
	case back == "":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("You are signed out.\n"))
		return
	case !registered(p.cfg.PostLogoutRedirectURIs, back):
		http.Error(w, "invalid logout request: post_logout_redirect_uri is not registered", http.StatusBadRequest)
		return
	}
	u, _ := url.Parse(back)
	if st := q.Get("state"); st != "" {
		params := u.Query()
		params.Set("state", st)
		u.RawQuery = params.Encode()
	}
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, code string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code})
}

// unavailable answers a request the memory of grants has no room for.
func unavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Client returns an HTTP client that reaches this provider in-process. The
// app uses it for its built-in demo provider, so the server never has to
// reach its own public URL (which behind a proxy or in a container it often
// cannot).
func (p *Provider) Client() *http.Client {
	return &http.Client{Transport: inProcess{p}, Timeout: 10 * time.Second}
}

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	res := rec.Result()
	res.Request = r
	return res, nil
}
