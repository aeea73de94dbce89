package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/testbackends"
)

// starts sends n login starts to a with the given headers and returns how
// many were let through (302) and the last refusal.
func starts(t *testing.T, a *app, n int, header ...string) (int, *http.Response, string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ok := 0
	var refused *http.Response
	var body string
	for range n {
		req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/google", nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusFound:
			ok++
		case http.StatusTooManyRequests:
			refused, body = res, string(b)
		default:
			t.Fatalf("login start = %d %s", res.StatusCode, b)
		}
	}
	return ok, refused, body
}

func limitedEnv(t *testing.T, p *idp, dir string) map[string]string {
	env := baseEnv(t, p, dir)
	env["LOGIN_RATE_LIMIT"], env["LOGIN_RATE_BURST"], env["LOGIN_START_MAX_PER_SECOND"] = "10", "20", "1000"
	return env
}

// TestLoginStartLimit: one address gets the burst, then 429 with
// Retry-After and a readable page (or JSON), and the refused starts write
// nothing; a signed-in user's requests are never limited.
func TestLoginStartLimit(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, limitedEnv(t, p, dir))
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com") // one start of the 20
	before := len(rows(t, dir))

	ok, refused, body := starts(t, a, 100)
	if ok != 19 || refused == nil {
		t.Fatalf("%d of 100 starts let through after one sign-in, want the rest of the burst: 19", ok)
	}
	if after := len(rows(t, dir)); after != before+ok {
		t.Fatalf("%d rows after the flood, want %d: refused starts must write nothing", after, before+ok)
	}
	retry, err := strconv.Atoi(refused.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 6 {
		t.Fatalf("Retry-After %q, want 1 to 6 seconds (10 per minute)", refused.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, "Too many sign-in attempts") || refused.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("refusal page: %s", body)
	}
	_, refused, body = starts(t, a, 1, "Accept", "application/json")
	var e struct{ Error string }
	if refused == nil || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		t.Fatalf("refusal to a JSON client = %q, want {\"error\": ...}", body)
	}
	for range 50 {
		expectSignedIn(t, b, a, "ada@example.com")
	}
	if n := metric(t, a, `auth_logins_total{provider="google",reason="rate_limited",stage="refused"}`); n < 81 {
		t.Fatalf("%.0f refusals counted, want every one of the 82", n)
	}
}

// TestLimitIsPerClientAddress: without TRUST_PROXY a client's own
// X-Forwarded-For changes nothing; with it, the right-most entry (the
// proxy's) is the client, whatever the client wrote to its left.
func TestLimitIsPerClientAddress(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, limitedEnv(t, p, t.TempDir()))
	ok := 0
	for i := range 40 {
		n, _, _ := starts(t, a, 1, "X-Forwarded-For", fmt.Sprintf("10.0.%d.%d", i/250, i%250))
		ok += n
	}
	if ok != 20 {
		t.Fatalf("TRUST_PROXY=false: forged X-Forwarded-For got %d of 40 through, want the one address's burst of 20", ok)
	}

	env := limitedEnv(t, p, t.TempDir())
	env["TRUST_PROXY"] = "true"
	a = startApp(t, env)
	ok = 0
	for i := range 40 {
		n, _, _ := starts(t, a, 1, "X-Forwarded-For", fmt.Sprintf("10.0.0.%d, 203.0.113.7", i))
		ok += n
	}
	if ok != 20 {
		t.Fatalf("TRUST_PROXY=true: varying what is left of the proxy's entry got %d of 40 through, want 20", ok)
	}
	if n, _, _ := starts(t, a, 5, "X-Forwarded-For", "203.0.113.8"); n != 5 {
		t.Fatalf("another client behind the proxy got %d of 5 through, want all", n)
	}
	// IPv6: a whole /64 is one client.
	ok = 0
	for i := range 30 {
		n, _, _ := starts(t, a, 1, "X-Forwarded-For", fmt.Sprintf("2001:db8:1:2::%x", i+1))
		ok += n
	}
	if ok != 20 {
		t.Fatalf("30 addresses of one IPv6 /64 got %d through, want the /64's burst of 20", ok)
	}
}

