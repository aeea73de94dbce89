package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

type sessionsBody struct {
	Sessions []struct {
		ID, Device string
		Current    bool
	} `json:"sessions"`
}

func (b *browser) sessions(a *app) (int, sessionsBody) {
	b.t.Helper()
	r := b.get(a.URL + "/api/auth/sessions")
	var s sessionsBody
	_ = json.Unmarshal([]byte(r.Body), &s)
	return r.Status, s
}

func (b *browser) send(method, u string) response {
	b.t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// withUA makes every request of b carry userAgent.
type uaTransport struct{ ua string }

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return http.DefaultTransport.RoundTrip(r)
}

func TestYourSessions(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	uas := []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
	}
	var ada []*browser
	for _, ua := range uas {
		b := newBrowser(t)
		b.Transport = uaTransport{ua}
		b.login(a, "Ada", "ada@example.com")
		ada = append(ada, b)
	}
	eve := newBrowser(t)
	eve.login(a, "Eve", "eve@example.com")

	if code, _ := newBrowser(t).sessions(a); code != http.StatusUnauthorized {
		t.Fatalf("visitor GET /api/auth/sessions = %d, want 401", code)
	}
	code, list := ada[0].sessions(a)
	if code != http.StatusOK || len(list.Sessions) != 3 {
		t.Fatalf("Ada's sessions = %d %+v, want 3", code, list)
	}
	devices := []string{}
	current := 0
	for _, s := range list.Sessions {
		devices = append(devices, s.Device)
		if s.Current {
			current++
		}
	}
	if current != 1 || !list.Sessions[0].Current {
		t.Fatalf("sessions %+v: want exactly one current, listed first", list.Sessions)
	}
	for _, want := range []string{"Chrome on Linux", "Safari on iOS", "Firefox on Windows"} {
		if !strings.Contains(strings.Join(devices, "|"), want) {
			t.Errorf("devices %v lack %q", devices, want)
		}
	}
	_, eveList := eve.sessions(a)
	if len(eveList.Sessions) != 1 {
		t.Fatalf("Eve sees %d sessions, want only her own", len(eveList.Sessions))
	}

	// Ada cannot revoke Eve's session by its id.
	if r := ada[0].send(http.MethodDelete, a.URL+"/api/auth/sessions/"+eveList.Sessions[0].ID); r.Status != http.StatusNotFound {
		t.Fatalf("revoking another user's session = %d, want 404", r.Status)
	}
	expectSignedIn(t, eve, a, "eve@example.com")

	// Revoke the second browser's session from the first.
	_, second := ada[1].sessions(a)
	var secondID string
	for _, s := range second.Sessions {
		if s.Current {
			secondID = s.ID
		}
	}
	if r := ada[0].send(http.MethodDelete, a.URL+"/api/auth/sessions/"+secondID); r.Status != http.StatusOK {
		t.Fatalf("DELETE /api/auth/sessions/%s = %d %s", secondID, r.Status, r.Body)
	}
	expectSignedOut(t, ada[1], a)

	// A cross-origin revoke-others is refused.
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/api/auth/sessions/revoke-others", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := ada[0].do(req); r.Status != http.StatusForbidden {
		t.Fatalf("cross-origin revoke-others = %d, want 403", r.Status)
	}
	expectSignedIn(t, ada[2], a, "ada@example.com")

	r := ada[0].send(http.MethodPost, a.URL+"/api/auth/sessions/revoke-others")
	if r.Status != http.StatusOK || !strings.Contains(r.Body, `"revoked":1`) {
		t.Fatalf("revoke-others = %d %s, want 1 revoked", r.Status, r.Body)
	}
	expectSignedOut(t, ada[2], a)
	expectSignedIn(t, ada[0], a, "ada@example.com")
	expectSignedIn(t, eve, a, "eve@example.com")
	if _, left := ada[0].sessions(a); len(left.Sessions) != 1 || !left.Sessions[0].Current {
		t.Fatalf("after revoke-others: %+v, want exactly the current session", left.Sessions)
	}
	page := ada[0].get(a.URL + "/sessions")
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "this browser") || !strings.Contains(page.Body, "Chrome on Linux") {
		t.Fatalf("/sessions page = %d\n%s", page.Status, page.Body)
	}
}
