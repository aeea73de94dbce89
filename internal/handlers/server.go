// Package handlers is the HTTP surface: every route is in routes.go, the
// handlers beside it close over what they need. New builds the whole handler
// from its dependencies; nothing here is global.
//
// Build your own pages and APIs in app.go: routes in the groups that
// requireUser guards get the signed-in user from userOf(c).
package handlers

import (
	"bytes"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"example.com/oauth-sessions/internal/apiproxy"
	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/metrics"
	// BEGIN remove:notes
	"example.com/oauth-sessions/internal/notes"
	// END remove:notes
	"example.com/oauth-sessions/internal/ratelimit"
	"example.com/oauth-sessions/internal/sessionstore"
)

// Deps is everything the handlers need.
type Deps struct {
	// AppName is the app's name on every page (APP_NAME).
	AppName   string
	Logger    *slog.Logger
	Backend   sessionstore.Backend
	Cache     *httpsession.Cache // nil: every session check reads the store
	StoreName string             // the SESSION_STORE backend: "sqlite", "memory", ...
	// StorePersistent: the store keeps sessions across restarts (the
	// home page promises it only then).
	StorePersistent bool
	// PersistentStores are the built-in stores that keep sessions across
	// restarts, the default first: the home page suggests them.
	PersistentStores []string
	// StartedAt is when this server process started: the home page shows
	// it, and says so when a session is older.
	StartedAt time.Time
	Codec     *httpsession.Codec
	// Providers are the ways to sign in, in the order of their buttons;
	// each has its routes below /api/auth/{Name}.
	Providers []auth.Provider
	Metrics   *metrics.Metrics
	// DevProvider, when set, is the built-in demo provider, mounted below
	// DevProviderPath (its relying-party side is the "demo" provider).
	DevProvider     http.Handler
	DevProviderPath string

	Production     bool
	BaseURL        *url.URL
	TrustProxy     bool
	SessionTTL     time.Duration
	IdleTimeout    time.Duration
	TouchAfter     time.Duration
	AllowedDomains []string

	Templates *template.Template
	Static    fs.FS
	// Stopping is closed when the process starts shutting down: /readyz
	// then answers 503 and responses close their connections while the
	// server drains.
	Stopping <-chan struct{}
	// Traced: requests come with a server span (OpenTelemetry), which the
	// handler names by its route.
	Traced bool
	// Now is the clock of the session layer (time.Now when nil).
	Now func() time.Time
	// Sign-in starts are limited, the cheap checks first, so that a start
	// refused in process writes nothing anywhere (SECURITY.md: cost):
	// LoginLocal is this instance's view of each client address's budget;
	// LoginFreshCeiling and LoginCeiling cap, for the whole instance, the
	// first start of an address whose budget is whole and the others, so
	// that a flood from known addresses cannot take the places of new
	// visitors; LoginShared is the address's budget counted for every
	// instance (in a shared store that counts), nil when the store does
	// not count for all.
	// Nil limiters are no limit (tests of other things).
	LoginLocal                      *ratelimit.Memory
	LoginFreshCeiling, LoginCeiling ratelimit.Limiter
	LoginShared                     ratelimit.Limiter
	// LogoutFailures limits, per client address, the back-channel logout
	// requests that fail (a forged, invalid or replayed token): an address
	// over it is refused before its token is checked. A valid token never
	// counts, so a flood of forged ones cannot crowd out the provider's.
	// Nil: no limit.
	LogoutFailures *ratelimit.Memory
	// LogoutVerifications bounds the logout tokens checked at once, and so
	// the CPU a flood of them can take; the others wait their turn (up to
	// logoutVerifyWait). 0: no bound.
	LogoutVerifications int
	// APIProxy, when set, forwards /api/remote/{name}/… to the remote
	// APIs configured (API_PROXY) with the user's access token
	// (apiaccess.go).
	APIProxy *apiproxy.Proxy
	// BEGIN remove:notes

	// Notes keeps each user's notes (notes.go): the example of the app's
	// own data, in a database of its own whatever the session store.
	Notes notes.Store
	// END remove:notes
}

// server holds the dependencies and the session layer built on them.
type server struct {
	Deps
	sessions *httpsession.Manager
	tokens   *apitokens.Keeper // the providers' tokens kept in sessions
	cookies  cookies
	// verifySlots holds a token per logout token being checked.
	verifySlots chan struct{}
	refused     *refusals
	// pagePaths are the /api/ routes a browser navigates to (a provider's
	// start and callback): their errors are pages, not JSON.
	pagePaths map[string]bool
}

