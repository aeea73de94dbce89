package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/auth"
)

// BenchmarkRoutes is the app's whole handler (every middleware) in process,
// without the network: /healthz against /api/auth/me with a live session,
// with and without the session cache. The difference is what a session
// check costs on top of a request.
func BenchmarkRoutes(b *testing.B) {
	for _, withCache := range []bool{true, false} {
		app := newApp(b, withCache)
		cookie := app.session(b, auth.Identity{ID: "dev|ada", Email: "ada@example.com", Name: "Ada Lovelace", Provider: "demo"})
		h := app.handler
		name := "me"
		if !withCache {
			name = "me-uncached"
		}
		// me-fake-cookies is the signed-in request carrying 2,500 made-up
		// flow cookies besides its own (a 30 KB header): the app's cost of
		// such a request should stay near me's (SECURITY.md).
		var fake strings.Builder
		for i := range 2500 {
			fmt.Fprintf(&fake, "oauth_%04x=x; ", i)
		}
		for _, rt := range []struct{ name, path, extra string }{{"healthz", "/healthz", ""}, {name, "/api/auth/me", ""}, {name + "-fake-cookies", "/api/auth/me", fake.String()}} {
			if rt.name == "healthz" && !withCache {
				continue
			}
			b.Run(rt.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest(http.MethodGet, rt.path, nil)
					if rt.extra != "" {
						req.Header.Set("Cookie", rt.extra)
					}
					req.AddCookie(cookie)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("%s = %d %s", rt.path, rec.Code, rec.Body)
					}
				}
			})
		}
	}
}
