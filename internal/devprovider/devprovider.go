// Package devprovider is a small OpenID Connect provider with a real login
// form. The app mounts it for the credential-free demo login in development,
// cmd/devidp runs it on its own, and the tests sign in against it. It is not
// an identity provider for production: anyone can sign in as anyone.
//
// It keeps no state per login: an authorization code is the grant itself,
// sealed under a key derived from Config.Seed, and the signing key comes
// from the same seed. Instances given the same seed therefore act as one
// provider, which is what lets the demo login work behind a load balancer
// that sends the form and the callback to different app instances. The
// only memory it keeps is the set of codes already redeemed, until they
// expire, bounded.
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
	// codes (at least 32 bytes). Providers with the same seed and issuer
	// accept each other's codes and tokens. Empty: a random seed.
	Seed []byte
	// AppName, when set, is shown on the login page ("Signing in to ...").
	AppName string
	// PostLogoutRedirectURIs lists where its end_session_endpoint may send
	// the browser back to; empty accepts any http(s) URL (tests).
	PostLogoutRedirectURIs []string
}

// CodeTTL is how long an authorization code may wait for its redemption.
const CodeTTL = time.Minute

// maxRedeemed bounds the memory of redeemed codes: at most this many are
// remembered until they expire. A code is only redeemed by the client
// with its secret, so reaching it means the client itself runs wild.
const maxRedeemed = 100_000

// Provider is an http.Handler serving discovery, the authorize form, the
// token endpoint and the signing keys, all below the issuer's path.
type Provider struct {
	cfg    Config
	key    ed25519.PrivateKey
	kid    string
	signer jose.Signer
	codes  cipher.AEAD
	prefix string
	page   *template.Template
	mux    *http.ServeMux

	mu       sync.Mutex
	redeemed map[[32]byte]time.Time // code hash → when it expires anyway
}

// grant is what an authorization code carries, sealed; an access token
// carries the same, sealed for the userinfo endpoint.
type grant struct {
	ClientID    string `json:"c"`
	RedirectURI string `json:"r"`
	Nonce       string `json:"n,omitempty"`
	Challenge   string `json:"pk"`
	Name        string `json:"nm"`
	Email       string `json:"em"`
	SessionID   string `json:"sid"`
	Expires     int64  `json:"x"`
}

// What a sealed value is for, bound into its seal, so a code is never
// accepted as an access token or the other way round.
const (
	sealCode   = "code"
	sealAccess = "access"
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
		prefix: strings.TrimRight(u.Path, "/"), redeemed: map[[32]byte]time.Time{}}
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

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.cfg.Issuer,
		"authorization_endpoint":                p.cfg.Issuer + "/authorize",
		"token_endpoint":                        p.cfg.Issuer + "/token",
		"jwks_uri":                              p.cfg.Issuer + "/jwks",
		"userinfo_endpoint":                     p.cfg.Issuer + "/userinfo",
		"end_session_endpoint":                  p.cfg.Issuer + "/logout",
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.EdDSA)},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
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
			Expires: time.Now().Add(CodeTTL).Unix(),
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
	now := time.Now()
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

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else {
		// RFC 6749 2.3.1: Basic credentials are form-encoded.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	if id != p.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.cfg.ClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		tokenError(w, "unsupported_grant_type")
		return
	}
	code := r.PostForm.Get("code")
	g, ok := p.open(sealCode, code)
	expires := time.Unix(g.Expires, 0)
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !ok || time.Now().After(expires) || g.ClientID != id || g.RedirectURI != r.PostForm.Get("redirect_uri"):
		tokenError(w, "invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.Challenge:
		tokenError(w, "invalid_grant")
		return
	case !p.redeem(code, expires): // single use
		tokenError(w, "invalid_grant")
		return
	}
	now := time.Now()
	claims := p.profile(g)
	claims["iss"], claims["aud"], claims["iat"], claims["exp"] = p.cfg.Issuer, p.cfg.ClientID, now.Unix(), now.Add(5*time.Minute).Unix()
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
	g.Expires = now.Add(5 * time.Minute).Unix()
	access, err := p.seal(sealAccess, g)
	if err != nil {
		http.Error(w, "could not issue a token", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": idToken,
	})
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
	if !ok || !valid || time.Now().After(time.Unix(g.Expires, 0)) {
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