// Cookie names of the two kinds of session (with "__Host-" in front when
// the cookies are Secure).
const (
	loginCookie = "sid"    // a signed-in user
	flowCookie  = "oauth_" // + a hash of the state: one per started login
)

// New returns the application's HTTP handler.
func New(d Deps) http.Handler {
	s := &server{Deps: d, cookies: cookies{production: d.Production, trustProxy: d.TrustProxy}, pagePaths: map[string]bool{}}
	s.refused = newRefusals(d.Logger, s.now)
	if d.LogoutVerifications > 0 {
		s.verifySlots = make(chan struct{}, d.LogoutVerifications)
	}
	s.sessions = httpsession.NewManager(d.Backend, d.Codec, httpsession.Options{
		Kinds: []httpsession.Kind{
			{Name: httpsession.KindLogin, Cookie: loginCookie, TTL: d.SessionTTL, IdleTimeout: d.IdleTimeout, TouchAfter: d.TouchAfter, Cache: d.Cache},
			{Name: httpsession.KindFlow, Cookie: flowCookie, Prefix: true, TTL: auth.FlowTTL},
		},
		Cookie: s.cookies.attributes, Now: d.Now, Logger: d.Logger, Rejected: d.Metrics.CookieRejected,
	})
	s.tokens = &apitokens.Keeper{Sessions: s.sessions, Metrics: d.Metrics, Logger: d.Logger, Now: d.Now}
	for _, p := range d.Providers {
		if _, ok := p.(auth.APIProvider); ok {
			d.Metrics.TokenProvider(p.Name())
		}
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = s.clientAddr
	addRoutes(e, s)
	return headAsGet(e)
}

// cookies decides every cookie attribute in one place.
type cookies struct {
	production, trustProxy bool
}

// secure reports whether this request's cookies must be Secure: always in
// production, and in development when the request came over HTTPS.
func (c cookies) secure(r *http.Request) bool {
	if c.production || r.TLS != nil {
		return true
	}
	return c.trustProxy && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// name returns the cookie name for base: with the __Host- prefix whenever
// the cookie is Secure, so the browser pins it to this host and path "/".
func (c cookies) name(r *http.Request, base string) string {
	if c.secure(r) {
		return "__Host-" + base
	}
	return base
}

// attributes sets every attribute explicitly: gorilla/sessions' defaults
// changed in v1.3 and differ between stores. Lax, not Strict: the OAuth
// callback is a cross-site top-level navigation that must carry the cookie.
func (c cookies) attributes(r *http.Request) sessions.Options {
	return sessions.Options{Path: "/", HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteLaxMode}
}

// clientAddr is the client's address, as logs show it and limits count it:
// the socket's peer, or with TRUST_PROXY the right-most X-Forwarded-For
// entry, the one the proxy added (everything left of it the client may
// have written itself).
func (s *server) clientAddr(r *http.Request) string {
	if s.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if addr, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return addr.Unmap().String()
			}
		}
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return r.RemoteAddr
}

