package httpsession_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/fakeclock"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/memstore"
)

// counting wraps a real backend and counts writes.
type counting struct {
	sessionstore.Backend
	finds, saves, touches atomic.Int64
}

func (c *counting) Find(ctx context.Context, k string) (sessionstore.Entry, bool, error) {
	c.finds.Add(1)
	return c.Backend.Find(ctx, k)
}

func (c *counting) Save(ctx context.Context, e sessionstore.Entry) error {
	c.saves.Add(1)
	return c.Backend.Save(ctx, e)
}

func (c *counting) Touch(ctx context.Context, k string, seen, exp time.Time) error {
	c.touches.Add(1)
	return c.Backend.Touch(ctx, k, seen, exp)
}

// newStore returns a manager of login sessions ("sid") like kind over a
// memory store, both on a fake clock the test moves.
func newStore(t *testing.T, kind httpsession.Kind) (*httpsession.Manager, *counting, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	mem := memstore.New(memstore.Options{Now: clock.Now})
	t.Cleanup(func() { mem.Close() })
	b := &counting{Backend: mem}
	codec, err := httpsession.NewCodec([]string{"a-secret-for-tests-0123456789abcdef"}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	kind.Name, kind.Cookie = httpsession.KindLogin, "sid"
	if kind.TTL == 0 {
		kind.TTL = time.Hour
	}
	return httpsession.NewManager(b, codec, httpsession.Options{Kinds: []httpsession.Kind{kind}, Now: clock.Now}), b, clock
}

// request runs one request carrying cookie through fn and returns the
// response's cookie (or the one sent if none was set).
func request(t *testing.T, g *httpsession.Manager, cookie *http.Cookie, fn func(*http.Request, http.ResponseWriter)) *http.Cookie {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	fn(r, w)
	for _, c := range w.Result().Cookies() {
		return c
	}
	return cookie
}

func TestUnchangedSessionIsNotWritten(t *testing.T) {
	g, b, _ := newStore(t, httpsession.Kind{})
	c := request(t, g, nil, func(r *http.Request, w http.ResponseWriter) {
		s, _ := g.Get(r, "sid")
		s.Values["user"] = "ada"
		if err := s.Save(r, w); err != nil {
			t.Fatal(err)
		}
	})
	if b.saves.Load() != 1 {
		t.Fatalf("saves = %d, want 1", b.saves.Load())
	}
	for range 5 {
		request(t, g, c, func(r *http.Request, w http.ResponseWriter) {
			s, err := g.Get(r, "sid")
			if err != nil || s.IsNew {
				t.Fatalf("session not loaded: %v", err)
			}
			if v, _ := httpsession.Value[string](s, "user"); v != "ada" {
				t.Fatalf("user = %q", v)
			}
			_ = s.Save(r, w) // nothing changed: no write
		})
	}
	if b.saves.Load() != 1 || b.touches.Load() != 0 {
		t.Fatalf("after 5 unchanged requests: %d saves, %d touches; want 1 and 0", b.saves.Load(), b.touches.Load())
	}
}

func TestEmptySessionIsNotWritten(t *testing.T) {
	g, b, _ := newStore(t, httpsession.Kind{})
	c := request(t, g, nil, func(r *http.Request, w http.ResponseWriter) {
		s, _ := g.Get(r, "sid")
		_ = s.Save(r, w)
	})
	if b.saves.Load() != 0 || c != nil {
		t.Fatalf("an empty session wrote %d records and cookie %v", b.saves.Load(), c)
	}
}

func TestIdleTimeoutAndLazyTouch(t *testing.T) {
	g, b, clock := newStore(t, httpsession.Kind{IdleTimeout: 2 * time.Second, TouchAfter: time.Second})
	c := request(t, g, nil, func(r *http.Request, w http.ResponseWriter) {
		s, _ := g.Get(r, "sid")
		s.Values["user"] = "ada"
		_ = s.Save(r, w)
	})
	read := func() bool {
		found := false
		request(t, g, c, func(r *http.Request, w http.ResponseWriter) {
			s, _ := g.Get(r, "sid")
			found = !s.IsNew
		})
		return found
	}
	// Reads within the touch interval do not write.
	for range 3 {
		if !read() {
			t.Fatal("session lost while in use")
		}
	}
	if b.touches.Load() != 0 {
		t.Fatalf("%d touches within the touch interval, want 0", b.touches.Load())
	}
	// Keep using it past the idle timeout: lazy touches keep it alive.
	for range 3 {
		clock.Advance(1100 * time.Millisecond)
		if !read() {
			t.Fatal("an active session hit the idle timeout")
		}
	}
	if n := b.touches.Load(); n != 3 {
		t.Fatalf("%d touches over 3.3s with TouchAfter=1s, one read every 1.1s; want 3", n)
	}
	// Left alone longer than the idle timeout, it ends.
	clock.Advance(2100 * time.Millisecond)
	if read() {
		t.Fatal("an idle session outlived SESSION_IDLE_TIMEOUT")
	}
}

func TestAbsoluteLifetimeIsNotExtended(t *testing.T) {
	g, _, clock := newStore(t, httpsession.Kind{TTL: 1500 * time.Millisecond, IdleTimeout: time.Hour, TouchAfter: 0})
	c := request(t, g, nil, func(r *http.Request, w http.ResponseWriter) {
		s, _ := g.Get(r, "sid")
		s.Values["user"] = "ada"
		_ = s.Save(r, w)
	})
	if c.MaxAge < 1 || c.MaxAge > 2 {
		t.Fatalf("cookie Max-Age %d, want the 1.5s lifetime rounded up", c.MaxAge)
	}
	clock.Advance(1600 * time.Millisecond)
	request(t, g, c, func(r *http.Request, w http.ResponseWriter) {
		if s, _ := g.Get(r, "sid"); !s.IsNew {
			t.Fatal("session outlived its absolute lifetime")
		}
	})
}

func TestRegenerateIssuesANewToken(t *testing.T) {
	g, _, _ := newStore(t, httpsession.Kind{})
	first := request(t, g, nil, func(r *http.Request, w http.ResponseWriter) {
		s, _ := g.Get(r, "sid")
		s.Values["user"] = "planted"
		_ = s.Save(r, w)
	})
	second := request(t, g, first, func(r *http.Request, w http.ResponseWriter) {
		s, _ := g.Get(r, "sid")
		if err := g.Regenerate(r.Context(), s); err != nil {
			t.Fatal(err)
		}
		s.Values["user"] = "ada"
		_ = s.Save(r, w)
	})
	if second.Value == first.Value {
		t.Fatal("the session token did not change")
	}
	request(t, g, first, func(r *http.Request, w http.ResponseWriter) {
		if s, _ := g.Get(r, "sid"); !s.IsNew {
			t.Fatal("the pre-login session still works")
		}
	})
}
