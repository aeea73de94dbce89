package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/ratelimit"
)

// flowCookieName names the cookie of the login flow for state. Each started
// login has its own short-lived session and cookie, so logins started in
// several tabs never overwrite each other, and a state is only usable in the
// browser that started it.
func (s *server) flowCookieName(r *http.Request, state string) string {
	sum := sha256.Sum256([]byte(state))
	return s.cookies.name(r, flowCookie+hex.EncodeToString(sum[:8]))
}

// loginSession loads the visitor's login session (possibly empty) through
// echo-contrib's session middleware.
func (s *server) loginSession(c echo.Context) (*sessions.Session, error) {
	return session.Get(s.cookies.name(c.Request(), loginCookie), c)
}

// currentUser returns the signed-in identity, if any.
func (s *server) currentUser(c echo.Context) (*sessions.Session, auth.Identity, bool, error) {
	sess, err := s.loginSession(c)
	if err != nil {
		return nil, auth.Identity{}, false, err
	}
	u, ok := httpsession.Value[auth.Identity](sess, httpsession.KeyUser)
	return sess, u, ok && u.ID != "", nil
}

// startLogin is GET /api/auth/{provider}: a new flow in its own short
// session, then off to the provider.
func (s *server) startLogin(p auth.Provider) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if err := s.clearAbandonedLogins(c); err != nil {
			return err
		}
		flow, authURL, err := p.Start(r.Context(), c.QueryParam("returnTo"))
		if err != nil {
			s.Metrics.Login(p.Name(), "failed", "provider_unreachable")
			return providerDown(p, r.URL.RequestURI(), err)
		}
		sess, err := session.Get(s.flowCookieName(r, flow.State), c)
		if err != nil {
			return err
		}
		sess.Values[httpsession.KeyFlow] = flow
		if err := sess.Save(r, c.Response()); err != nil {
			return err
		}
		s.Metrics.Login(p.Name(), "started", "")
		s.Logger.Info("Login started", "provider", p.Name(), "flow", httpsession.InfoOf(sess).Key)
		return c.Redirect(http.StatusFound, authURL)
	}
}

// maxPendingLogins bounds the login flows one browser keeps open: each has
// its own cookie, and a page that starts logins in a loop must not fill the
// browser's cookie jar (and the request headers) or the store.
const maxPendingLogins = 5

// clearAbandonedLogins ends the browser's pending flows once it carries
// maxPendingLogins flow cookies; a few tabs at once stay well below. Only
// the newest maxPendingLogins are looked at, and only those this app
// signed are cleared: a request stuffed with made-up flow cookies costs a
// handful of signature checks, no store call and no response header.
func (s *server) clearAbandonedLogins(c echo.Context) error {
	r := c.Request()
	pending := httpsession.CookieNames(r, s.cookies.name(r, flowCookie), maxPendingLogins)
	if len(pending) < maxPendingLogins {
		return nil
	}
	cleared := 0
	for _, name := range pending {
		ok, err := s.sessions.Drop(c.Response(), r, name)
		if err != nil {
			return err
		}
		if ok {
			cleared++
		}
	}
	if cleared > 0 {
		s.Logger.Info("Abandoned logins cleared", "count", cleared)
	}
	return nil
}

// limitStarts lets a sign-in start only within the client address's
// budget and the instance's ceiling (an address not seen for the life of
// a flow, 10 minutes, is new and has a ceiling of its own); a refused start writes nothing and
// answers 429 with Retry-After. The checks go from the cheapest: this
// instance's view of the address's budget (a refusal there touches no
// store), the instance's ceiling for the address's lane (first start, or
// more), and last the budget shared by every instance, the one check that
// writes to the store, which so sees at most the ceiling's rate.
// Refusals are counted and logged as counts (refusals.go).
func (s *server) limitStarts(next echo.HandlerFunc) echo.HandlerFunc {
	tooMany := &pageError{status: http.StatusTooManyRequests, title: "Too many sign-in attempts",
		detail: "Too many sign-ins were started from here. Please wait a moment and try again."}
	refuse := func(c echo.Context, reason string, retry time.Duration) error {
		s.Metrics.Login(providerOfRoute(c.Path()), "refused", reason)
		markRefused(c, reason)
		c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
		return tooMany
	}
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		key := limitKey(c.RealIP())
		ceiling, lane := s.LoginCeiling, "instance_ceiling"
		if s.LoginLocal != nil {
			if ok, retry := s.LoginLocal.Peek(key); !ok {
				return refuse(c, "rate_limited", retry)
			}
			if s.LoginLocal.Fresh(key, auth.FlowTTL) && s.LoginFreshCeiling != nil {
				ceiling, lane = s.LoginFreshCeiling, "instance_ceiling_new"
			}
		}
		ok, retry, err := allow(ctx, ceiling, "")
		if err == nil && !ok {
			if s.LoginLocal != nil {
				// A start the ceiling refused still counts against the
				// address: one that keeps trying is soon refused by the
				// cheap check, and no longer counts as new.
				_, _, _ = s.LoginLocal.Allow(ctx, key)
			}
			return refuse(c, lane, retry)
		}
		if err == nil && ok {
			ok, retry, err = allow(ctx, s.LoginShared, key)
		}
		if err == nil && ok && s.LoginLocal != nil {
			ok, retry, err = s.LoginLocal.Allow(ctx, key)
		}
		if err != nil {
			return fmt.Errorf("%w: rate limit: %w", httpsession.ErrUnavailable, err)
		}
		if !ok {
			return refuse(c, "rate_limited", retry)
		}
		return next(c)
	}
}

