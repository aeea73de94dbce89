// Package devprovidertest is what tests need around the development
// provider and nothing the app ships: a provider whose answers a test can
// spoil (ID token claims, signatures, "alg": "none", discovery, UserInfo),
// logout tokens it signs, and a plain HTTP client that signs in through it
// (SignIn).
package devprovidertest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"example.com/oauth-sessions/internal/devprovider"
)

// Provider is a devprovider.Provider whose JSON answers pass through hooks
// the test sets, each time.
type Provider struct {
	*devprovider.Provider

	mu          sync.Mutex
	tamper      func(claims map[string]any)
	tamperToken func(idToken string) string
	discovery   func(doc map[string]any)
	userInfo    func(profile map[string]any)
}

// New returns a provider for cfg.
func New(cfg devprovider.Config) (*Provider, error) {
	p, err := devprovider.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Provider{Provider: p}, nil
}

// SetTamper makes the provider change the ID token's claims before it signs
// them (nil: issue them as they are).
func (p *Provider) SetTamper(f func(claims map[string]any)) {
	p.mu.Lock()
	p.tamper = f
	p.mu.Unlock()
}

// SetTamperToken makes the provider replace the signed ID token (a bad
// signature, an unsigned token).
func (p *Provider) SetTamperToken(f func(idToken string) string) {
	p.mu.Lock()
	p.tamperToken = f
	p.mu.Unlock()
}

// SetDiscovery makes the provider change its discovery document (remove
// end_session_endpoint, say). Clients discover once: set it first.
func (p *Provider) SetDiscovery(f func(doc map[string]any)) {
	p.mu.Lock()
	p.discovery = f
	p.mu.Unlock()
}

// SetUserInfo makes the provider change its UserInfo answers (another
// subject, say).
func (p *Provider) SetUserInfo(f func(profile map[string]any)) {
	p.mu.Lock()
	p.userInfo = f
	p.mu.Unlock()
}

// WithoutProfileInIDToken is a SetTamper hook for a provider that keeps
// email, email_verified and name for its UserInfo endpoint, as OpenID
// Connect allows with response_type=code.
func WithoutProfileInIDToken(claims map[string]any) {
	delete(claims, "email")
	delete(claims, "email_verified")
	delete(claims, "name")
}

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	tamper, tamperToken, discovery, userInfo := p.tamper, p.tamperToken, p.discovery, p.userInfo
	p.mu.Unlock()
	var change func(map[string]any)
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") && (tamper != nil || tamperToken != nil):
		change = func(res map[string]any) {
			if tok, ok := res["id_token"].(string); ok {
				if tamper != nil {
					tok = p.resign(tok, tamper)
				}
				if tamperToken != nil {
					tok = tamperToken(tok)
				}
				res["id_token"] = tok
			}
		}
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") && discovery != nil:
		change = discovery
	case strings.HasSuffix(r.URL.Path, "/userinfo") && userInfo != nil:
		change = userInfo
	default:
		p.Provider.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	p.Provider.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	var res map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(body, &res) == nil {
		change(res)
		body, _ = json.Marshal(res)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(bytes.TrimSpace(body))
}

// resign decodes the claims of a token this provider signed, lets f change
// them and signs them again.
func (p *Provider) resign(tok string, f func(map[string]any)) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return tok
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tok
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return tok
	}
	f(claims)
	out, err := p.Sign(claims)
	if err != nil {
		return tok
	}
	return out
}

// BackchannelLogoutEvent is the event a logout token carries.
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutClaims returns the claims of a valid back-channel logout token
// (OpenID Connect Back-Channel Logout 1.0 §2.4) from this provider to the
// client audience, about sub or sid (either may be ""): a test spoils them
// before it signs them with Sign.
func (p *Provider) LogoutClaims(audience, sub, sid string) map[string]any {
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	now := time.Now()
	claims := map[string]any{
		"iss": p.Issuer(), "aud": audience, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti":    base64.RawURLEncoding.EncodeToString(jti),
		"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
	}
	if sub != "" {
		claims["sub"] = sub
	}
	if sid != "" {
		claims["sid"] = sid
	}
	return claims
}

// Unsigned returns claims as a JWT with "alg": "none" and no signature.
func Unsigned(claims map[string]any) string {
	payload, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(payload) + "."
}
