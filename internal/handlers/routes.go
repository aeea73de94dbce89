package handlers

import (
	"net/http"
	"strings"

	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"example.com/oauth-sessions/internal/apiproxy"
	"example.com/oauth-sessions/internal/auth"
)

// addRoutes is the whole HTTP surface of the app. (HEAD is answered
// wherever GET is: see headAsGet.)
func addRoutes(e *echo.Echo, s *server) {
	if s.Traced {
		e.Use(nameSpans)
	}
	e.Use(s.closeWhenDraining())
	e.Use(plainRequestID, middleware.RequestID())
	e.Use(middleware.Recover()) // a panic becomes a plain 500, never a trace
	e.Use(s.requestLogger())
	e.Use(s.securityHeaders())
	e.Use(noStore)
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: "64K",
		// The remote APIs' proxy has its own limit, checked once the
		// user is known (apiproxy.Options.MaxBody).
		Skipper: func(c echo.Context) bool {
			return s.APIProxy != nil && strings.HasPrefix(c.Request().URL.Path, apiproxy.Mount)
		}}))
	e.Use(s.crossOriginProtection()) // every POST/PUT/PATCH/DELETE below
	e.Use(session.Middleware(s.sessions))

	// Public.
	e.GET("/", s.home())
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", echo.WrapHandler(s.Metrics.Handler()))
	e.GET("/favicon.ico", s.favicon(), staticCache) // browsers ask for it whatever the page says
	e.Group("/static", staticCache).StaticFS("/", s.Static)

	// Signing in and out, per provider p (its Name: google, demo, ...):
	//   GET  /api/auth/{p}                      start, to the provider
	//   GET  /api/auth/{p}/callback             its answer
	//   POST /api/auth/{p}/backchannel-logout   its logout tokens (OpenID Connect)
	for _, p := range s.Providers {
		start, callback := "/api/auth/"+p.Name(), "/api/auth/"+p.Name()+"/callback"
		e.GET(start, s.startLogin(p), s.limitStarts)
		e.GET(callback, s.finishLogin(p))
		s.pagePaths[start], s.pagePaths[callback] = true, true
		if lp, ok := p.(auth.LogoutProvider); ok {
			e.POST(strings.Replace(backchannelPattern, "{provider}", p.Name(), 1), s.backchannelLogout(lp))
			s.Metrics.BackchannelProvider(p.Name())
		}
	}
	if s.DevProvider != nil {
		e.Any(s.DevProviderPath+"/*", echo.WrapHandler(s.DevProvider))
		if s.provider("google") == nil {
			// The original guide's /api/auth/google works out of the box:
			// without Google credentials it starts the demo login.
			e.GET("/api/auth/google", s.startLogin(s.provider("demo")), s.limitStarts)
			s.pagePaths["/api/auth/google"] = true
		}
	}
	e.POST("/api/auth/logout", s.logout())

	// Signed in only: pages send visitors to sign in (and back here after),
	// the API answers them 401 {"error": "not signed in"}.
	page, api := s.requireUser(s.toSignIn), s.requireUser(notSignedIn)
	e.GET("/sessions", s.sessionsPage(), page)
	e.POST("/sessions/revoke", s.revokeForm(), page)
	e.POST("/sessions/revoke-others", s.revokeOthersForm(), page)
	e.GET("/api/auth/me", s.me(), api)
	e.GET("/api/auth/sessions", s.listSessions(), api)
	e.DELETE("/api/auth/sessions/:id", s.revokeSession(), api)
	e.POST("/api/auth/sessions/revoke-others", s.revokeOtherSessions(), api)

	// Your app (app.go): every route in these two groups is for signed-in
	// users, and its handler gets the user from userOf(c).
	app := e.Group("/app", page)
	app.GET("", s.appHome())
	appAPI := e.Group("/api/app", api)
	appAPI.GET("/hello", s.hello())
	appAPI.GET("/profile", s.profile()) // the provider's API, as the user (apiaccess.go)
	if s.APIProxy != nil {
		// A single-page app's calls to remote APIs, as the user (API_PROXY).
		e.Any(apiproxy.Mount+"*", s.remote(), api)
	}
	// BEGIN remove:notes
	// The notes (notes.go), the example of your app's own data.
	app.POST("/notes", s.addNoteForm())
	app.POST("/notes/:id/delete", s.deleteNoteForm())
	appAPI.GET("/notes", s.listNotes())
	appAPI.POST("/notes", s.addNote())
	appAPI.DELETE("/notes/:id", s.deleteNote())
	// END remove:notes

	e.RouteNotFound("/*", func(echo.Context) error {
		return echo.NewHTTPError(http.StatusNotFound, "There is nothing at this address: the link may be mistyped, or the page may have moved.")
	})
}
