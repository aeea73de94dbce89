package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
)

// This file is the example to copy: the signed-in part of your app. Its
// routes are in routes.go, in the groups requireUser guards; a handler there
// gets the user from userOf(c) and never checks the session itself.

// signedIn is what requireUser leaves in the request's context.
type signedIn struct {
	user    auth.Identity
	session *sessions.Session
}

const signedInKey = "signedIn"

// userOf returns the signed-in user of a request that passed requireUser.
func userOf(c echo.Context) auth.Identity {
	return c.Get(signedInKey).(signedIn).user
}

// loginOf returns the login session of a request that passed requireUser.
func loginOf(c echo.Context) *sessions.Session {
	return c.Get(signedInKey).(signedIn).session
}

// requireUser lets only signed-in users through. Others get anonymous(c):
// for pages a redirect to the sign-in, for APIs a 401.
func (s *server) requireUser(anonymous func(c echo.Context) error) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			sess, user, ok, err := s.currentUser(c)
			if err != nil {
				return err
			}
			if !ok {
				return anonymous(c)
			}
			c.Set(signedInKey, signedIn{user: user, session: sess})
			return next(c)
		}
	}
}

// toSignIn sends a visitor to sign in, coming back to this page after:
// straight to the provider when there is one, else to the home page's
// buttons.
func (s *server) toSignIn(c echo.Context) error {
	back := url.QueryEscape(c.Request().URL.RequestURI())
	if len(s.Providers) == 1 {
		return c.Redirect(http.StatusSeeOther, "/api/auth/"+s.Providers[0].Name()+"?returnTo="+back)
	}
	return c.Redirect(http.StatusSeeOther, "/?returnTo="+back)
}

// notSignedIn is the API's answer to a visitor.
func notSignedIn(echo.Context) error {
	return echo.NewHTTPError(http.StatusUnauthorized, "not signed in")
}

// appHome is GET /app, the example page behind sign-in.
func (s *server) appHome() echo.HandlerFunc {
	return func(c echo.Context) error {
		data := appPage{page: s.withNotice(c, "Your app"), User: userOf(c)}
		if err := s.loadProfile(c, &data); err != nil {
			return err
		}
		// BEGIN remove:notes
		if err := s.loadNotes(c, &data); err != nil {
			return err
		}
		// END remove:notes
		return s.render(c, http.StatusOK, "app.html", data)
	}
}

// helloResponse is the JSON of GET /api/app/hello.
type helloResponse struct {
	Greeting string `json:"greeting"`
}

// hello is GET /api/app/hello, the example API behind sign-in.
func (s *server) hello() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, helloResponse{Greeting: "Hello, " + userOf(c).DisplayName()})
	}
}

// loadProfile calls the provider's API as the user for the app's page
// (apiaccess.go). A call that fails says so on the page, which is still
// served; only a store that does not answer fails it.
func (s *server) loadProfile(c echo.Context, data *appPage) error {
	_, kept := apitokens.Of(loginOf(c))
	if !kept && !apitokens.Ended(loginOf(c)) {
		return nil
	}
	call := &apiCall{Provider: s.providerLabel(userOf(c).Provider)}
	data.API = call
	res, t, err := s.callProfile(c)
	switch {
	case errors.Is(err, httpsession.ErrUnavailable):
		return err
	case errors.Is(err, apitokens.ErrReconnect):
		call.Reconnect = s.reconnectURL(c)
		return nil
	case err != nil:
		s.Logger.Warn("Provider API call failed", "provider", userOf(c).Provider, "error", err)
		call.Problem = call.Provider + " could not be reached just now. Reload the page to try again."
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, res.Profile, "", "  ") == nil {
		call.Profile = pretty.String()
	}
	if !t.Expiry.IsZero() {
		w := s.when(t.Expiry)
		call.Expires = &w
	}
	return nil
}
