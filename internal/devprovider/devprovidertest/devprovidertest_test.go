package devprovidertest_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
)

const redirect = "http://app.test/callback"

// start serves a provider and returns it with an OAuth 2.0 client for it
// and a context that carries the HTTP client reaching it.
func start(t *testing.T) (*devprovidertest.Provider, *oauth2.Config, context.Context) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	p, err := devprovidertest.New(devprovider.Config{Issuer: issuer, ClientID: "c", ClientSecret: "s", RedirectURIs: []string{redirect}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p
	srv.Start()
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg := &oauth2.Config{ClientID: "c", ClientSecret: "s", RedirectURL: redirect, Scopes: []string{"openid", "offline_access"},
		Endpoint: oauth2.Endpoint{AuthURL: issuer + "/authorize", TokenURL: issuer + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	return p, cfg, context.WithValue(t.Context(), oauth2.HTTPClient, client)
}

// login signs in at the form for a refresh token.
func login(t *testing.T, cfg *oauth2.Config, ctx context.Context) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	u, _ := url.Parse(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "consent")))
	form := u.Query()
	form.Set("email", "ada@example.com")
	form.Set("action", "allow")
	resp, err := ctx.Value(oauth2.HTTPClient).(*http.Client).PostForm(cfg.Endpoint.AuthURL, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func refresh(ctx context.Context, cfg *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// TestRefreshFailure: the hook fails refresh-token grants with the status
// and its OAuth error, leaves code exchanges alone, and spares the refresh
// token, which works once the hook is off.
func TestRefreshFailure(t *testing.T) {
	p, cfg, ctx := start(t)
	for status, code := range map[int]string{http.StatusServiceUnavailable: "temporarily_unavailable",
		http.StatusBadRequest: "invalid_grant", http.StatusInternalServerError: "server_error"} {
		p.SetRefreshFailure(status)
		tok := login(t, cfg, ctx) // code exchanges are not failed
		_, err := refresh(ctx, cfg, tok.RefreshToken)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != status || re.ErrorCode != code {
			t.Errorf("SetRefreshFailure(%d): refresh %v, want %d %s", status, err, status, code)
		}
		p.SetRefreshFailure(0)
		if _, err := refresh(ctx, cfg, tok.RefreshToken); err != nil {
			t.Errorf("after SetRefreshFailure(%d), then 0: %v", status, err)
		}
	}
	if st := p.Stats(); st.Refreshes != 3 || st.ReuseDetected != 0 {
		t.Errorf("Stats() = %+v: the failed refreshes reached the provider", st)
	}
}

// TestRefreshDelay: the hook answers refresh-token grants late, after the
// provider rotated; a client that gives up meanwhile holds a superseded
// refresh token. The delay is real time: it is what the hook does.
func TestRefreshDelay(t *testing.T) {
	p, cfg, ctx := start(t)
	tok := login(t, cfg, ctx)
	const delay = 100 * time.Millisecond
	p.SetRefreshDelay(delay)
	began := time.Now()
	next, err := refresh(ctx, cfg, tok.RefreshToken)
	if err != nil || time.Since(began) < delay {
		t.Fatalf("delayed refresh: %v after %v, want success after %v", err, time.Since(began), delay)
	}
	short, cancel := context.WithTimeout(ctx, delay/5)
	defer cancel()
	if _, err := refresh(short, cfg, next.RefreshToken); err == nil {
		t.Fatal("a refresh answered within a deadline shorter than the delay")
	}
	// The provider rotated on receipt; wait for that on a slow machine.
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Refreshes < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	p.SetRefreshDelay(0)
	_, err = refresh(ctx, cfg, next.RefreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || p.Stats().ReuseDetected != 1 {
		t.Errorf("the refresh token whose answer was lost: %v, reuse %d; want invalid_grant, reuse 1", err, p.Stats().ReuseDetected)
	}
}
