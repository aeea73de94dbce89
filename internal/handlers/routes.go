package handlers

import (
	"net/http"

	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// addRoutes is the whole HTTP surface of the app. (HEAD is answered
// wherever GET is: see headAsGet.)
func addRoutes(e *echo.Echo, s *server) {
	e.Use(s.closeWhenDraining())
	e.Use(plainRequestID, middleware.RequestID())
	e.Use(middleware.Recover()) // a panic becomes a plain 500, never a trace
	e.Use(s.requestLogger())
	e.Use(s.securityHeaders())
	e.Use(noStore)
	e.Use(middleware.BodyLimit("64K"))
	e.Use(s.crossOriginProtection()) // every POST/PUT/PATCH/DELETE below
	e.Use(parseCookies, session.Middleware(s.sessions))

	// Public.
	e.GET("/", s.home())
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", echo.WrapHandler(s.Metrics.Handler()))
	e.Group("/static", staticCache).StaticFS("/", s.Static)

	// Signing in and out.
	e.GET("/api/auth/google", s.startLogin(), s.limitStarts)
	e.GET("/api/auth/google/callback", s.finishLogin())
	e.POST("/api/auth/logout", s.logout())
	if s.DevProvider != nil {
		e.Any(s.DevProviderPath+"/*", echo.WrapHandler(s.DevProvider))
	}

	// Signed in only: pages send visitors to sign in (and back here after),
	// the API answers them 401 {"error": "not signed in"}.
	page, api := s.requireUser(toSignIn), s.requireUser(notSignedIn)
	e.GET("/sessions", s.sessionsPage(), page)
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

	e.RouteNotFound("/*", func(echo.Context) error { return echo.NewHTTPError(http.StatusNotFound, "There is no page here.") })
}
