package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/oauth2"
)

// Calling APIs as the user: the provider's tokens from the sign-in are kept
// (sealed, in the session) and refreshed, through the calls below. Keeping
// them, and refreshing once across instances, is package apitokens'.

// ErrGrantRevoked: the provider no longer honours the user's grant (a
// refresh token answered invalid_grant, an access token refused): access
// was revoked, the password changed, or the token was used twice. Only a
// new sign-in gives the app access again.
var ErrGrantRevoked = errors.New("access to the provider's API was revoked")

// APIProvider is a provider whose tokens the app keeps, to call its APIs
// as the signed-in user.
type APIProvider interface {
	Provider
	// Refresh exchanges a refresh token for new tokens (the answer's
	// refresh token, when the provider rotates them, replaces the old
	// one). Errors wrap ErrGrantRevoked when the provider refuses the
	// refresh token (invalid_grant), ErrProviderUnreachable otherwise.
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
	// Revoke asks the provider to revoke token (RFC 7009; hint is
	// "refresh_token" or "access_token"). It reports false, and does
	// nothing, when the provider has no revocation endpoint.
	Revoke(ctx context.Context, token, hint string) (bool, error)
	// Profile is the user's profile, as the provider's API answers it
	// when called with the user's access token: OpenID Connect's UserInfo,
	// a provider's own profile API. Errors wrap ErrGrantRevoked when the provider
	// refuses the token (401), ErrProviderUnreachable otherwise.
	Profile(ctx context.Context, accessToken string) (json.RawMessage, error)
}

// Token limits: a provider's token larger than these is not one.
const (
	maxAccessToken  = 16 << 10
	maxRefreshToken = 8 << 10
)

// checkToken refuses a token answer too large to keep in a session.
func checkToken(tok *oauth2.Token) error {
	if tok == nil {
		return nil
	}
	if len(tok.AccessToken) > maxAccessToken || len(tok.RefreshToken) > maxRefreshToken {
		return fmt.Errorf("%w: a token of %d bytes", ErrTooLarge, max(len(tok.AccessToken), len(tok.RefreshToken)))
	}
	return nil
}

// GrantedScopes are the scopes a token answer says were granted (RFC 6749
// §5.1: space-separated; some providers separate them with commas), else
// those asked for (or, for a refresh, those granted before).
func GrantedScopes(tok *oauth2.Token, asked []string) []string {
	s, _ := tok.Extra("scope").(string)
	if s == "" {
		return slices.Clone(asked)
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}

// refreshError sorts a failed refresh: the provider's refusal of the
// grant, or anything else (no answer, a 5xx, a refusal of the client),
// which trying later may cure.
func refreshError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
		return fmt.Errorf("%w: token endpoint: invalid_grant", ErrGrantRevoked)
	}
	if errors.As(err, &re) {
		// Never the body: an answer may echo what was sent.
		return fmt.Errorf("%w: token endpoint: status %d %s", ErrProviderUnreachable, re.Response.StatusCode, re.ErrorCode)
	}
	return fmt.Errorf("%w: token endpoint: %w", ErrProviderUnreachable, err)
}

// refresh asks conf's token endpoint for new tokens with refreshToken.
func refresh(ctx context.Context, client *http.Client, conf *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, refreshError(err)
	}
	if err := checkToken(tok); err != nil {
		return nil, err
	}
	return tok, nil
}

// revoke posts token to an RFC 7009 revocation endpoint, authenticated as
// the client (HTTP Basic, credentials form-encoded as RFC 6749 §2.3.1 says).
func revoke(ctx context.Context, client *http.Client, endpoint, clientID, clientSecret, token, hint string) error {
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("revocation request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: revocation endpoint: %w", ErrProviderUnreachable, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: revocation endpoint: status %d", ErrProviderUnreachable, res.StatusCode)
	}
	return nil
}

// getWithToken GETs an API endpoint as the user, and returns its JSON.
func getWithToken(ctx context.Context, client *http.Client, endpoint, accessToken string, header http.Header) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("API request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+accessToken)
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrProviderUnreachable, endpoint, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body) // at most MaxResponse: limitResponses
	switch {
	case errors.Is(err, ErrTooLarge):
		return nil, fmt.Errorf("%s: %w", endpoint, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrProviderUnreachable, endpoint, err)
	case res.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: %s refused the access token", ErrGrantRevoked, endpoint)
	case res.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: %s: status %d", ErrProviderUnreachable, endpoint, res.StatusCode)
	case !json.Valid(body):
		return nil, fmt.Errorf("%w: %s: not JSON", ErrRejected, endpoint)
	}
	return body, nil
}
