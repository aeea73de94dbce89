package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/devprovider"
	"example.com/oauth-sessions/internal/devprovider/devprovidertest"
	"example.com/oauth-sessions/internal/testbackends"
)

// postLogoutToken posts a logout token as a provider does: server to
// server, no cookie, from another origin.
func postLogoutToken(t *testing.T, a *app, provider, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/api/auth/"+provider+"/backchannel-logout",
		strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://idp.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(body)
}

// sidSetter makes the provider put the sid the test chooses into the ID
// tokens it issues, so the test knows each login's provider session.
type sidSetter struct {
	mu  sync.Mutex
	sid string
}

func (s *sidSetter) next(sid string) {
	s.mu.Lock()
	s.sid = sid
	s.mu.Unlock()
}

func (s *sidSetter) tamper(claims map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	claims["sid"] = s.sid
}

// TestBackchannelLogoutOnEveryStore: logout tokens from the provider (the
// development provider at GOOGLE_ISSUER_URL, on Google's route) end the
// sessions of one provider session (sid) or of one user (sub), on every
// store and, where instances share the store, on every instance within the
// cache's bounds; invalid and replayed tokens, and another provider's,
// change nothing.
func TestBackchannelLogoutOnEveryStore(t *testing.T) {
	google, other := startIDP(t), startIDP(t)
	sids := &sidSetter{}
	google.SetTamper(sids.tamper)
	for _, srv := range testbackends.All() {
		t.Run(srv.Name, func(t *testing.T) {
			env := withStore(t, baseEnv(t, google, t.TempDir()), srv)
			// BEGIN remove:oidc
			// The other provider is configured too, as the generic one: that
			// it is trusted on its own route does not make its tokens good on
			// Google's.
			env["OIDC_ISSUER_URL"], env["OIDC_CLIENT_ID"], env["OIDC_CLIENT_SECRET"] = other.URL, idpClientID, idpClientSecret
			// END remove:oidc
			one := startApp(t, env)
			var two *app // a second instance on the same store, where it can share
			if definition(t, srv).Shared {
				env2 := baseEnv(t, google, t.TempDir())
				for k, v := range env {
					if k != "PORT" && k != "BASE_URL" && k != "DATA_DIR" {
						env2[k] = v
					}
				}
				two = startApp(t, env2)
			}

			login := func(sid, name, email string) *browser {
				sids.next(sid)
				b := newBrowser(t)
				b.loginVia(one, "google", person(name, email))
				return b
			}
			ada1, ada2, bob := login("sid-ada-1", "Ada", "ada@example.com"), login("sid-ada-2", "Ada", "ada@example.com"), login("sid-bob", "Bob", "bob@example.com")
			// Each instance has each session in its cache (where it caches):
			// the sign-outs below must reach the caches.
			onTwo := func(b *browser) *browser {
				c := newBrowser(t)
				u, _ := url.Parse(two.URL)
				c.Jar.SetCookies(u, []*http.Cookie{{Name: "sid", Value: b.cookie(one.URL, "sid").Value}})
				return c
			}
			signedIn := func(want map[*browser]bool) {
				t.Helper()
				for b, in := range want {
					email := map[*browser]string{ada1: "ada@example.com", ada2: "ada@example.com", bob: "bob@example.com"}[b]
					apps := []*app{one}
					if two != nil {
						apps = append(apps, two)
					}
					for _, a := range apps {
						c := b
						if a == two {
							c = onTwo(b)
						}
						if in {
							expectSignedIn(t, c, a, email)
						} else {
							expectSignedOutSoon(t, c, a)
						}
					}
				}
			}
			all := map[*browser]bool{ada1: true, ada2: true, bob: true}
			signedIn(all)

			sign := func(claims map[string]any) string {
				tok, err := google.Sign(claims)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			ada := devprovider.Subject("ada@example.com")
			spoilt := func(f func(map[string]any)) string {
				c := google.LogoutClaims(idpClientID, ada, "sid-ada-1")
				f(c)
				return sign(c)
			}
			for name, tok := range map[string]string{
				"wrong audience":      spoilt(func(c map[string]any) { c["aud"] = "another-client" }),
				"with a nonce":        spoilt(func(c map[string]any) { c["nonce"] = "n" }),
				"expired":             spoilt(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }),
				"unsigned":            devprovidertest.Unsigned(google.LogoutClaims(idpClientID, ada, "sid-ada-1")),
				"another provider's":  func() string { tok, _ := other.Sign(other.LogoutClaims(idpClientID, ada, "sid-ada-1")); return tok }(),
				"not a token":         "hello",
				"no token":            "",
				"an ID token's shape": spoilt(func(c map[string]any) { delete(c, "events") }),
			} {
				status, header, body := postLogoutToken(t, one, "google", tok)
				var e struct{ Error, ErrorDescription string }
				_ = json.Unmarshal([]byte(body), &e)
				if status != http.StatusBadRequest || e.Error == "" || !strings.HasPrefix(header.Get("Content-Type"), "application/json") {
					t.Errorf("%s logout token = %d %s, want 400 {\"error\": ...}", name, status, body)
				}
			}
			// BEGIN remove:oidc
			// Another provider's route does not take this provider's token.
			if status, _, _ := postLogoutToken(t, one, "oidc", sign(google.LogoutClaims(idpClientID, ada, ""))); status != http.StatusBadRequest {
				t.Errorf("Google's token on the OIDC provider's route = %d, want 400", status)
			}
			// END remove:oidc
			// An unknown user: accepted, nothing to end.
			if status, _, _ := postLogoutToken(t, one, "google", sign(google.LogoutClaims(idpClientID, "nobody", ""))); status != http.StatusOK {
				t.Errorf("a token about an unknown user = %d, want 200", status)
			}
			signedIn(all)

			// By sid: that provider session only.
			bySID := sign(google.LogoutClaims(idpClientID, ada, "sid-ada-1"))
			status, header, body := postLogoutToken(t, one, "google", bySID)
			if status != http.StatusOK || header.Get("Cache-Control") != "no-store" {
				t.Fatalf("valid logout token by sid = %d %q (Cache-Control %q), want 200 no-store\n%s", status, body, header.Get("Cache-Control"), one.logs)
			}
			signedIn(map[*browser]bool{ada1: false, ada2: true, bob: true})
			if status, _, body := postLogoutToken(t, one, "google", bySID); status != http.StatusBadRequest || !strings.Contains(body, "already used") {
				t.Errorf("replayed logout token = %d %s, want 400", status, body)
			}
			if two != nil { // the replay memory is in the store, for every instance
				if status, _, _ := postLogoutToken(t, two, "google", bySID); status != http.StatusBadRequest {
					t.Errorf("logout token replayed to the other instance = %d, want 400", status)
				}
			}

			// By sub only: every session of that user at this provider.
			if status, _, body := postLogoutToken(t, one, "google", sign(google.LogoutClaims(idpClientID, ada, ""))); status != http.StatusOK {
				t.Fatalf("valid logout token by sub = %d %s", status, body)
			}
			signedIn(map[*browser]bool{ada2: false, bob: true})
			if !strings.Contains(one.logs.String(), "Back-channel logout") {
				t.Error("no log line for the back-channel logouts")
			}
		})
	}
}