// providerOfRoute is the provider of a start route, /api/auth/{provider}.
func providerOfRoute(route string) string {
	return strings.TrimPrefix(route, "/api/auth/")
}

// allow asks l whether key may act now; a nil l is no limit.
func allow(ctx context.Context, l ratelimit.Limiter, key string) (bool, time.Duration, error) {
	if l == nil {
		return true, 0, nil
	}
	return l.Allow(ctx, key)
}

func providerDown(p auth.Provider, retry string, err error) error {
	return &pageError{status: http.StatusBadGateway, title: "Sign-in provider unreachable",
		detail: p.Label() + " could not be reached. Please try again in a moment.", retry: retry, cause: err}
}

// finishLogin is GET /api/auth/{provider}/callback: the flow is used up,
// the provider's answer checked, and a fresh login session made.
func (s *server) finishLogin(p auth.Provider) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		var flow auth.Flow
		// refuse ends a callback that signs no one in. A browser goes home
		// (303) with a one-time notice and the sign-in buttons, so neither a
		// reload nor Back shows an error; an API client (Accept:
		// application/json) gets the status and {"error": ...}.
		refuse := func(status int, title, detail string, cause error) error {
			if strings.Contains(r.Header.Get("Accept"), "application/json") {
				return &pageError{status: status, title: title, detail: detail, cause: cause}
			}
			s.setNotice(c, detail)
			home := "/"
			if back := auth.SafeReturnPath(flow.ReturnTo); back != "/" {
				home += "?returnTo=" + url.QueryEscape(back)
			}
			return c.Redirect(http.StatusSeeOther, home)
		}
		badFlow := func(detail string) error {
			return refuse(http.StatusBadRequest, "Sign-in could not be completed", detail+" Please sign in again.", nil)
		}
		state := c.QueryParam("state")
		if state == "" || len(state) > 256 {
			s.Metrics.Login(p.Name(), "failed", "bad_state")
			return badFlow("The sign-in response had no valid state.")
		}
		// One use only: the flow is taken from the store (read and deleted
		// in one step) before anything else can fail, so of two callbacks
		// for one state, replayed or racing, only one finds it.
		flowSess, err := s.sessions.Take(r, s.flowCookieName(r, state))
		if err != nil {
			return err
		}
		if info := httpsession.InfoOf(flowSess); !flowSess.IsNew || info.Lost {
			httpsession.Forget(c.Response(), flowSess)
		}
		var ok bool
		flow, ok = httpsession.Value[auth.Flow](flowSess, httpsession.KeyFlow)
		if flowSess.IsNew || !ok || !auth.CheckState(flow, state) {
			flow = auth.Flow{}
			s.Metrics.Login(p.Name(), "failed", "bad_state")
			s.Logger.Info("Login refused", "reason", "unknown or replayed state")
			return badFlow("That sign-in link has expired, was already used, or was started in another browser.")
		}
		// Mix-up defence: the answer must come from the provider the flow
		// was started with, on its route, and say so when it says who it
		// is (RFC 9207's iss).
		if flow.Provider != p.Name() {
			s.Metrics.Login(p.Name(), "failed", "wrong_provider")
			s.Logger.Warn("Login refused", "reason", "callback on another provider's route", "started", flow.Provider, "callback", p.Name())
			return badFlow("The sign-in answer came back for another provider than the one it was started with.")
		}
		if iss, sent := c.QueryParams()["iss"]; sent && (len(iss) != 1 || iss[0] != p.Issuer()) {
			s.Metrics.Login(p.Name(), "failed", "wrong_issuer")
			s.Logger.Warn("Login refused", "reason", "authorization response from another issuer", "provider", p.Name(), "iss", clip(strings.Join(iss, ","), 200))
			return badFlow("The sign-in answer came from another provider than the one it was started with.")
		}

		if e := clip(c.QueryParam("error"), 64); e != "" {
			s.Metrics.Login(p.Name(), "failed", "provider_error")
			s.Logger.Info("Login refused", "reason", "provider error", "provider", p.Name(), "error", e)
			title, detail := "Sign-in cancelled", "You cancelled the sign-in at "+p.Label()+", so you are not signed in."
			if e != "access_denied" {
				title, detail = "Sign-in failed", p.Label()+" reported a problem ("+e+"). Please try again."
			}
			return refuse(http.StatusUnauthorized, title, detail, nil)
		}
		code := c.QueryParam("code")
		if code == "" {
			s.Metrics.Login(p.Name(), "failed", "no_code")
			return badFlow("The sign-in response had no authorization code.")
		}
		res, err := p.Finish(r.Context(), flow, code)
		switch {
		case errors.Is(err, auth.ErrProviderUnreachable):
			s.Metrics.Login(p.Name(), "failed", "provider_unreachable")
			return refuse(http.StatusBadGateway, "Sign-in provider unreachable", p.Label()+" could not be reached to finish signing in. Please try again in a moment.", err)
		case errors.Is(err, auth.ErrNoVerifiedEmail):
			s.Metrics.Login(p.Name(), "failed", "no_verified_email")
			s.Logger.Info("Login refused", "reason", "no verified email", "provider", p.Name())
			return refuse(http.StatusForbidden, "No verified email address",
				"Your "+p.Label()+" account has no verified primary email address, and this app needs one. Verify an address in your "+p.Label()+" settings, make it primary, then sign in again.", err)
		case errors.Is(err, auth.ErrTooLarge):
			s.Metrics.Login(p.Name(), "failed", "too_large")
			s.Logger.Warn("Login refused", "reason", "answer too large", "provider", p.Name(), "error", err)
			return refuse(http.StatusBadGateway, "Sign-in failed", p.Label()+" sent more than this app accepts (a profile or an answer far larger than any provider sends), so you are not signed in.", err)
		case err != nil:
			s.Metrics.Login(p.Name(), "failed", "token_rejected")
			s.Logger.Warn("Login refused", "reason", "token verification failed", "provider", p.Name(), "error", err)
			return refuse(http.StatusUnauthorized, "Sign-in failed", "The answer from "+p.Label()+" could not be verified, so you are not signed in.", err)
		}
		id := res.Identity
		if !auth.EmailAllowed(id.Email, s.AllowedDomains) {
			s.Metrics.Login(p.Name(), "failed", "domain_not_allowed")
			s.Logger.Info("Login refused", "reason", "email domain not allowed", "provider", p.Name(), "verifiedEmail", id.Email != "")
			return refuse(http.StatusForbidden, "Account not allowed", "This app only accepts accounts with a verified email address at: "+strings.Join(s.AllowedDomains, ", ")+".", nil)
		}

		sess, err := s.loginSession(c)
		if err != nil {
			return err
		}
		// A fresh token at every login: whatever session the browser had
		// before (perhaps planted by someone else) is deleted.
		if err := s.sessions.Regenerate(r.Context(), sess); err != nil {
			return err
		}
		sess.Values[httpsession.KeyUser] = id
		sess.Values[httpsession.KeyDevice] = auth.Device(r.UserAgent())
		if n := networkOf(c.RealIP()); n != "" {
			sess.Values[httpsession.KeyNetwork] = n
		}
		if res.IDToken != "" {
			sess.Values[httpsession.KeyIDToken] = res.IDToken
		}
		if _, api := p.(auth.APIProvider); api && res.Token != nil && res.Token.AccessToken != "" {
			// Kept to call the provider's APIs as the user: sealed with
			// the record, never sent to the browser (apiaccess.go).
			sess.Values[httpsession.KeyTokens] = apitokens.FromOAuth2(res.Token, res.Scopes, s.now())
		}
		// Filed under the user (for "your sessions"), and under the
		// provider's subject and session, which a back-channel logout names.
		owners := []string{id.Owner(), auth.SubjectKey(p.Name(), res.Subject)}
		if res.SessionID != "" {
			owners = append(owners, auth.SessionKey(p.Name(), res.SessionID))
		}
		httpsession.SetOwners(sess, owners...)
		if err := sess.Save(r, c.Response()); err != nil {
			return err
		}
		s.Metrics.Login(p.Name(), "succeeded", "")
		s.Logger.Info("User logged in", "provider", id.Provider, "session", httpsession.InfoOf(sess).Key,
			"apiAccess", res.Token != nil, "refreshable", res.Token != nil && res.Token.RefreshToken != "")
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
	// API describes the provider access kept (apiaccess.go); absent when
	// none is.
	API *apiInfo `json:"api,omitempty"`
}

