package handlers

import (
	"net/http"

	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// addRoutes is the whole HTTP surface of the app.
func addRoutes(e *echo.Echo, s *server) {
	e.Use(s.closeWhenDraining())
	e.Use(middleware.RequestID())
	e.Use(middleware.Recover()) // a panic becomes a plain 500, never a trace
	e.Use(s.requestLogger())
	e.Use(s.securityHeaders())
	e.Use(middleware.BodyLimit("64K"))
	e.Use(s.crossOriginProtection()) // every POST/PUT/PATCH/DELETE below
	e.Use(session.Middleware(s.login))

	e.GET("/", s.home())
	e.GET("/sessions", s.sessionsPage())
	e.GET("/healthz", s.healthz())
	e.GET("/readyz", s.readyz())
	e.GET("/metrics", echo.WrapHandler(s.Metrics.Handler()))

	e.GET("/api/auth/google", s.startLogin())
	e.GET("/api/auth/google/callback", s.finishLogin())
	e.GET("/api/auth/me", s.me())
	e.POST("/api/auth/logout", s.logout())
	e.GET("/api/auth/sessions", s.listSessions())
	e.DELETE("/api/auth/sessions/:id", s.revokeSession())
	e.POST("/api/auth/sessions/revoke-others", s.revokeOtherSessions())

	e.StaticFS("/static", s.Static)
	if s.DevProvider != nil {
		e.Any(s.DevProviderPath+"/*", echo.WrapHandler(s.DevProvider))
	}
	e.RouteNotFound("/*", func(echo.Context) error { return echo.NewHTTPError(http.StatusNotFound, "There is no page here.") })
}
