// Package devprovidertest is what tests need around the development
// provider and nothing the app ships: a provider whose answers a test can
// spoil (ID token claims, signatures, "alg": "none", discovery, UserInfo)
// or slow down (refresh-token grants), logout tokens it signs, and a plain
// HTTP client that signs in through it (SignIn).
package devprovidertest

import (
	"bytes"
	"context"
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

	refreshStatus int
	refreshDelay  time.Duration
	now           func() time.Time
}

// New returns a provider for cfg.
func New(cfg devprovider.Config) (*Provider, error) {
	p, err := devprovider.New(cfg)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Provider{Provider: p, now: now}, nil
}

// SetRefreshFailure makes every refresh-token grant at the token endpoint
// fail with this HTTP status (0: answer as usual) and the matching OAuth
// error: invalid_grant for 400, invalid_client for 401,
// temporarily_unavailable for 503, server_error otherwise. The provider
// never sees the request, so the refresh token stays good for a retry.
func (p *Provider) SetRefreshFailure(status int) {
	p.mu.Lock()
	p.refreshStatus = status
	p.mu.Unlock()
}

// SetRefreshDelay makes every refresh-token grant answer d late (0: at
// once). The provider has rotated the grant before the wait, so a client
// that gives up during it (its context ends) has lost the new refresh
// token, and the one it holds is now superseded.
func (p *Provider) SetRefreshDelay(d time.Duration) {
	p.mu.Lock()
	p.refreshDelay = d
	p.mu.Unlock()
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
	refreshStatus, refreshDelay := p.refreshStatus, p.refreshDelay
	p.mu.Unlock()
	if (refreshStatus != 0 || refreshDelay > 0) && isRefresh(r) {
		p.refresh(w, r, refreshStatus, refreshDelay)
		return
	}
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
	replay(w, rec, body)
}

// replay writes the recorded answer rec with body in place of its own.
func replay(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(bytes.TrimSpace(body))
}

// isRefresh reports whether r is a refresh-token grant at the token
// endpoint. It parses the form, which the provider then finds parsed.
func isRefresh(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") &&
		r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token"
}

// refresh answers a refresh-token grant after delay: with the error for
// status when it is not 0, else with the provider's answer, made before
// the wait.
func (p *Provider) refresh(w http.ResponseWriter, r *http.Request, status int, delay time.Duration) {
	rec := httptest.NewRecorder()
	if status == 0 {
		p.Provider.ServeHTTP(rec, r)
	} else {
		code := map[int]string{http.StatusBadRequest: "invalid_grant", http.StatusUnauthorized: "invalid_client",
			http.StatusServiceUnavailable: "temporarily_unavailable"}[status]
		if code == "" {
			code = "server_error"
		}
		rec.Header().Set("Content-Type", "application/json")
		rec.Header().Set("Cache-Control", "no-store")
		rec.WriteHeader(status)
		_ = json.NewEncoder(rec).Encode(map[string]string{"error": code})
	}
	if !sleep(r.Context(), delay) {
		return // the client is gone: nobody to answer
	}
	replay(w, rec, rec.Body.Bytes())
}

// sleep waits d, or less if ctx ends first (then false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
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
	now := p.now()
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
