package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"example.com/oauth-sessions/internal/apitokens"
	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/metrics"
)

// The refresh of a user's provider tokens (package apitokens) runs on the
// store's contract alone: a lock that is a record put only if absent
// (Insert), the session re-read past any cache (Find), and a write-ahead
// marker saved before the refresh token is presented (Save). These tests
// hold every backend to it, through every handle it has, as app
// instances sharing the store would.

// rotatingProvider is an authorization server's token endpoint as far as
// refresh goes, in process: it rotates refresh tokens and, as providers
// with rotation do, revokes the whole grant when a rotated one is
// presented again.
type rotatingProvider struct {
	mu        sync.Mutex
	current   string // the refresh token it accepts
	n         int
	revoked   bool
	refreshes atomic.Int64
	reuses    atomic.Int64
}

func (p *rotatingProvider) Name() string   { return "rotating" }
func (p *rotatingProvider) Label() string  { return "Rotating" }
func (p *rotatingProvider) Issuer() string { return "" }
func (p *rotatingProvider) Start(context.Context, string) (auth.Flow, string, error) {
	return auth.Flow{}, "", errors.New("not for signing in")
}
func (p *rotatingProvider) Finish(context.Context, auth.Flow, string) (auth.Result, error) {
	return auth.Result{}, errors.New("not for signing in")
}
func (p *rotatingProvider) Revoke(context.Context, string, string) (bool, error) { return false, nil }
func (p *rotatingProvider) Profile(context.Context, string) (json.RawMessage, error) {
	return nil, errors.New("no API here")
}

func (p *rotatingProvider) Refresh(_ context.Context, refreshToken string) (*oauth2.Token, error) {
	time.Sleep(20 * time.Millisecond) // a provider takes a moment: concurrent requests pile up meanwhile
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.revoked:
		return nil, fmt.Errorf("%w: grant revoked", auth.ErrGrantRevoked)
	case refreshToken != p.current:
		p.reuses.Add(1)
		p.revoked = true
		return nil, fmt.Errorf("%w: reuse detected", auth.ErrGrantRevoked)
	}
	p.refreshes.Add(1)
	p.n++
	p.current = fmt.Sprint("refresh-", p.n)
	return &oauth2.Token{AccessToken: fmt.Sprint("access-", p.n), RefreshToken: p.current, TokenType: "Bearer", ExpiresIn: 3600}, nil
}

// tokenSession saves a login session keeping tokens and returns its
// cookie.
func tokenSession(t *testing.T, g *httpsession.Manager, tokens apitokens.Tokens) *http.Cookie {
	t.Helper()
	c, _ := signInWith(t, g, map[string]any{httpsession.KeyUser: "ada", httpsession.KeyTokens: tokens})
	return c
}

// tokenOf asks keeper for the session's access token, as a request with
// cookie c.
func tokenOf(t *testing.T, g *httpsession.Manager, keeper *apitokens.Keeper, p auth.APIProvider, c *http.Cookie) (apitokens.Tokens, error) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(c)
	sess, err := g.New(r, "sid")
	if err != nil {
		return apitokens.Tokens{}, err
	}
	if sess.IsNew {
		return apitokens.Tokens{}, errors.New("no session")
	}
	return keeper.Token(httptest.NewRecorder(), r, sess, p, "")
}

