package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/telemetry"
	"example.com/oauth-sessions/internal/telemetry/otlptest"
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

// BenchmarkProfile is GET /api/app/profile, the provider's UserInfo called
// with the user's access token (the demo provider, in process): with a
// fresh token, and with one that is always about to expire, so that
// every call refreshes it first (the lock, the marker, the provider's
// token endpoint, the write, then the call).
func BenchmarkProfile(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"fresh", 0}, {"at-expiry", time.Second}} {
		b.Run(bc.name, func(b *testing.B) {
			app := newAppWith(b, appOptions{cache: true, accessTTL: bc.ttl})
			c := app.browser()
			signIn(b, c, "/")
			b.ReportAllocs()
			for b.Loop() {
				res, err := c.Get(base + "/api/app/profile")
				if err != nil {
					b.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("/api/app/profile = %d", res.StatusCode)
				}
			}
		})
	}
}

// BenchmarkTracing is /api/auth/me, the plain signed-in request, through
// the whole handler with OpenTelemetry tracing off (the default: nothing
// wraps the handler), and on, sampling every request or one in ten, its
// spans exported over OTLP/HTTP to a receiver in this process.
func BenchmarkTracing(b *testing.B) {
	for _, bc := range []struct {
		name string
		on   bool
		arg  float64
	}{{"off", false, 0}, {"on-100pct", true, 1}, {"on-10pct", true, 0.1}} {
		b.Run(bc.name, func(b *testing.B) {
			var tracing *telemetry.Tracing
			if bc.on {
				recv := otlptest.Start(b)
				var err error
				tracing, err = telemetry.New(b.Context(), telemetry.Config{Endpoint: recv.URL, Sampler: "parentbased_traceidratio", SamplerArg: bc.arg, ServiceName: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = tracing.Shutdown(context.Background()) })
			}
			app := newAppWith(b, appOptions{cache: true, tracing: tracing})
			cookie := app.session(b, auth.Identity{ID: "dev|ada", Email: "ada@example.com", Name: "Ada Lovelace", Provider: "demo"})
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/api/auth/me", nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				app.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("/api/auth/me = %d", rec.Code)
				}
			}
		})
	}
}