type sessionInfo struct {
	Store     string `json:"store"`
	CreatedAt string `json:"createdAt"` // jsonTime
	ExpiresAt string `json:"expiresAt"`
}

// me is GET /api/auth/me, behind requireUser: who is signed in.
func (s *server) me() echo.HandlerFunc {
	return func(c echo.Context) error {
		sess := loginOf(c)
		info := httpsession.InfoOf(sess)
		return c.JSON(http.StatusOK, meResponse{User: userOf(c), Session: sessionInfo{
			Store: s.StoreName, CreatedAt: jsonTime(info.CreatedAt), ExpiresAt: jsonTime(info.ExpiresAt),
		}, API: apiInfoOf(apitokens.Of(sess))})
	}
}

func (s *server) home() echo.HandlerFunc {
	return func(c echo.Context) error {
		data := homePage{page: s.withNotice(c, "Sign in"), Store: s.StoreName, Persistent: s.StorePersistent, PersistentStores: orList(s.PersistentStores),
			Demo: s.DevProvider != nil, Production: s.Production, SignIns: s.signInButtons(c.QueryParam("returnTo")), Started: s.when(s.StartedAt)}
		sess, user, ok, err := s.currentUser(c)
		if err != nil {
			if errors.Is(err, httpsession.ErrUnavailable) {
				data.StoreDown, data.Title = true, "Session store unavailable"
				return s.render(c, http.StatusServiceUnavailable, "home.html", data)
			}
			return err
		}
		info := httpsession.InfoOf(sess)
		if ok {
			data.User, data.Created, data.Expires = &user, s.when(info.CreatedAt), s.when(info.ExpiresAt)
			data.Title = "Signed in as " + user.DisplayName()
			data.Provider = s.providerLabel(user.Provider)
			data.Survived = !s.StartedAt.IsZero() && info.CreatedAt.Before(s.StartedAt)
		} else if info.Lost {
			data.Lost = true
			// The browser kept a cookie for a session that is gone; clear it.
			sess.Options.MaxAge = -1
			_ = sess.Save(c.Request(), c.Response())
		}
		return s.render(c, http.StatusOK, "home.html", data)
	}
}