// testRefreshOnce: 20 requests, spread over every handle the backend has
// (app instances), find one session's access token expired at once:
// exactly one refresh reaches the provider, every request gets its
// token, and the grant stays whole (a later refresh works).
func testRefreshOnce(t *testing.T, h Harness) {
	e := newEnv(t, h)
	codec, err := httpsession.NewCodec([]string{"refresh-once-secret-0123456789abcdef"}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	kind := httpsession.Kind{TTL: 3 * time.Hour}
	handles := []*httpsession.Manager{loginManager(e.s, codec, kind, e.clock.Now)}
	if h.Other != nil {
		handles = append(handles, loginManager(h.Other(t, e.s), codec, kind, e.clock.Now))
	}
	p := &rotatingProvider{current: "refresh-0"}
	keepers := make([]*apitokens.Keeper, len(handles))
	for i, g := range handles {
		keepers[i] = &apitokens.Keeper{Sessions: g, Metrics: metrics.New(), Logger: slog.New(slog.DiscardHandler), Now: e.clock.Now}
	}
	cookie := tokenSession(t, handles[0], apitokens.Tokens{Access: "access-0", Refresh: "refresh-0", Expiry: e.now().Add(time.Minute)})

	for round := 1; round <= 2; round++ {
		e.clock.Advance(61 * time.Minute) // past the access token's expiry (an hour), within the session's life
		const requests = 20
		got := make([]string, requests)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range requests {
			wg.Go(func() {
				<-start
				k := i % len(handles)
				tok, err := tokenOf(t, handles[k], keepers[k], p, cookie)
				if err != nil {
					t.Errorf("round %d, request %d: %v", round, i, err)
					return
				}
				got[i] = tok.Access
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if n := p.refreshes.Load(); n != int64(round) || p.reuses.Load() != 0 {
			t.Fatalf("round %d: the provider saw %d refreshes in all and %d reuses; want %d and 0", round, n, p.reuses.Load(), round)
		}
		for i, a := range got {
			if a != fmt.Sprint("access-", round) {
				t.Fatalf("round %d: request %d got access token %q, want the one refresh's %q", round, i, a, fmt.Sprint("access-", round))
			}
		}
	}
}

// testRefreshInterrupted: a refresh that saved its marker and never its
// outcome (the process died after the provider may have rotated the
// token) is not presented again: the next request asks the user to
// reconnect, and the provider never sees the token again; a lock whose
// holder died is taken over once it expires.
func testRefreshInterrupted(t *testing.T, h Harness) {
	e := newEnv(t, h)
	codec, err := httpsession.NewCodec([]string{"refresh-interrupted-secret-0123456789"}, 3600)
	if err != nil {
		t.Fatal(err)
	}
	g := loginManager(e.s, codec, httpsession.Kind{TTL: time.Hour}, e.clock.Now)
	keeper := &apitokens.Keeper{Sessions: g, Metrics: metrics.New(), Logger: slog.New(slog.DiscardHandler), Now: e.clock.Now, MaxWait: 200 * time.Millisecond}
	p := &rotatingProvider{current: "refresh-0"}

	// A holder that died holding the lock: requests wait, then answer
	// busy; once its lock expires, the refresh goes ahead.
	cookie := tokenSession(t, g, apitokens.Tokens{Access: "access-0", Refresh: "refresh-0", Expiry: e.now().Add(time.Minute)})
	e.clock.Advance(2 * time.Minute)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(cookie)
	sess, err := g.New(r, "sid")
	if err != nil || sess.IsNew {
		t.Fatalf("load the session: %v", err)
	}
	if ok, _, err := g.Lock(ctx(t), "refresh:"+httpsession.KeyOf(sess), 30*time.Second); err != nil || !ok {
		t.Fatalf("take the lock as a holder that then dies: %v, %v", ok, err)
	}
	if _, err := tokenOf(t, g, keeper, p, cookie); !errors.Is(err, apitokens.ErrBusy) {
		t.Fatalf("with the lock held, Token = %v; want ErrBusy after waiting", err)
	}
	e.clock.Advance(31 * time.Second)
	if tok, err := tokenOf(t, g, keeper, p, cookie); err != nil || tok.Access != "access-1" {
		t.Fatalf("after the dead holder's lock expired, Token = %q, %v; want a refresh", tok.Access, err)
	}

	// A refresh interrupted after its marker was saved.
	cookie = tokenSession(t, g, apitokens.Tokens{Access: "old", Refresh: "refresh-1", Expiry: e.now().Add(time.Minute), Spending: e.now()})
	e.clock.Advance(2 * time.Minute)
	before := p.refreshes.Load() + p.reuses.Load()
	if _, err := tokenOf(t, g, keeper, p, cookie); !errors.Is(err, apitokens.ErrReconnect) {
		t.Fatalf("after an interrupted refresh, Token = %v; want ErrReconnect", err)
	}
	if after := p.refreshes.Load() + p.reuses.Load(); after != before {
		t.Fatal("the refresh token of an interrupted refresh was presented again")
	}
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(cookie)
	if sess, err := g.New(r, "sid"); err != nil || sess.IsNew {
		t.Fatal("the sign-in session did not survive the loss of its tokens")
	} else if _, kept := apitokens.Of(sess); kept {
		t.Fatal("the tokens of an interrupted refresh are still kept")
	}
}
