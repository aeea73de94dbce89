package devprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"example.com/oauth-sessions/internal/fakeclock"
)

// idp is a provider as a client sees it: its issuer, an HTTP client that
// reaches it, an OAuth 2.0 client for it, and the clock it reads.
type idp struct {
	*Provider
	issuer string
	http   *http.Client
	clock  *fakeclock.Clock
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// serve starts a provider for cfg over real HTTP, on a clock that stands
// still until the test moves it; setup, if not nil, changes the provider
// before it serves.
func serve(t *testing.T, cfg Config, setup func(*Provider)) *idp {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cfg.Issuer = "http://" + srv.Listener.Addr().String() + "/idp"
	s := withClock(t, cfg, setup)
	srv.Config.Handler = s.Provider
	srv.Start()
	t.Cleanup(srv.Close)
	s.http = srv.Client()
	s.http.CheckRedirect = noRedirect
	return s
}

// instance returns a provider for cfg reached in-process, so that two of
// them can share an issuer (and act as one provider, given one seed).
func instance(t *testing.T, cfg Config, clock *fakeclock.Clock) *idp {
	t.Helper()
	cfg.Now = clock.Now
	s := withClock(t, cfg, nil)
	s.clock = clock
	s.http = s.Client()
	s.http.CheckRedirect = noRedirect
	return s
}

func withClock(t *testing.T, cfg Config, setup func(*Provider)) *idp {
	t.Helper()
	clock := fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	cfg.ClientID, cfg.ClientSecret, cfg.RedirectURIs = "c", "s", []string{redirect}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(p)
	}
	return &idp{Provider: p, issuer: cfg.Issuer, clock: clock}
}

