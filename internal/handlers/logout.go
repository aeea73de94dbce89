package handlers

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
)

// logoutResponse is the JSON of POST /api/auth/logout. ProviderLogout is
// where to send the browser to sign out at the provider too, when the
// provider offers it (RP-initiated logout).
type logoutResponse struct {
	OK             bool   `json:"ok"`
	ProviderLogout string `json:"providerLogout,omitempty"`
}

// logout is POST /api/auth/logout: the session is deleted from the store
// and its cookie cleared; then, if the user's provider has an
// end_session_endpoint, the browser goes on there (a form) or is told
// where (JSON).
func (s *server) logout() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		sess, user, signedIn, err := s.currentUser(c)
		if err != nil {
			return err
		}
		providerLogout := ""
		kept, hasTokens := apitokens.Of(sess)
		if signedIn {
			idToken, _ := httpsession.Value[string](sess, httpsession.KeyIDToken)
			providerLogout = s.providerLogoutURL(c, user, idToken)
		}
		if !sess.IsNew || httpsession.InfoOf(sess).Lost {
			key := httpsession.InfoOf(sess).Key
			sess.Options.MaxAge = -1
			if err := sess.Save(r, c.Response()); err != nil {
				return err
			}
			if key != "" {
				s.Logger.Info("User logged out", "session", key, "providerLogout", providerLogout != "")
			}
			if signedIn {
				s.revokeTokens(user.Provider, kept, hasTokens) // after the session is gone
			}
		}
		if strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
			if signedIn {
				s.setNotice(c, "You have signed out.")
			}
			if providerLogout != "" {
				return c.Redirect(http.StatusSeeOther, providerLogout)
			}
			return c.Redirect(http.StatusSeeOther, "/")
		}
		return c.JSON(http.StatusOK, logoutResponse{OK: true, ProviderLogout: providerLogout})
	}
}

// providerLogoutURL returns the provider's end_session URL for user, or ""
// when the provider has none or cannot be reached right now (the local
// sign-out goes ahead either way).
func (s *server) providerLogoutURL(c echo.Context, user auth.Identity, idToken string) string {
	lp, ok := s.provider(user.Provider).(auth.LogoutProvider)
	if !ok {
		return ""
	}
	// Providers compare post_logout_redirect_uri byte for byte with the
	// registered one: the README says to register BASE_URL/.
	u, err := lp.EndSessionURL(c.Request().Context(), idToken, s.BaseURL.String()+"/", httpsession.NewToken())
	if err != nil {
		s.Logger.Warn("Signing out at the provider skipped", "provider", lp.Name(), "error", err)
		return ""
	}
	return u
}