// TestInstanceCeiling: a flood from many addresses is held to the
// instance's ceiling.
func TestInstanceCeiling(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["TRUST_PROXY"], env["LOGIN_START_MAX_PER_SECOND"] = "true", "5"
	a := startApp(t, env)
	ok := 0
	for i := range 50 {
		n, _, _ := starts(t, a, 1, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		ok += n
	}
	if ok < 5 || ok > 7 { // the ceiling's burst, and what refills meanwhile
		t.Fatalf("50 starts from 50 addresses in a burst: %d let through, want the ceiling of 5", ok)
	}
	// Each address is new: the ceiling is the new-address lane's.
	if n := metric(t, a, `auth_logins_total{provider="google",reason="instance_ceiling_new",stage="refused"}`); n < 43 {
		t.Fatalf("%.0f refusals at the new-address ceiling counted", n)
	}
}

// TestSharedStoresCountForEveryInstance: with a store that counts for
// every instance (a shared RateCounter), one address gets one burst across
// two instances; with the others, one burst per instance.
func TestSharedStoresCountForEveryInstance(t *testing.T) {
	p := startIDP(t)
	for _, srv := range testbackends.All() {
		t.Run(srv.Name, func(t *testing.T) {
			env1 := withStore(t, limitedEnv(t, p, t.TempDir()), srv)
			env2 := limitedEnv(t, p, t.TempDir())
			for k, v := range env1 {
				if k != "PORT" && k != "BASE_URL" && k != "DATA_DIR" {
					env2[k] = v
				}
			}
			one, two := startApp(t, env1), startApp(t, env2)
			n1, _, _ := starts(t, one, 15)
			n2, _, _ := starts(t, two, 15)
			shared := strings.Contains(one.logs.String(), "for every instance")
			want := 30
			if shared {
				want = 20
			}
			if n1+n2 != want {
				t.Fatalf("15 starts on each of two instances: %d + %d let through, want %d (counted for every instance: %v)", n1, n2, want, shared)
			}
			d, _ := sessionstore.Lookup(backends(), srv.Name)
			_, counts := sessionstore.As[sessionstore.RateCounter](openFor(t, env1, srv.Name))
			if shared != (d.Shared && counts) {
				t.Fatalf("limits counted for every instance: %v; want it exactly for shared stores that count (%v)", shared, d.Shared && counts)
			}
		})
	}
}

// TestBackchannelLogoutLimit: logout tokens from one address are limited
// on their own (the login limit is untouched), with 429, Retry-After and
// a JSON error once the burst is spent.
func TestBackchannelLogoutLimit(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, limitedEnv(t, p, t.TempDir()))
	start := time.Now()
	accepted := 0
	var header http.Header
	var body string
	for header == nil && accepted < 2*logoutsPerClientPerMinute {
		status, h, b := postLogoutToken(t, a, "google", "forged")
		switch status {
		case http.StatusBadRequest:
			accepted++
		case http.StatusTooManyRequests:
			header, body = h, b
		default:
			t.Fatalf("logout token = %d %s", status, b)
		}
	}
	// The burst, plus what refilled (one per 50 ms) while the test posted.
	refilled := int(time.Since(start) / (time.Minute / logoutsPerClientPerMinute))
	if header == nil || accepted < logoutsPerClientPerMinute || accepted > logoutsPerClientPerMinute+refilled+1 {
		t.Fatalf("%d posts checked before the first 429 (%d refilled meanwhile), want the burst of %d", accepted, refilled, logoutsPerClientPerMinute)
	}
	var e struct{ Error string }
	if retry, err := strconv.Atoi(header.Get("Retry-After")); err != nil || retry < 1 || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		t.Fatalf("refusal: Retry-After %q, body %s", header.Get("Retry-After"), body)
	}
	if ok, _, _ := starts(t, a, 5); ok != 5 {
		t.Fatalf("%d of 5 login starts let through after the logout flood, want 5 (limits of their own)", ok)
	}
	if metric(t, a, `auth_backchannel_logouts_total{provider="google",result="refused"}`) != 1 ||
		metric(t, a, `auth_backchannel_logouts_total{provider="google",result="invalid"}`) != float64(accepted) {
		t.Fatalf("metrics do not count the refusal and the %d invalid tokens", accepted)
	}
}