// limitKey is what a client's limit is counted under: its IPv4 address, or
// its IPv6 /64 (one machine usually holds a whole /64).
func limitKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Is4() {
		return addr
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// errorBody is the one shape of every JSON error.
type errorBody struct {
	Error string `json:"error"`
}

// okBody answers a state change that has nothing else to say.
type okBody struct {
	OK bool `json:"ok"`
}

// pageError is an error with the page a person should see.
type pageError struct {
	status int
	title  string
	detail string
	retry  string // a link that tries again, if any
	cause  error
}

func (e *pageError) Error() string {
	if e.cause != nil {
		return e.title + ": " + e.cause.Error()
	}
	return e.title
}

func (e *pageError) Unwrap() error { return e.cause }

const (
	storeDownMessage = "The session store is not answering right now. Please try again in a moment."
	storeFullMessage = "The session store is full, so new sign-ins are paused. If you are signed in, carry on; otherwise please try again later."
)

// handleError is the single place where an error becomes a response: JSON
// for /api/ and health routes, an HTML page otherwise; never a stack trace.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, title, detail := http.StatusInternalServerError, "Something went wrong", "The server could not complete this request. Please try again; if it keeps happening, quote the request id below."
	retry := ""
	var pe *pageError
	var he *echo.HTTPError
	switch {
	case errors.Is(err, sessionstore.ErrFull):
		s.Metrics.WriteRefused()
		status, title, detail = http.StatusServiceUnavailable, "Signing in is paused", storeFullMessage
	case errors.Is(err, httpsession.ErrUnavailable):
		status, title, detail = http.StatusServiceUnavailable, "Session store unavailable", storeDownMessage
		retry = c.Request().URL.RequestURI()
	case errors.As(err, &pe):
		status, title, detail, retry = pe.status, pe.title, pe.detail, pe.retry
	case errors.As(err, &he):
		status = he.Code
		title = http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			detail = m
		} else {
			detail = title
		}
		if he.Code == http.StatusNotFound {
			title = "Page not found"
		}
	}
	// Refusals (4xx) are logged where they are decided, when they matter:
	// one line per anonymous request here would drown the rest.
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelError
	}
	s.Logger.Log(c.Request().Context(), level, "request failed", "status", status,
		"method", c.Request().Method, "path", c.Request().URL.Path, "request_id", requestID(c), "error", err.Error())

	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	if s.wantsJSON(c) {
		_ = c.JSON(status, errorBody{Error: detail})
		return
	}
	if c.Request().Method != http.MethodGet {
		retry = "" // only a GET can be tried again by a link
	}
	_ = s.render(c, status, "error.html", errorPage{page: s.newPage(title), Status: status, Detail: detail, RequestID: requestID(c), Retry: retry})
}

func (s *server) wantsJSON(c echo.Context) bool {
	if strings.Contains(c.Request().Header.Get("Accept"), "application/json") {
		return true
	}
	p := c.Request().URL.Path
	if s.pagePaths[p] {
		return false // browser navigations: show a page
	}
	return strings.HasPrefix(p, "/api/") || p == "/healthz" || p == "/readyz"
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

// render executes a page template; a template error is a 500 with a
// plain message, logged.
// newPage starts the data of a page called title.
func (s *server) newPage(title string) page {
	return page{App: s.AppName, Title: title}
}

// withNotice starts the data of a page that shows the request's one-time
// notice, if it has one.
func (s *server) withNotice(c echo.Context, title string) page {
	p := s.newPage(title)
	p.Notice = s.takeNotice(c)
	return p
}

func (s *server) render(c echo.Context, status int, name string, data any) error {
	var b bytes.Buffer
	if err := s.Templates.ExecuteTemplate(&b, name, data); err != nil {
		s.Logger.Error("template failed", "template", name, "error", err)
		return c.String(http.StatusInternalServerError, "internal error")
	}
	return c.HTMLBlob(status, b.Bytes())
}

// headAsGet answers HEAD wherever GET is answered: the request is routed
// as a GET, and net/http drops the body, because the server's own copy of
// the request stays HEAD. (Echo routes HEAD only where it is registered.)
func headAsGet(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			get := r.Clone(r.Context())
			get.Method = http.MethodGet
			r = get
		}
		h.ServeHTTP(w, r)
	})
}

// plainRequestID drops a client's X-Request-Id unless it is short and
// plain, so the one the app logs and echoes is never a client's payload
// (then RequestID makes a fresh one).
func plainRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !plainID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func plainID(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':') {
			return false
		}
	}
	return true
}

// clip shortens a value from outside (a provider's error code) for logs
// and pages: at most n bytes, printable ASCII only.
func clip(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// noStore marks every response not to be cached: pages and API answers
// show or change a session, and a shared cache or the Back button must
// never replay them. It is the one place Cache-Control is set; the static
// files' route overrides it.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return next(c)
	}
}

// favicon answers /favicon.ico with the app's icon (an SVG, which
// browsers take whatever the name says).
func (s *server) favicon() echo.HandlerFunc {
	return func(c echo.Context) error {
		b, err := fs.ReadFile(s.Static, "favicon.svg")
		if err != nil {
			return echo.NewHTTPError(http.StatusNotFound, "There is no icon here.")
		}
		return c.Blob(http.StatusOK, "image/svg+xml", b)
	}
}

