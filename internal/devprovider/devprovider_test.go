package devprovider

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	issuer   = "http://idp.test/demo-idp"
	redirect = "http://app.test/api/auth/google/callback"
	verifier = "a-long-enough-pkce-verifier-0123456789abcdefghijk"
)

func newProvider(t *testing.T, seed string) *Provider {
	t.Helper()
	p, err := New(Config{Issuer: issuer, ClientID: "c", ClientSecret: "s", RedirectURIs: []string{redirect}, Seed: []byte(seed)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// authorize submits the login form and returns the code.
func authorize(t *testing.T, p http.Handler) string {
	t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	form := url.Values{"response_type": {"code"}, "client_id": {"c"}, "redirect_uri": {redirect}, "state": {"st"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"nonce": {"n"}, "name": {"Ada"}, "email": {"ada@example.com"}, "action": {"allow"}}
	r := httptest.NewRequest(http.MethodPost, "/demo-idp/authorize", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	loc, err := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize = %d %q", w.Code, w.Header().Get("Location"))
	}
	return loc.Query().Get("code")
}

// redeem exchanges code and returns the status and the token error, if any.
func redeem(t *testing.T, p http.Handler, code string) (int, string) {
	t.Helper()
	status, e, _ := exchange(t, p, code)
	return status, e
}

// exchange redeems code and returns the status, the token error and the
// access token.
func exchange(t *testing.T, p http.Handler, code string) (int, string, string) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {"c"}, "client_secret": {"s"}}
	r := httptest.NewRequest(http.MethodPost, "/demo-idp/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	var body struct {
		Error       string `json:"error"`
		IDToken     string `json:"id_token"`
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if w.Code == http.StatusOK && body.IDToken == "" {
		t.Fatalf("token response without an ID token: %s", w.Body)
	}
	return w.Code, body.Error, body.AccessToken
}

// TestSameSeedActsAsOneProvider: the demo login behind a load balancer.
// A code issued by one instance is redeemed by another given the same seed,
// once; a provider with another seed does not accept it.
func TestSameSeedActsAsOneProvider(t *testing.T) {
	seed := "0123456789abcdef0123456789abcdef"
	a, b := newProvider(t, seed), newProvider(t, seed)
	other := newProvider(t, "fedcba9876543210fedcba9876543210")
	code := authorize(t, a)
	if st, e := redeem(t, other, code); st != http.StatusBadRequest || e != "invalid_grant" {
		t.Fatalf("code redeemed at a provider with another seed: %d %q", st, e)
	}
	if st, e := redeem(t, b, code); st != http.StatusOK {
		t.Fatalf("code of instance a at instance b: %d %q, want 200", st, e)
	}
	if st, e := redeem(t, b, code); st != http.StatusBadRequest || e != "invalid_grant" {
		t.Fatalf("second redemption: %d %q, want invalid_grant", st, e)
	}
	var ka, kb json.RawMessage
	for p, out := range map[*Provider]*json.RawMessage{a: &ka, b: &kb} {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/demo-idp/jwks", nil))
		*out = w.Body.Bytes()
	}
	if string(ka) != string(kb) {
		t.Fatal("instances with the same seed publish different keys")
	}
}

func TestExpiredAndForgedCodes(t *testing.T) {
	p := newProvider(t, "0123456789abcdef0123456789abcdef")
	expired, err := p.seal(sealCode, grant{ClientID: "c", RedirectURI: redirect, Challenge: "x", Email: "a@b", Expires: time.Now().Add(-time.Second).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	for name, code := range map[string]string{"expired": expired, "garbage": "not-a-code", "empty": ""} {
		if st, e := redeem(t, p, code); st != http.StatusBadRequest || e != "invalid_grant" {
			t.Errorf("%s code: %d %q, want invalid_grant", name, st, e)
		}
	}
}

// TestRedeemedCodesAreBounded: the memory of redeemed codes forgets the
// expired ones when full, and refuses rather than grows past its bound.
func TestRedeemedCodesAreBounded(t *testing.T) {
	p := newProvider(t, "0123456789abcdef0123456789abcdef")
	past := time.Now().Add(-time.Minute)
	for i := range maxRedeemed {
		p.redeemed[[32]byte{byte(i), byte(i >> 8), byte(i >> 16)}] = past
	}
	if !p.redeem("fresh", time.Now().Add(time.Minute)) {
		t.Fatal("a fresh code was refused though every remembered code had expired")
	}
	if n := len(p.redeemed); n != 1 {
		t.Fatalf("%d codes remembered after the purge, want 1", n)
	}
	future := time.Now().Add(time.Minute)
	for i := range maxRedeemed - 1 {
		p.redeemed[[32]byte{byte(i), byte(i >> 8), byte(i >> 16), 1}] = future
	}
	if p.redeem("one-more", future) {
		t.Fatal("the memory of redeemed codes grew past its bound")
	}
	if n := len(p.redeemed); n != maxRedeemed {
		t.Fatalf("%d codes remembered, want the bound %d", n, maxRedeemed)
	}
}

// TestUserInfo: the access token from the token endpoint opens the
// profile at the userinfo endpoint; a code, garbage or nothing does not.
func TestUserInfo(t *testing.T) {
	p := newProvider(t, "0123456789abcdef0123456789abcdef")
	code := authorize(t, p)
	status, _, access := exchange(t, p, code)
	if status != http.StatusOK || access == "" {
		t.Fatalf("token response: %d, access token %q", status, access)
	}
	for name, bearer := range map[string]string{"access token": access, "code": code, "garbage": "x", "none": ""} {
		r := httptest.NewRequest(http.MethodGet, "/demo-idp/userinfo", nil)
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		var profile map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &profile)
		if name == "access token" {
			if w.Code != http.StatusOK || profile["sub"] != Subject("ada@example.com") || profile["email"] != "ada@example.com" || profile["name"] != "Ada" {
				t.Errorf("userinfo with the access token: %d %v", w.Code, profile)
			}
			continue
		}
		if w.Code != http.StatusUnauthorized || profile["sub"] != nil {
			t.Errorf("userinfo with %s: %d %v, want 401 and no profile", name, w.Code, profile)
		}
	}
}

// TestEndSession: the end_session_endpoint sends the browser back only to
// a registered post_logout_redirect_uri, with the state.
func TestEndSession(t *testing.T) {
	p, err := New(Config{Issuer: issuer, ClientID: "c", ClientSecret: "s", RedirectURIs: []string{redirect},
		PostLogoutRedirectURIs: []string{"http://app.test/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query    string
		status   int
		location string
	}{
		{"client_id=c&post_logout_redirect_uri=http%3A%2F%2Fapp.test%2F&state=xyz", http.StatusFound, "http://app.test/?state=xyz"},
		{"client_id=c&post_logout_redirect_uri=http%3A%2F%2Fevil.test%2F&state=xyz", http.StatusBadRequest, ""},
		{"client_id=c&post_logout_redirect_uri=http%3A%2F%2Fapp.test&state=xyz", http.StatusBadRequest, ""}, // not byte for byte
		{"client_id=other&post_logout_redirect_uri=http%3A%2F%2Fapp.test%2F", http.StatusBadRequest, ""},
		{"client_id=c", http.StatusOK, ""},
	} {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/demo-idp/logout?"+tc.query, nil))
		if w.Code != tc.status || w.Header().Get("Location") != tc.location {
			t.Errorf("logout?%s = %d %q, want %d %q", tc.query, w.Code, w.Header().Get("Location"), tc.status, tc.location)
		}
	}
}
