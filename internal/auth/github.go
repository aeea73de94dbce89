package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// GitHubConfig configures sign-in with GitHub (OAuth 2.0, not OpenID
// Connect): an OAuth app's credentials, and where GitHub is (GitHub
// Enterprise Server: URL https://HOST, APIURL https://HOST/api/v3).
type GitHubConfig struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string
	URL          string // https://github.com
	APIURL       string // https://api.github.com
	// Scopes are added to read:user and user:email, the two sign-in needs.
	Scopes     []string
	HTTPClient *http.Client
}

// GitHub signs in with GitHub: the authorization-code flow with state and
// PKCE, then the profile from its API. The identity is the account's
// numeric id; the email is its primary one, and only when verified.
type GitHub struct {
	cfg    GitHubConfig
	oauth2 *oauth2.Config
}

var _ APIProvider = (*GitHub)(nil)

// NewGitHub returns the provider; it contacts GitHub only to sign in.
func NewGitHub(cfg GitHubConfig) *GitHub {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	cfg.HTTPClient = limitResponses(cfg.HTTPClient, 0)
	cfg.URL, cfg.APIURL = strings.TrimRight(cfg.URL, "/"), strings.TrimRight(cfg.APIURL, "/")
	return &GitHub{cfg: cfg, oauth2: &oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		RedirectURL:  cfg.RedirectURL,
		Endpoint: oauth2.Endpoint{
			AuthURL:  cfg.URL + "/login/oauth/authorize",
			TokenURL: cfg.URL + "/login/oauth/access_token",
			// The credentials in the form: GitHub's documented way.
			AuthStyle: oauth2.AuthStyleInParams,
		},
		Scopes: append([]string{"read:user", "user:email"}, cfg.Scopes...),
	}}
}

// Name implements Provider.
func (g *GitHub) Name() string { return "github" }

// Label implements Provider.
func (g *GitHub) Label() string { return "GitHub" }

// Issuer implements Provider: GitHub sends no iss with its authorization
// response; if one ever comes, it must be GitHub's own URL.
func (g *GitHub) Issuer() string { return g.cfg.URL }

// Start implements Provider.
func (g *GitHub) Start(_ context.Context, returnTo string) (Flow, string, error) {
	f := newFlow(g.Name(), returnTo, false)
	return f, g.oauth2.AuthCodeURL(f.State, oauth2.S256ChallengeOption(f.Verifier)), nil
}

// Finish implements Provider. x/oauth2 reads the token endpoint's answer
// whether GitHub sends it form-encoded or as JSON, and turns GitHub's
// "200 with an error field" (a bad or used code) into an error.
func (g *GitHub) Finish(ctx context.Context, f Flow, code string) (Result, error) {
	ctx, cuts := watchCuts(ctx)
	res, err := g.finish(ctx, f, code)
	if err == nil {
		err = checkSizes(res)
	}
	if err != nil {
		return Result{}, orTooLarge(cuts, err)
	}
	return res, nil
}

func (g *GitHub) finish(ctx context.Context, f Flow, code string) (Result, error) {
	tok, err := g.oauth2.Exchange(context.WithValue(ctx, oauth2.HTTPClient, g.cfg.HTTPClient), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return Result{}, exchangeError(err)
	}
	var user struct {
		ID        int64  `json:"id"`
		Login     string `json:"login"`
		Name      string `json:"name"`
		AvatarURL string `json:"avatar_url"`
	}
	if err := g.api(ctx, tok, "/user", &user); err != nil {
		return Result{}, err
	}
	if user.ID == 0 {
		return Result{}, fmt.Errorf("%w: GitHub's /user has no id", ErrRejected)
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := g.api(ctx, tok, "/user/emails", &emails); err != nil {
		return Result{}, err
	}
	email := ""
	for _, e := range emails {
		if e.Primary && e.Verified {
			email = e.Email
		}
	}
	if email == "" {
		return Result{}, fmt.Errorf("%w: GitHub account %s", ErrNoVerifiedEmail, user.Login)
	}
	name := user.Name
	if name == "" {
		name = user.Login
	}
	sub := strconv.FormatInt(user.ID, 10)
	if err := checkToken(tok); err != nil {
		return Result{}, err
	}
	return Result{Identity: Identity{ID: "github|" + sub, Email: email, Name: name, Picture: user.AvatarURL, Provider: g.Name()},
		Subject: sub, Token: tok, Scopes: GrantedScopes(tok, g.oauth2.Scopes)}, nil
}

// Refresh implements APIProvider. An OAuth app's tokens do not expire and
// come without a refresh token; a GitHub App's expire after eight hours
// and are refreshed at the same token endpoint.
func (g *GitHub) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return refresh(ctx, g.cfg.HTTPClient, g.oauth2, refreshToken)
}

// Revoke implements APIProvider: GitHub has no RFC 7009 endpoint (its
// DELETE /applications/{client_id}/token is an API of its own).
func (g *GitHub) Revoke(context.Context, string, string) (bool, error) { return false, nil }

// Profile implements APIProvider with GitHub's GET /user.
func (g *GitHub) Profile(ctx context.Context, accessToken string) (json.RawMessage, error) {
	return getWithToken(ctx, g.cfg.HTTPClient, g.cfg.APIURL+"/user", accessToken, githubHeaders())
}

func githubHeaders() http.Header {
	return http.Header{"X-Github-Api-Version": {"2022-11-28"}}
}

// api GETs path from GitHub's REST API as the signed-in user.
func (g *GitHub) api(ctx context.Context, tok *oauth2.Token, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.APIURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	res, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GitHub API %s: %w", ErrProviderUnreachable, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body) // at most MaxResponse: limitResponses
	if errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("GitHub API %s: %w", path, err)
	}
	if err != nil {
		return fmt.Errorf("%w: GitHub API %s: %w", ErrProviderUnreachable, path, err)
	}
	switch {
	case res.StatusCode >= 500:
		return fmt.Errorf("%w: GitHub API %s: status %d", ErrProviderUnreachable, path, res.StatusCode)
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: GitHub API %s: status %d", ErrRejected, path, res.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%w: GitHub API %s: %w", ErrRejected, path, err)
	}
	return nil
}
