package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo/v4"

	"github.com/example/oauth-sessions/internal/auth"
	"github.com/example/oauth-sessions/internal/sessionstore"
)

const (
	loginCookie = "sid"
	userKey     = "user"
	deviceKey   = "device"
	flowKey     = "flow"
)

// flowCookie names the cookie of the login flow for state. Each started
// login has its own short-lived session and cookie, so logins started in
// several tabs never overwrite each other, and a state is only usable in the
// browser that started it.
func flowCookie(state string) string {
	sum := sha256.Sum256([]byte(state))
	return "oauth_" + hex.EncodeToString(sum[:8])
}

// loginSession loads the visitor's login session (possibly empty).
func (s *server) loginSession(c echo.Context) (*sessions.Session, error) {
	return s.login.Get(c.Request(), s.cookies.name(c.Request(), loginCookie))
}

// currentUser returns the signed-in identity, if any.
func (s *server) currentUser(c echo.Context) (*sessions.Session, auth.Identity, bool, error) {
	sess, err := s.loginSession(c)
	if err != nil {
		return nil, auth.Identity{}, false, err
	}
	u, ok := sessionstore.Value[auth.Identity](sess, userKey)
	return sess, u, ok && u.ID != "", nil
}

func (s *server) startLogin() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if err := s.clearAbandonedLogins(c); err != nil {
			return err
		}
		flow, authURL, err := s.Provider.Start(r.Context(), c.QueryParam("returnTo"))
		if err != nil {
			s.Metrics.Login("failed", "provider_unreachable")
			return providerDown(err)
		}
		sess := s.flows.Fresh(r, s.cookies.name(r, flowCookie(flow.State)))
		sess.Values[flowKey] = flow
		if err := sess.Save(r, c.Response()); err != nil {
			return err
		}
		s.Metrics.Login("started", "")
		s.Logger.Info("Login started", "provider", s.Provider.Name(), "flow", sessionstore.InfoOf(sess).Key)
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.Redirect(http.StatusFound, authURL)
	}
}

// maxPendingLogins bounds the login flows one browser keeps open: each has
// its own cookie, and a page that starts logins in a loop must not fill the
// browser's cookie jar (and the request headers) or the store.
const maxPendingLogins = 5

// clearAbandonedLogins deletes the browser's pending flows once it has
// maxPendingLogins of them; a few tabs at once stay well below.
func (s *server) clearAbandonedLogins(c echo.Context) error {
	r := c.Request()
	prefix := s.cookies.name(r, "oauth_")
	var pending []string
	for _, ck := range r.Cookies() {
		if strings.HasPrefix(ck.Name, prefix) {
			pending = append(pending, ck.Name)
		}
	}
	if len(pending) < maxPendingLogins {
		return nil
	}
	for _, name := range pending {
		old, err := s.flows.Get(r, name)
		if err != nil {
			return err
		}
		old.Options.MaxAge = -1
		if err := old.Save(r, c.Response()); err != nil {
			return err
		}
	}
	s.Logger.Info("Abandoned logins cleared", "count", len(pending))
	return nil
}

func providerDown(err error) error {
	return &pageError{status: http.StatusBadGateway, title: "Sign-in provider unreachable",
		detail: "The sign-in provider could not be reached. Please try again in a moment.", cause: err}
}

func badFlow(detail string) error {
	return &pageError{status: http.StatusBadRequest, title: "Sign-in could not be completed",
		detail: detail + " Please start the sign-in again."}
}

