package storetest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
)

// Bench measures a backend's operations and the whole per-request session
// load (cookie check, store read, record decrypt and decode) over it.
// Each backend's test file calls it from a Benchmark function.
func Bench(b *testing.B, s sessionstore.Backend) {
	ctx := context.Background()
	data := make([]byte, 400) // about a sealed login record
	exp := time.Now().Add(time.Hour)
	const keys = 1000
	for i := range keys {
		if err := s.Save(ctx, sessionstore.Entry{Key: fmt.Sprint("bench-", i), Owners: []string{"o"}, Data: data, SeenAt: time.Now(), ExpiresAt: exp}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Find", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, found, err := s.Find(ctx, fmt.Sprint("bench-", i%keys)); err != nil || !found {
				b.Fatal(err, found)
			}
			i++
		}
	})
	b.Run("Save", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.Save(ctx, sessionstore.Entry{Key: fmt.Sprint("bench-", i%keys), Owners: []string{"o"}, Data: data, SeenAt: time.Now(), ExpiresAt: exp}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Touch", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.Touch(ctx, fmt.Sprint("bench-", i%keys), time.Now(), exp); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Delete", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := s.Delete(ctx, fmt.Sprint("gone-", i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("SessionLoad", func(b *testing.B) { benchLoad(b, s, nil) })
	if feed, ok := sessionstore.As[sessionstore.ChangeFeed](s); ok {
		// The same with the app's session cache: what a request pays when
		// its session was checked before and nobody has written it since.
		b.Run("SessionLoadCached", func(b *testing.B) {
			cache := httpsession.NewCache(feed, 100)
			waitSynced(b, feed)
			benchLoad(b, s, cache)
		})
	}
}

// benchLoad measures the whole per-request work of the session layer.
func benchLoad(b *testing.B, s sessionstore.Store, cache *httpsession.Cache) {
	codec, _ := httpsession.NewCodec([]string{"bench-secret-0123456789abcdef0123456789"}, 3600)
	g := loginManager(s, codec, httpsession.Kind{TTL: time.Hour, TouchAfter: time.Minute, Cache: cache}, time.Now)
	cookie, _ := signIn(b, g, map[string]string{"id": "dev|ada", "email": "ada@example.com", "name": "Ada Lovelace", "provider": "google"})
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(cookie)
		if s, err := g.New(r, "sid"); err != nil || s.IsNew {
			b.Fatal("session not loaded", err)
		}
	}
}