func (s *idp) oauth(scope string) *oauth2.Config {
	return &oauth2.Config{ClientID: "c", ClientSecret: "s", RedirectURL: redirect, Scopes: strings.Fields(scope),
		Endpoint: oauth2.Endpoint{AuthURL: s.issuer + "/authorize", TokenURL: s.issuer + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
}

func (s *idp) ctx(t *testing.T) context.Context {
	return context.WithValue(t.Context(), oauth2.HTTPClient, s.http)
}

// authorize signs email in at the form with these scope and prompt
// parameters and returns the code and its PKCE verifier.
func (s *idp) authorize(t *testing.T, email, scope, prompt string) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", prompt))
	}
	u, err := url.Parse(s.oauth(scope).AuthCodeURL("st", opts...))
	if err != nil {
		t.Fatal(err)
	}
	form := u.Query()
	form.Set("email", email)
	form.Set("name", "Ada")
	form.Set("action", "allow")
	res, err := s.http.PostForm(s.issuer+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize = %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query().Get("code"), verifier
}

func (s *idp) exchange(t *testing.T, code, verifier string) (*oauth2.Token, error) {
	t.Helper()
	return s.oauth("").Exchange(s.ctx(t), code, oauth2.VerifierOption(verifier))
}

// login signs email in with these scope and prompt parameters and returns
// the tokens.
func (s *idp) login(t *testing.T, email, scope, prompt string) *oauth2.Token {
	t.Helper()
	code, verifier := s.authorize(t, email, scope, prompt)
	tok, err := s.exchange(t, code, verifier)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

// offline signs email in for a refresh token.
func (s *idp) offline(t *testing.T, email string) *oauth2.Token {
	t.Helper()
	tok := s.login(t, email, "openid email offline_access", "consent")
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access with prompt=consent")
	}
	return tok
}

func (s *idp) refresh(t *testing.T, refreshToken string) (*oauth2.Token, error) {
	t.Helper()
	return s.oauth("").TokenSource(s.ctx(t), &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// mustRefresh refreshes and checks that the refresh token rotated.
func (s *idp) mustRefresh(t *testing.T, refreshToken string) *oauth2.Token {
	t.Helper()
	tok, err := s.refresh(t, refreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == refreshToken {
		t.Fatal("the refresh token did not rotate")
	}
	return tok
}

// refreshFails checks that refreshing fails with the OAuth error code.
func (s *idp) refreshFails(t *testing.T, refreshToken, code string, status int) {
	t.Helper()
	_, err := s.refresh(t, refreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != code || re.Response.StatusCode != status {
		t.Fatalf("refresh: %v, want %d %s", err, status, code)
	}
}

// userinfo returns the status of the UserInfo endpoint for the token.
func (s *idp) userinfo(t *testing.T, accessToken string) int {
	t.Helper()
	r, _ := http.NewRequest(http.MethodGet, s.issuer+"/userinfo", nil)
	r.Header.Set("Authorization", "Bearer "+accessToken)
	res, err := s.http.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// revoke posts form to the revocation endpoint, with Basic credentials
// unless user is "", and returns the status and the body.
func (s *idp) revoke(t *testing.T, form url.Values, user, pass string) (int, string) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, s.issuer+"/revoke", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		r.SetBasicAuth(user, pass)
	}
	res, err := s.http.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func (s *idp) grantCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.grants)
}

// TestOfflineAccessNeedsConsent: a refresh token only for offline_access
// with prompt=consent; the token response names the granted scopes and
// the access token's lifetime.
func TestOfflineAccessNeedsConsent(t *testing.T) {
	s := serve(t, Config{AccessTokenTTL: 90 * time.Second}, nil)
	issued := int64(0)
	for _, tc := range []struct {
		scope, prompt string
		refresh       bool
		granted       string
	}{
		{"openid email offline_access", "consent", true, "openid email offline_access"},
		{"openid offline_access", "login consent", true, "openid offline_access"},
		{"openid offline_access", "", false, "openid"},
		{"openid offline_access", "login", false, "openid"},
		{"openid email", "consent", false, "openid email"},
		{"openid groups offline_access openid", "consent", true, "openid offline_access"}, // unknown ignored, once each
	} {
		tok := s.login(t, "ada@example.com", tc.scope, tc.prompt)
		if (tok.RefreshToken != "") != tc.refresh {
			t.Errorf("scope %q prompt %q: refresh token %t, want %t", tc.scope, tc.prompt, tok.RefreshToken != "", tc.refresh)
		}
		if tc.refresh {
			issued++
		}
		if got := tok.Extra("scope"); got != tc.granted {
			t.Errorf("scope %q prompt %q: granted %q, want %q", tc.scope, tc.prompt, got, tc.granted)
		}
		if tok.ExpiresIn != 90 || tok.Extra("id_token") == nil || tok.TokenType != "Bearer" {
			t.Errorf("token response: expires_in %d, id_token %v, token_type %q", tok.ExpiresIn, tok.Extra("id_token") != nil, tok.TokenType)
		}
	}
	if got := s.Stats().RefreshTokensIssued; got != issued {
		t.Errorf("Stats().RefreshTokensIssued = %d, want %d", got, issued)
	}
}

// TestRefreshRotates: each refresh answers with a new refresh token, which
// is the one that works next, and an access token that works.
func TestRefreshRotates(t *testing.T) {
	s := serve(t, Config{AccessTokenTTL: time.Minute}, nil)
	tok := s.offline(t, "ada@example.com")
	seen := []string{tok.RefreshToken}
	for range 3 {
		tok = s.mustRefresh(t, tok.RefreshToken)
		if slices.Contains(seen, tok.RefreshToken) {
			t.Fatal("a refresh token came back")
		}
		seen = append(seen, tok.RefreshToken)
		if tok.Extra("scope") != "openid email offline_access" || tok.ExpiresIn != 60 || tok.TokenType != "Bearer" {
			t.Errorf("refresh answer: scope %v, expires_in %d, token_type %q", tok.Extra("scope"), tok.ExpiresIn, tok.TokenType)
		}
		if st := s.userinfo(t, tok.AccessToken); st != http.StatusOK {
			t.Errorf("userinfo with a refreshed access token: %d", st)
		}
	}
	// The answer on the wire (oauth2 fills in what it lacks), and a refresh
	// may narrow the scopes, never widen them.
	for _, tc := range []struct {
		scope  string
		status int
		want   string // the error, or the fields present
	}{
		{"openid groups", http.StatusBadRequest, "invalid_scope"},
		{"openid", http.StatusOK, "access_token expires_in refresh_token scope token_type"},
	} {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "scope": {tc.scope}}
		r, _ := http.NewRequest(http.MethodPost, s.issuer+"/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("c", "s")
		res, err := s.http.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		got := slices.Sorted(maps.Keys(body))
		if res.StatusCode != http.StatusOK {
			got = []string{fmt.Sprint(body["error"])}
		}
		if res.StatusCode != tc.status || strings.Join(got, " ") != tc.want {
			t.Errorf("refresh with scope %q: %d %v, want %d %s", tc.scope, res.StatusCode, got, tc.status, tc.want)
		}
	}
	if st := s.Stats(); st.Refreshes != 4 || st.RefreshTokensIssued != 5 || st.ReuseDetected != 0 {
		t.Errorf("Stats() = %+v, want 4 refreshes, 5 refresh tokens, no reuse", st)
	}
}

// TestReuseRevokesTheGrant: a superseded refresh token presented again
// revokes the whole grant: its newest refresh token and its access tokens
// stop working; the user's other grants do not.
func TestReuseRevokesTheGrant(t *testing.T) {
	s := serve(t, Config{}, nil)
	first := s.offline(t, "ada@example.com")
	other := s.offline(t, "ada@example.com")
	second := s.mustRefresh(t, first.RefreshToken)
	s.refreshFails(t, first.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if got := s.Stats().ReuseDetected; got != 1 {
		t.Fatalf("Stats().ReuseDetected = %d, want 1", got)
	}
	s.refreshFails(t, second.RefreshToken, "invalid_grant", http.StatusBadRequest)
	for name, access := range map[string]string{"code exchange": first.AccessToken, "refresh": second.AccessToken} {
		if st := s.userinfo(t, access); st != http.StatusUnauthorized {
			t.Errorf("userinfo with the revoked grant's access token from the %s: %d, want 401", name, st)
		}
	}
	if st := s.userinfo(t, other.AccessToken); st != http.StatusOK {
		t.Errorf("userinfo with another grant's access token: %d, want 200", st)
	}
	s.mustRefresh(t, other.RefreshToken)
	if got := s.Stats().ReuseDetected; got != 1 {
		t.Errorf("Stats().ReuseDetected = %d after a revoked grant's token, want still 1", got)
	}
}

// TestRevocationEndpoint: RFC 7009 with the token endpoint's client
// authentication; a refresh or access token of a grant revokes it; any
// other token gets 200 and changes nothing.
func TestRevocationEndpoint(t *testing.T) {
	s := serve(t, Config{}, nil)
	res, err := s.http.Get(s.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Revocation       string   `json:"revocation_endpoint"`
		Scopes           []string `json:"scopes_supported"`
		GrantTypes       []string `json:"grant_types_supported"`
		RevocationAuthNs []string `json:"revocation_endpoint_auth_methods_supported"`
	}
	_ = json.NewDecoder(res.Body).Decode(&doc)
	res.Body.Close()
	if doc.Revocation != s.issuer+"/revoke" || !slices.Contains(doc.Scopes, "offline_access") ||
		!slices.Equal(doc.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
		!slices.Equal(doc.RevocationAuthNs, []string{"client_secret_basic", "client_secret_post"}) {
		t.Errorf("discovery: %+v", doc)
	}

	byRefresh, byAccess, plain := s.offline(t, "ada@example.com"), s.offline(t, "ada@example.com"), s.login(t, "ada@example.com", "openid", "")
	for name, tc := range map[string]struct {
		form       url.Values
		user, pass string
	}{
		"wrong secret":   {url.Values{"token": {byRefresh.RefreshToken}}, "c", "wrong"},
		"other client":   {url.Values{"token": {byRefresh.RefreshToken}}, "d", "s"},
		"no credentials": {url.Values{"token": {byRefresh.RefreshToken}}, "", ""},
		"wrong in form":  {url.Values{"token": {byRefresh.RefreshToken}, "client_id": {"c"}, "client_secret": {"x"}}, "", ""},
	} {
		if st, body := s.revoke(t, tc.form, tc.user, tc.pass); st != http.StatusUnauthorized || !strings.Contains(body, "invalid_client") {
			t.Errorf("revoke with %s: %d %s, want 401 invalid_client", name, st, body)
		}
	}
	for name, tok := range map[string]string{"garbage": "not-a-token", "empty": "", "plain access token": plain.AccessToken,
		"ID token": plain.Extra("id_token").(string)} {
		if st, body := s.revoke(t, url.Values{"token": {tok}}, "c", "s"); st != http.StatusOK || body != "" {
			t.Errorf("revoke %s: %d %q, want 200 and no body", name, st, body)
		}
	}
	if st := s.Stats().Revocations; st != 0 {
		t.Fatalf("Stats().Revocations = %d before any grant was revoked", st)
	}

	if st, body := s.revoke(t, url.Values{"token": {byRefresh.RefreshToken}, "token_type_hint": {"refresh_token"}}, "c", "s"); st != http.StatusOK || body != "" {
		t.Fatalf("revoke a refresh token: %d %q", st, body)
	}
	s.refreshFails(t, byRefresh.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if st := s.userinfo(t, byRefresh.AccessToken); st != http.StatusUnauthorized {
		t.Errorf("userinfo with a revoked grant's access token: %d, want 401", st)
	}
	if st, _ := s.revoke(t, url.Values{"token": {byRefresh.RefreshToken}}, "c", "s"); st != http.StatusOK {
		t.Errorf("revoke a revoked token: %d, want 200", st)
	}
	if st := s.Stats().Revocations; st != 1 {
		t.Fatalf("Stats().Revocations = %d, want 1", st)
	}

	// An access token revokes its grant too, with client_secret_post and
	// a hint that is wrong.
	form := url.Values{"token": {byAccess.AccessToken}, "token_type_hint": {"refresh_token"}, "client_id": {"c"}, "client_secret": {"s"}}
	if st, body := s.revoke(t, form, "", ""); st != http.StatusOK || body != "" {
		t.Fatalf("revoke an access token: %d %q", st, body)
	}
	s.refreshFails(t, byAccess.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if st := s.Stats().Revocations; st != 2 {
		t.Errorf("Stats().Revocations = %d, want 2", st)
	}
	if st := s.userinfo(t, plain.AccessToken); st != http.StatusOK {
		t.Errorf("userinfo with an access token without a grant: %d, want 200", st)
	}
}

// TestRevokeUser: every grant of one user, and only those.
func TestRevokeUser(t *testing.T) {
	s := serve(t, Config{}, nil)
	ada1, ada2, bob := s.offline(t, "ada@example.com"), s.offline(t, "ada@example.com"), s.offline(t, "bob@example.com")
	ada2 = s.mustRefresh(t, ada2.RefreshToken) // a rotated grant counts once
	if n := s.RevokeUser("Ada@Example.com"); n != 2 {
		t.Fatalf("RevokeUser = %d, want 2", n)
	}
	s.refreshFails(t, ada1.RefreshToken, "invalid_grant", http.StatusBadRequest)
	s.refreshFails(t, ada2.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if st := s.userinfo(t, ada2.AccessToken); st != http.StatusUnauthorized {
		t.Errorf("userinfo for a revoked user: %d, want 401", st)
	}
	s.mustRefresh(t, bob.RefreshToken)
	if n := s.RevokeUser("ada@example.com"); n != 0 {
		t.Errorf("RevokeUser again = %d, want 0", n)
	}
	if st := s.Stats(); st.Revocations != 0 || st.ReuseDetected != 0 {
		t.Errorf("Stats() = %+v: RevokeUser counted as a revocation request or reuse", st)
	}
}

// TestTokenLifetimes: refresh tokens expire RefreshTokenTTL after they are
// issued (a rotation issues one good for as long again), access tokens
// after AccessTokenTTL.
func TestTokenLifetimes(t *testing.T) {
	s := serve(t, Config{AccessTokenTTL: 10 * time.Minute, RefreshTokenTTL: time.Hour}, nil)
	first := s.offline(t, "ada@example.com")
	s.clock.Advance(10*time.Minute + time.Second)
	if st := s.userinfo(t, first.AccessToken); st != http.StatusUnauthorized {
		t.Errorf("userinfo with an expired access token: %d, want 401", st)
	}
	s.clock.Advance(49 * time.Minute)
	second := s.mustRefresh(t, first.RefreshToken)
	s.clock.Advance(59 * time.Minute) // two hours after the first was issued
	third := s.mustRefresh(t, second.RefreshToken)
	s.clock.Advance(time.Hour + time.Second)
	s.refreshFails(t, third.RefreshToken, "invalid_grant", http.StatusBadRequest)
	// Expired, not reused: a superseded token past its lifetime is just
	// expired, and does not revoke anything.
	s.refreshFails(t, first.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if st := s.Stats(); st.ReuseDetected != 0 || st.Refreshes != 2 {
		t.Errorf("Stats() = %+v, want 2 refreshes and no reuse", st)
	}
}

// TestRotationStateIsPerProcess: instances sharing a seed accept each
// other's refresh tokens and pick the grant up at the generation shown;
// reuse and revocation are seen only by the instance they happen at, as
// the package doc says.
func TestRotationStateIsPerProcess(t *testing.T) {
	cfg := Config{Issuer: issuer, Seed: []byte("0123456789abcdef0123456789abcdef")}
	clock := fakeclock.New(time.Now())
	a, b := instance(t, cfg, clock), instance(t, cfg, clock)
	gen1 := a.offline(t, "ada@example.com")
	gen2 := b.mustRefresh(t, gen1.RefreshToken) // b had not seen the grant
	gen3 := a.mustRefresh(t, gen2.RefreshToken) // a had it at generation 1
	a.refreshFails(t, gen1.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if a.Stats().ReuseDetected != 1 || b.Stats().ReuseDetected != 0 {
		t.Fatalf("reuse detected: a %d, b %d, want 1 and 0", a.Stats().ReuseDetected, b.Stats().ReuseDetected)
	}
	a.refreshFails(t, gen3.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if a.userinfo(t, gen3.AccessToken) != http.StatusUnauthorized || b.userinfo(t, gen3.AccessToken) != http.StatusOK {
		t.Error("the revoked grant's access token: want refused by a only")
	}
	b.mustRefresh(t, gen3.RefreshToken) // b knows nothing of the revocation
}

// TestGrantMemoryIsBounded: when the memory of grants is full, expired
// grants are forgotten; live ones (revoked ones too) are not, and a new
// grant is refused with 503 without spending its code.
func TestGrantMemoryIsBounded(t *testing.T) {
	s := serve(t, Config{AccessTokenTTL: 10 * time.Second, RefreshTokenTTL: 30 * time.Second}, func(p *Provider) { p.maxGrants = 2 })
	s.offline(t, "ada@example.com")
	s.offline(t, "bob@example.com")
	code, verifier := s.authorize(t, "eve@example.com", "openid offline_access", "consent")
	_, err := s.exchange(t, code, verifier)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable || re.ErrorCode != "temporarily_unavailable" {
		t.Fatalf("a third grant in a memory of two: %v, want 503 temporarily_unavailable", err)
	}
	if tok := s.login(t, "eve@example.com", "openid", ""); tok.AccessToken == "" {
		t.Error("a login without offline access was refused with the memory of grants full")
	}
	foreign, err := s.seal(sealRefresh, grant{ClientID: "c", Email: "eve@example.com", GrantID: "from-another-instance", Gen: 1,
		Expires: s.clock.Now().Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	s.refreshFails(t, foreign, "temporarily_unavailable", http.StatusServiceUnavailable)

	s.clock.Advance(31 * time.Second) // the two grants expire; the code has not
	eve, err := s.exchange(t, code, verifier)
	if err != nil || eve.RefreshToken == "" {
		t.Fatalf("the refused code once expired grants can be forgotten: %v", err)
	}
	if _, err := s.exchange(t, code, verifier); err == nil {
		t.Fatal("a code redeemed twice")
	}
	if n := s.grantCount(); n != 1 {
		t.Fatalf("%d grants remembered after the purge and a spent code, want 1", n)
	}
	if st, _ := s.revoke(t, url.Values{"token": {eve.RefreshToken}}, "c", "s"); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	s.offline(t, "bob@example.com")
	code, verifier = s.authorize(t, "eve@example.com", "openid offline_access", "consent")
	if _, err := s.exchange(t, code, verifier); !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a grant in place of a revoked one still live: %v, want 503", err)
	}
	s.refreshFails(t, eve.RefreshToken, "invalid_grant", http.StatusBadRequest)
	if n := s.grantCount(); n != 2 {
		t.Errorf("%d grants remembered, want the bound 2", n)
	}
}