func (s *server) finishLogin() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		state := c.QueryParam("state")
		if state == "" || len(state) > 256 {
			s.Metrics.Login("failed", "bad_state")
			return badFlow("The sign-in response had no valid state.")
		}
		flowSess, err := s.flows.Get(r, s.cookies.name(r, flowCookie(state)))
		if err != nil {
			return err
		}
		flow, ok := sessionstore.Value[auth.Flow](flowSess, flowKey)
		if flowSess.IsNew || !ok || !auth.CheckState(flow, state) {
			s.Metrics.Login("failed", "bad_state")
			s.Logger.Info("Login refused", "reason", "unknown or replayed state")
			return badFlow("This sign-in link has expired, was already used, or was started in another browser.")
		}
		// One use only: the flow is gone before anything else can fail, so a
		// replayed callback never finds it.
		flowSess.Options.MaxAge = -1
		if err := flowSess.Save(r, c.Response()); err != nil {
			return err
		}

		if e := c.QueryParam("error"); e != "" {
			s.Metrics.Login("failed", "provider_error")
			s.Logger.Info("Login refused", "reason", "provider error", "error", e)
			title, detail := "Sign-in cancelled", "You cancelled the sign-in, so you are not signed in."
			if e != "access_denied" {
				title, detail = "Sign-in failed", "The sign-in provider reported a problem ("+e+")."
			}
			return &pageError{status: http.StatusUnauthorized, title: title, detail: detail}
		}
		code := c.QueryParam("code")
		if code == "" {
			s.Metrics.Login("failed", "no_code")
			return badFlow("The sign-in response had no authorization code.")
		}
		id, err := s.Provider.Finish(r.Context(), flow, code)
		switch {
		case errors.Is(err, auth.ErrProviderUnreachable):
			s.Metrics.Login("failed", "provider_unreachable")
			return providerDown(err)
		case err != nil:
			s.Metrics.Login("failed", "token_rejected")
			s.Logger.Warn("Login refused", "reason", "token verification failed", "error", err)
			return &pageError{status: http.StatusUnauthorized, title: "Sign-in failed",
				detail: "The sign-in provider's answer could not be verified, so you are not signed in.", cause: err}
		}
		if !auth.EmailAllowed(id.Email, s.AllowedDomains) {
			s.Metrics.Login("failed", "domain_not_allowed")
			s.Logger.Info("Login refused", "reason", "email domain not allowed")
			return &pageError{status: http.StatusForbidden, title: "Account not allowed",
				detail: "This app only accepts accounts from: " + strings.Join(s.AllowedDomains, ", ") + "."}
		}

		sess, err := s.loginSession(c)
		if err != nil {
			return err
		}
		// A fresh token at every login: whatever session the browser had
		// before (perhaps planted by someone else) is deleted.
		if err := s.login.Regenerate(r.Context(), sess); err != nil {
			return err
		}
		sess.Values[userKey] = id
		sess.Values[deviceKey] = auth.Device(r.UserAgent())
		sessionstore.SetOwner(sess, id.Owner())
		if err := sess.Save(r, c.Response()); err != nil {
			return err
		}
		s.Metrics.Login("succeeded", "")
		s.Logger.Info("User logged in", "provider", id.Provider, "session", sessionstore.InfoOf(sess).Key)
		return c.Redirect(http.StatusFound, auth.SafeReturnPath(flow.ReturnTo))
	}
}

// jsonTime formats t exactly as encoding/json does (RFC 3339, UTC here),
// without the reflection and re-validation that time.Time's MarshalJSON
// costs on the busiest route.
func jsonTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// meResponse is the JSON of GET /api/auth/me.
type meResponse struct {
	User    auth.Identity `json:"user"`
	Session sessionInfo   `json:"session"`
}

type sessionInfo struct {
	Store     string `json:"store"`
	CreatedAt string `json:"createdAt"` // jsonTime
	ExpiresAt string `json:"expiresAt"`
}

func (s *server) me() echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, user, ok, err := s.currentUser(c)
		if err != nil {
			return err
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		if !ok {
			return c.JSON(http.StatusUnauthorized, errorBody{Error: "not signed in"})
		}
		info := sessionstore.InfoOf(sess)
		return c.JSON(http.StatusOK, meResponse{User: user, Session: sessionInfo{
			Store: s.StoreName, CreatedAt: jsonTime(info.CreatedAt), ExpiresAt: jsonTime(info.ExpiresAt),
		}})
	}
}

func (s *server) logout() echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		sess, err := s.loginSession(c)
		if err != nil {
			return err
		}
		if !sess.IsNew || sessionstore.InfoOf(sess).Lost {
			key := sessionstore.InfoOf(sess).Key
			sess.Options.MaxAge = -1
			if err := sess.Save(r, c.Response()); err != nil {
				return err
			}
			if key != "" {
				s.Logger.Info("User logged out", "session", key)
			}
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		if strings.HasPrefix(r.Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
			return c.Redirect(http.StatusSeeOther, "/")
		}
		return c.JSON(http.StatusOK, map[string]bool{"ok": true})
	}
}

func (s *server) home() echo.HandlerFunc {
	return func(c echo.Context) error {
		data := map[string]any{
			"Store": s.StoreName, "Demo": s.DevProvider != nil, "Production": s.Production,
		}
		sess, user, ok, err := s.currentUser(c)
		if err != nil {
			if errors.Is(err, sessionstore.ErrUnavailable) {
				data["StoreDown"] = true
				return s.render(c, http.StatusServiceUnavailable, "home.html", data)
			}
			return err
		}
		info := sessionstore.InfoOf(sess)
		if ok {
			data["User"], data["CreatedAt"], data["ExpiresAt"] = user, info.CreatedAt, info.ExpiresAt
		} else if info.Lost {
			data["Lost"] = true
			// The browser kept a cookie for a session that is gone; clear it.
			sess.Options.MaxAge = -1
			_ = sess.Save(c.Request(), c.Response())
		}
		return s.render(c, http.StatusOK, "home.html", data)
	}
}

func (s *server) healthz() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}

func (s *server) readyz() echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.stopping() {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "draining", "store": s.StoreName})
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.Backend.Ping(ctx); err != nil {
			s.Logger.Warn("Readiness check failed", "store", s.StoreName, "error", err)
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "store": s.StoreName, "error": storeDownMessage})
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready", "store": s.StoreName})
	}
}
