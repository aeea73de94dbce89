package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/apiproxy"
	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
)

// Calling APIs as the user: the provider's tokens from the sign-in stay on
// the server (apitokens), and a handler behind requireUser gets a valid
// access token with userTokens. README: "Calling APIs as the user".

// userTokens returns the signed-in user's provider and a usable access
// token for it, refreshed first when it expires within 30 seconds (once
// for the session, whatever the tabs and instances). refused is a token
// the provider has just refused, to be replaced, or "". Errors go to
// apiAccessError.
func (s *server) userTokens(c echo.Context, refused string) (auth.APIProvider, apitokens.Tokens, error) {
	p, ok := s.provider(userOf(c).Provider).(auth.APIProvider)
	if !ok {
		return nil, apitokens.Tokens{}, apitokens.ErrReconnect
	}
	t, err := s.tokens.Token(c.Response(), c.Request(), loginOf(c), p, refused)
	return p, t, err
}

// apiAccessResponse is the JSON of a refused API call: the error, and
// where signing in again grants the app access anew.
type apiAccessResponse struct {
	Error     string `json:"error"`
	Reconnect string `json:"reconnect,omitempty"`
}

// apiAccessError answers an API call that could not get a token: 401 with
// a reconnect link when only signing in again helps (the sign-in session
// itself stays), 503 with Retry-After while the provider cannot refresh.
// Store failures go to the error handler (503).
func (s *server) apiAccessError(c echo.Context, err error) error {
	switch {
	case errors.Is(err, apitokens.ErrReconnect):
		return c.JSON(http.StatusUnauthorized, apiAccessResponse{
			Error:     "The app's access to your " + s.providerLabel(userOf(c).Provider) + " account has ended. Reconnect to grant it again.",
			Reconnect: s.reconnectURL(c),
		})
	case errors.Is(err, apitokens.ErrSignedOut):
		return notSignedIn(c)
	case errors.Is(err, apitokens.ErrProviderDown), errors.Is(err, apitokens.ErrBusy), errors.Is(err, auth.ErrProviderUnreachable):
		c.Response().Header().Set("Retry-After", strconv.Itoa(providerRetryAfter))
		return c.JSON(http.StatusServiceUnavailable, apiAccessResponse{
			Error: s.providerLabel(userOf(c).Provider) + " cannot be reached right now. Please try again in a moment.",
		})
	case errors.Is(err, auth.ErrTooLarge), errors.Is(err, auth.ErrRejected):
		s.Logger.Warn("Provider API answer refused", "provider", userOf(c).Provider, "error", err)
		return c.JSON(http.StatusBadGateway, apiAccessResponse{Error: s.providerLabel(userOf(c).Provider) + " sent an answer this app cannot use."})
	}
	return err
}

// providerRetryAfter is the Retry-After, in seconds, of a 503 while the
// provider cannot refresh a token.
const providerRetryAfter = 30

// reconnectURL is where signing in again with the user's provider grants
// the app access anew, coming back to the returnTo the page asked for
// (the current page by default).
func (s *server) reconnectURL(c echo.Context) string {
	back := auth.SafeReturnPath(c.QueryParam("returnTo"))
	if back == "/" {
		back = "/app"
	}
	return "/api/auth/" + url.PathEscape(userOf(c).Provider) + "?returnTo=" + url.QueryEscape(back)
}

// profileResponse is the JSON of GET /api/app/profile.
type profileResponse struct {
	Provider string `json:"provider"`
	// Profile is the provider's answer, as it gave it.
	Profile json.RawMessage `json:"profile"`
	// TokenExpiresAt is when the access token used expires (absent when
	// the provider gave no expiry).
	TokenExpiresAt string `json:"tokenExpiresAt,omitempty"`
}

// profile is GET /api/app/profile, the example of calling the provider's
// API as the user: its UserInfo endpoint (or its own profile API), with the
// user's access token.
func (s *server) profile() echo.HandlerFunc {
	return func(c echo.Context) error {
		res, _, err := s.callProfile(c)
		if err != nil {
			return s.apiAccessError(c, err)
		}
		return c.JSON(http.StatusOK, res)
	}
}

// callProfile calls the provider's profile API as the user. An access
// token the provider refuses before its expiry (revoked there) is
// refreshed once and the call made again: if the grant itself was
// revoked, the refresh says so. It returns the tokens it used too.
func (s *server) callProfile(c echo.Context) (profileResponse, apitokens.Tokens, error) {
	p, t, err := s.userTokens(c, "")
	if err != nil {
		return profileResponse{}, t, err
	}
	body, err := p.Profile(c.Request().Context(), t.Access)
	if errors.Is(err, auth.ErrGrantRevoked) {
		if p, t, err = s.userTokens(c, t.Access); err != nil {
			return profileResponse{}, t, err
		}
		body, err = p.Profile(c.Request().Context(), t.Access)
		if errors.Is(err, auth.ErrGrantRevoked) {
			err = apitokens.ErrReconnect
		}
	}
	if err != nil {
		return profileResponse{}, t, err
	}
	res := profileResponse{Provider: p.Name(), Profile: body}
	if !t.Expiry.IsZero() {
		res.TokenExpiresAt = jsonTime(t.Expiry)
	}
	return res, t, nil
}

// apiInfo is what GET /api/auth/me says of the API access kept: never a
// token.
type apiInfo struct {
	Scopes      []string `json:"scopes"`
	ExpiresAt   string   `json:"expiresAt,omitempty"` // jsonTime; absent: no expiry given
	Refreshable bool     `json:"refreshable"`
}

// apiInfoOf describes the tokens kept in sess, or nil when there are none.
func apiInfoOf(t apitokens.Tokens, ok bool) *apiInfo {
	if !ok {
		return nil
	}
	info := &apiInfo{Scopes: t.Scopes, Refreshable: t.Refreshable()}
	if info.Scopes == nil {
		info.Scopes = []string{}
	}
	if !t.Expiry.IsZero() {
		info.ExpiresAt = jsonTime(t.Expiry)
	}
	return info
}

// revokeTokens revokes, at the provider and in the background, the tokens
// kept in a session that has just ended.
func (s *server) revokeTokens(provider string, t apitokens.Tokens, ok bool) {
	if p, isAPI := s.provider(provider).(auth.APIProvider); ok && isAPI {
		s.tokens.Revoke(p, t)
	}
}

// keptTokens returns the provider and tokens kept in a listed session.
func keptTokens(x httpsession.Summary) (string, apitokens.Tokens, bool) {
	user, _ := httpsession.SummaryValue[auth.Identity](x, httpsession.KeyUser)
	t, ok := httpsession.SummaryValue[apitokens.Tokens](x, httpsession.KeyTokens)
	return user.Provider, t, ok && t.Access != ""
}

// remote is /api/remote/{name}/…, any method: the call goes on to the
// remote API configured under name (API_PROXY), as the user, with their
// access token; apiproxy keeps it to that API's origin and path.
func (s *server) remote() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		// The path as sent, still percent-encoded: apiproxy judges the
		// encoding itself (an encoded slash is an escape attempt).
		name, rest, more := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), apiproxy.Mount), "/")
		if more {
			rest = "/" + rest
		}
		_, t, err := s.userTokens(c, "")
		if err != nil {
			return s.apiAccessError(c, err)
		}
		s.APIProxy.Serve(c.Response(), r, name, rest, t.Access)
		return nil
	}
}