// providerLabel is how people know the provider called name.
func (s *server) providerLabel(name string) string {
	if p := s.provider(name); p != nil {
		return p.Label()
	}
	return name
}

// signInButtons lists a button per provider, each coming back to returnTo
// (when it is a path on this site) after signing in.
func (s *server) signInButtons(returnTo string) []signInButton {
	query := ""
	if back := auth.SafeReturnPath(returnTo); back != "/" {
		query = "?returnTo=" + url.QueryEscape(back)
	}
	out := make([]signInButton, 0, len(s.Providers))
	for _, p := range s.Providers {
		text := "Sign in with " + p.Label()
		if p.Name() == "demo" {
			text = "Sign in with the development provider"
		}
		out = append(out, signInButton{Provider: p.Name(), Text: text, Href: "/api/auth/" + p.Name() + query})
	}
	return out
}

// healthResponse is the JSON of /healthz and /readyz.
type healthResponse struct {
	Status string `json:"status"`
	Store  string `json:"store,omitempty"`
	// Writes is "refused" while the store has refused a write for lack of
	// room within the last minute: sign-ins are paused, signed-in users are
	// served, and the instance stays ready (every instance shares the full
	// store, and taking them all out of the load balancer helps no one).
	Writes string `json:"writes,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *server) healthz() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, healthResponse{Status: "ok"})
	}
}

func (s *server) readyz() echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.stopping() {
			return c.JSON(http.StatusServiceUnavailable, healthResponse{Status: "draining", Store: s.StoreName})
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.Backend.Ping(ctx); err != nil {
			s.Logger.Warn("Readiness check failed", "store", s.StoreName, "error", err)
			return c.JSON(http.StatusServiceUnavailable, healthResponse{Status: "unavailable", Store: s.StoreName, Error: storeDownMessage})
		}
		ready := healthResponse{Status: "ready", Store: s.StoreName}
		if last := s.Metrics.LastWriteRefused(); !last.IsZero() && time.Since(last) < time.Minute {
			ready.Writes = "refused"
		}
		return c.JSON(http.StatusOK, ready)
	}
}