// provider returns the configured provider called name, or nil.
func (s *server) provider(name string) auth.Provider {
	for _, p := range s.Providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// backchannelPattern is the route providers post logout tokens to.
const backchannelPattern = "/api/auth/{provider}/backchannel-logout"

// maxLogoutToken bounds the token read from the form (a few kB in practice).
const maxLogoutToken = 16 << 10

// backchannelError is the JSON of a refused logout token (OpenID Connect
// Back-Channel Logout 1.0, §2.8).
type backchannelError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// logoutVerifyWait is how long a logout token waits for its turn to be
// checked while LogoutVerifications others are (a flood): long enough for
// a genuine token to get through, short of a provider's timeout.
const logoutVerifyWait = 5 * time.Second

// backchannelLogout is POST /api/auth/{provider}/backchannel-logout: the
// provider says, in a signed logout token, that a user's session there
// ended; every session of that provider session (sid), or of that user at
// that provider (sub), ends here too, found through the store's owner
// index. The request carries no cookie: the token is the authority.
//
// Anyone can post tokens, and each costs a signature check; but a dropped
// logout leaves a user signed in, so the limits count only failures: an
// address whose forged tokens used up its budget is refused before its
// next one is checked, and a valid token is never refused for rate. What a
// flood from many addresses can take is bounded by LogoutVerifications
// checks at once, in which genuine tokens wait their turn with the rest.
func (s *server) backchannelLogout(p auth.LogoutProvider) echo.HandlerFunc {
	refuse := func(c echo.Context, result, why string) error {
		s.Metrics.BackchannelLogout(p.Name(), result)
		if s.LogoutFailures != nil {
			_, _, _ = s.LogoutFailures.Allow(c.Request().Context(), limitKey(c.RealIP()))
		}
		markRefused(c, "logout_token_"+result)
		return c.JSON(http.StatusBadRequest, backchannelError{Error: "invalid_request", Description: why})
	}
	return func(c echo.Context) error {
		r := c.Request()
		if s.LogoutFailures != nil {
			if ok, retry := s.LogoutFailures.Peek(limitKey(c.RealIP())); !ok {
				s.Metrics.BackchannelLogout(p.Name(), "refused")
				markRefused(c, "rate_limited")
				c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
				return &pageError{status: http.StatusTooManyRequests, title: "Too many logout requests",
					detail: "Too many invalid logout tokens came from this address. Please retry later."}
			}
		}
		if s.verifySlots != nil {
			wait := time.NewTimer(logoutVerifyWait)
			select {
			case s.verifySlots <- struct{}{}:
				wait.Stop()
				defer func() { <-s.verifySlots }()
			case <-wait.C:
				s.Metrics.BackchannelLogout(p.Name(), "busy")
				markRefused(c, "busy")
				c.Response().Header().Set("Retry-After", "1")
				return &pageError{status: http.StatusServiceUnavailable, title: "Busy",
					detail: "Too many logout tokens are being checked right now. Please retry."}
			case <-r.Context().Done():
				wait.Stop()
				return r.Context().Err()
			}
		}
		if !strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
			return refuse(c, "invalid", "the logout token must be posted as application/x-www-form-urlencoded")
		}
		raw := r.PostFormValue("logout_token")
		switch {
		case raw == "":
			return refuse(c, "invalid", "logout_token is required")
		case len(raw) > maxLogoutToken:
			return refuse(c, "invalid", "logout_token is too long")
		}
		now := s.now()
		lt, err := p.VerifyLogoutToken(r.Context(), raw, now)
		switch {
		case errors.Is(err, auth.ErrProviderUnreachable):
			// Not the token's fault: the provider may send it again.
			s.Metrics.BackchannelLogout(p.Name(), "unverified")
			return &pageError{status: http.StatusServiceUnavailable, title: "Provider unreachable",
				detail: p.Label() + " could not be reached to check the logout token; please retry.", cause: err}
		case err != nil:
			s.Logger.Debug("Logout token refused", "provider", p.Name(), "error", err)
			return refuse(c, "invalid", "the logout token is not valid: "+clip(strings.TrimPrefix(err.Error(), auth.ErrRejected.Error()+": "), 200))
		}
		// Its jti is remembered for as long as a copy could pass the checks.
		first, err := s.sessions.MarkUsed(r.Context(), p.Name()+"|"+p.Issuer()+"|"+lt.ID, lt.PassesUntil)
		if err != nil {
			return err
		}
		if !first {
			return refuse(c, "replayed", "this logout token was already used")
		}
		by, owner := "sub", auth.SubjectKey(p.Name(), lt.Subject)
		if lt.SessionID != "" {
			by, owner = "sid", auth.SessionKey(p.Name(), lt.SessionID) // that provider session only
		}
		list, err := s.sessions.Sessions(r.Context(), httpsession.KindLogin, owner)
		if err != nil {
			return err
		}
		for _, x := range list {
			if err := s.sessions.Revoke(r.Context(), x.Key); err != nil {
				return err
			}
		}
		s.Metrics.BackchannelLogout(p.Name(), "ended")
		s.Logger.Info("Back-channel logout", "provider", p.Name(), "by", by, "sessionsEnded", len(list))
		return c.NoContent(http.StatusOK)
	}
}

// now is the session layer's clock.
func (s *server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
