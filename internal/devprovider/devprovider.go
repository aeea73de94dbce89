// Package devprovider is a small OpenID Connect provider with a real login
// form. The app mounts it for the credential-free demo login in development,
// and the tests run it as the provider the app signs in against. It is not
// an identity provider for production: anyone can sign in as anyone.
package devprovider

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

//go:embed login.html
var loginHTML string

// Config configures a Provider.
type Config struct {
	// Issuer is the provider's public URL, e.g. http://localhost:8080/demo-idp.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURIs lists the accepted redirect_uri values; empty accepts any
	// (for a test provider whose clients' ports are not known in advance).
	RedirectURIs []string
	// Tamper, when set, may change the ID token's claims before signing:
	// tests use it to send a wrong nonce, audience, issuer or expiry.
	Tamper func(claims map[string]any)
	// TamperToken, when set, may replace the signed ID token: tests use it
	// to send a bad signature or an unsigned ("alg": "none") token.
	TamperToken func(idToken string) string
}

// Provider is an http.Handler serving discovery, the authorize form, the
// token endpoint and the signing keys, all below the issuer's path.
type Provider struct {
	cfg    Config
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
	prefix string
	page   *template.Template
	mux    *http.ServeMux

	mu    sync.Mutex
	codes map[string]grant
}

type grant struct {
	clientID, redirectURI, nonce, challenge string
	user                                    user
	expires                                 time.Time
}

type user struct{ name, email string }

// New returns a provider with a fresh RSA signing key.
func New(cfg Config) (*Provider, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, key: key, kid: randomString()[:8], prefix: strings.TrimRight(u.Path, "/"), codes: map[string]grant{}}
	p.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
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
	return p, nil
}

// SetTamper replaces the claim hook (tests switch it between logins).
func (p *Provider) SetTamper(f func(map[string]any)) {
	p.mu.Lock()
	p.cfg.Tamper = f
	p.mu.Unlock()
}

// SetTamperToken replaces the token hook.
func (p *Provider) SetTamperToken(f func(string) string) {
	p.mu.Lock()
	p.cfg.TamperToken = f
	p.mu.Unlock()
}

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
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}})
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

func (p *Provider) redirectAllowed(uri string) bool {
	if len(p.cfg.RedirectURIs) == 0 {
		u, err := url.Parse(uri)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
	}
	for _, r := range p.cfg.RedirectURIs {
		if r == uri {
			return true
		}
	}
	return false
}

func (p *Provider) authorizeForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if msg := p.checkAuthorize(q); msg != "" {
		http.Error(w, "invalid authorization request: "+msg, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = p.page.Execute(w, map[string]any{"Params": q, "Action": p.prefix + "/authorize"})
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
		if email == "" || !strings.Contains(email, "@") {
			http.Error(w, "an email address is required", http.StatusBadRequest)
			return
		}
		if name == "" {
			name = email[:strings.IndexByte(email, '@')]
		}
		code := randomString()
		p.mu.Lock()
		p.codes[code] = grant{
			clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), nonce: q.Get("nonce"),
			challenge: q.Get("code_challenge"), user: user{name: name, email: email}, expires: time.Now().Add(time.Minute),
		}
		p.mu.Unlock()
		params.Set("code", code)
	}
	back.RawQuery = params.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
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
	p.mu.Lock()
	g, found := p.codes[code]
	delete(p.codes, code) // single use, whatever happens next
	tamper, tamperToken := p.cfg.Tamper, p.cfg.TamperToken
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case !found || time.Now().After(g.expires) || g.clientID != id || g.redirectURI != r.PostForm.Get("redirect_uri"):
		tokenError(w, "invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		tokenError(w, "invalid_grant")
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.cfg.Issuer, "aud": p.cfg.ClientID, "sub": "dev|" + strings.ToLower(g.user.email),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"email": g.user.email, "email_verified": true, "name": g.user.name,
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	if tamper != nil {
		tamper(claims)
	}
	payload, _ := json.Marshal(claims)
	jws, err := p.signer.Sign(payload)
	if err != nil {
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	idToken, _ := jws.CompactSerialize()
	if tamperToken != nil {
		idToken = tamperToken(idToken)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": randomString(), "token_type": "Bearer", "expires_in": 300, "id_token": idToken,
	})
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
