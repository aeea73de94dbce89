package handlers_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/example/oauth-sessions/internal/auth"
	"github.com/example/oauth-sessions/internal/handlers"
	"github.com/example/oauth-sessions/internal/metrics"
	"github.com/example/oauth-sessions/internal/sessionstore"
	"github.com/example/oauth-sessions/internal/sessionstore/memstore"
)

// BenchmarkRoutes is the app's whole handler (every middleware) in process,
// without the network: /healthz against /api/auth/me with a live session,
// with and without the session cache. The difference is what a session
// check costs on top of a request.
func BenchmarkRoutes(b *testing.B) {
	codec, err := sessionstore.NewCodec([]string{"bench-secret-0123456789abcdef0123456789"}, 3600)
	if err != nil {
		b.Fatal(err)
	}
	for _, withCache := range []bool{true, false} {
		mem := memstore.New(0)
		defer mem.Close()
		var cache *sessionstore.Cache
		if withCache {
			cache = sessionstore.NewCache(mem, 100)
		}
		m := metrics.New()
		h := handlers.New(handlers.Deps{
			Logger: slog.New(slog.DiscardHandler), Backend: m.Store("memory", mem), Cache: cache,
			StoreName: "memory", Codec: codec, Metrics: m, SessionTTL: time.Hour, TouchAfter: time.Minute,
		})
		// The session a sign-in leaves: the same adapter and cookie name.
		g := sessionstore.NewGorillaStore(mem, codec, sessionstore.Options{Kind: "login", TTL: time.Hour})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		w := httptest.NewRecorder()
		s := g.Fresh(r, "sid")
		s.Values["user"] = auth.Identity{ID: "dev|ada", Email: "ada@example.com", Name: "Ada Lovelace", Provider: "demo"}
		if err := s.Save(r, w); err != nil {
			b.Fatal(err)
		}
		cookie := w.Result().Cookies()[0]
		name := "me"
		if !withCache {
			name = "me-uncached"
		}
		for _, rt := range []struct{ name, path string }{{"healthz", "/healthz"}, {name, "/api/auth/me"}} {
			if rt.name == "healthz" && !withCache {
				continue
			}
			b.Run(rt.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest(http.MethodGet, rt.path, nil)
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
