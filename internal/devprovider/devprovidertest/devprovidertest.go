// Package devprovidertest is what tests need around the development
// provider and nothing the app ships: a provider whose ID tokens a test can
// spoil (wrong nonce, audience, signature, "alg": "none"), and a plain HTTP
// client that signs in through it (SignIn).
package devprovidertest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"example.com/oauth-sessions/internal/devprovider"
)

// Provider is a devprovider.Provider whose token responses pass through
// hooks the test sets, each time.
type Provider struct {
	*devprovider.Provider

	mu          sync.Mutex
	tamper      func(claims map[string]any)
	tamperToken func(idToken string) string
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

func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	tamper, tamperToken := p.tamper, p.tamperToken
	p.mu.Unlock()
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/token") || (tamper == nil && tamperToken == nil) {
		p.Provider.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	p.Provider.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	var res map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(body, &res) == nil {
		if tok, ok := res["id_token"].(string); ok {
			if tamper != nil {
				tok = p.resign(tok, tamper)
			}
			if tamperToken != nil {
				tok = tamperToken(tok)
			}
			res["id_token"] = tok
			body, _ = json.Marshal(res)
		}
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