// staticCache lets browsers keep the CSS and scripts for an hour.
func staticCache(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Only a file that is there may be kept: a 404 stays no-store, so
		// a file added later is not hidden by a cached miss.
		res := c.Response()
		res.Before(func() {
			if res.Status < 300 || res.Status == http.StatusNotModified {
				res.Header().Set(echo.HeaderCacheControl, "public, max-age=3600")
			}
		})
		return next(c)
	}
}

// routeOf is the template of the route that answered c ("" for none: the
// not-found catch-all).
func routeOf(c echo.Context) string {
	if p := c.Path(); p != "/*" {
		return p
	}
	return ""
}

// requestLogger logs one structured line per request (and counts it); never cookies or
// query strings (they carry codes and state).
func (s *server) requestLogger() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogLatency: true, LogMethod: true, LogURIPath: true, LogRequestID: true, LogRemoteIP: true,
		// The error handler writes the answer first, so the line and the
		// metrics carry the status the client got (a pageError included).
		HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			s.Metrics.Request(v.Method, routeOf(c), v.Status, v.Latency)
			if reason, ok := c.Get(refusedKey).(string); ok {
				s.refused.note(c.Path(), v.Status, reason)
				return nil
			}
			s.refused.flush(s.now())
			attrs := []slog.Attr{slog.String("method", v.Method), slog.String("path", v.URIPath), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency), slog.String("request_id", v.RequestID), slog.String("ip", v.RemoteIP)}
			if sc := trace.SpanContextFromContext(c.Request().Context()); sc.IsValid() {
				// The line joins the request's trace (tracing on).
				attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
			}
			s.Logger.LogAttrs(c.Request().Context(), slog.LevelInfo, "request", attrs...)
			return nil
		},
	})
}

// nameSpans names the request's server span (tracing on) by its route
// template, "GET /api/auth/sessions/:id", never by its path: a span name
// per URL would make traces as unsearchable as a metric label per URL.
func nameSpans(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		route := routeOf(c)
		if route == "" {
			route = "unmatched"
		}
		span := trace.SpanFromContext(c.Request().Context())
		span.SetName(c.Request().Method + " " + route)
		span.SetAttributes(attribute.String("http.route", route))
		return next(c)
	}
}

// securityHeaders sets the headers every response carries.
func (s *server) securityHeaders() echo.MiddlewareFunc {
	hsts := 0
	if s.Production {
		hsts = 63072000
	}
	secure := middleware.SecureWithConfig(middleware.SecureConfig{
		ContentTypeNosniff: "nosniff",
		XFrameOptions:      "DENY",
		HSTSMaxAge:         hsts,
		ReferrerPolicy:     "same-origin",
	})
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		next = secure(next)
		return func(c echo.Context) error {
			c.Response().Header().Set(echo.HeaderContentSecurityPolicy, s.contentSecurityPolicy())
			return next(c)
		}
	}
}

// contentSecurityPolicy allows no inline styles or scripts anywhere, and
// forms that post only here, or end up, through the sign-out's redirect,
// at a provider's end_session_endpoint (browsers apply form-action to a
// form's redirects too).
func (s *server) contentSecurityPolicy() string {
	var b strings.Builder
	b.WriteString("default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	for _, p := range s.Providers {
		if lp, ok := p.(auth.LogoutProvider); ok {
			for _, o := range lp.SignOutOrigins() {
				b.WriteString(" ")
				b.WriteString(o)
			}
		}
	}
	return b.String()
}

func (s *server) stopping() bool {
	select {
	case <-s.Stopping:
		return true
	default:
		return false
	}
}

// closeWhenDraining asks clients to close their connection after each
// response once shutdown has begun, so keep-alive connections end cleanly
// here rather than being cut when the server stops.
func (s *server) closeWhenDraining() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.stopping() {
				c.Response().Header().Set(echo.HeaderConnection, "close")
			}
			return next(c)
		}
	}
}

// crossOriginProtection refuses cross-origin state-changing requests using
// the standard library's Fetch-metadata/Origin check.
func (s *server) crossOriginProtection() echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	// Providers post logout tokens server to server; the token's signature
	// is the protection there, and the route reads no cookie.
	cop.AddInsecureBypassPattern("POST " + backchannelPattern)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := cop.Check(c.Request()); err != nil {
				markRefused(c, "cross_origin")
				return c.JSON(http.StatusForbidden, errorBody{Error: "cross-origin request refused"})
			}
			return next(c)
		}
	}
}
