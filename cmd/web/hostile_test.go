package main

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/testbackends"
)

// TestHostileIDTokens: a token whose signature does not verify, or that is
// not signed at all, never signs anyone in.
func TestHostileIDTokens(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))
	unsigned := func(tok string) string {
		parts := strings.Split(tok, ".")
		hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		return hdr + "." + parts[1] + "."
	}
	badSig := func(tok string) string {
		parts := strings.Split(tok, ".")
		sig := []byte(parts[2])
		sig[5] ^= 0x01
		return parts[0] + "." + parts[1] + "." + string(sig)
	}
	for name, hook := range map[string]func(string) string{"alg none": unsigned, "bad signature": badSig} {
		t.Run(name, func(t *testing.T) {
			p.SetTamperToken(hook)
			defer p.SetTamperToken(nil)
			b := newBrowser(t)
			r := b.get(b.approve(b.startLogin(a, ""), "Ada", "ada@example.com"))
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("callback = %d, want 401", r.Status)
			}
			expectSignedOut(t, b, a)
		})
	}
	if n := len(rows(t, dir)); n != 0 {
		t.Fatalf("%d rows after refused logins, want 0", n)
	}
}

// TestHostileCallbacks: a missing or reused code fails cleanly.
func TestHostileCallbacks(t *testing.T) {
	p := startIDP(t)
	dir := t.TempDir()
	a := startApp(t, baseEnv(t, p, dir))

	b := newBrowser(t)
	cb, _ := url.Parse(b.approve(b.startLogin(a, ""), "Ada", "ada@example.com"))
	q := cb.Query()
	q.Del("code")
	r := b.get(a.URL + cb.Path + "?" + q.Encode())
	if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "no authorization code") {
		t.Fatalf("callback without code = %d\n%s", r.Status, r.Body)
	}

	// A code already redeemed, presented with a fresh flow of the same browser.
	b2 := newBrowser(t)
	first, _ := url.Parse(b2.approve(b2.startLogin(a, ""), "Ada", "ada@example.com"))
	if r := b2.get(first.String()); r.Status != http.StatusFound {
		t.Fatalf("first callback = %d", r.Status)
	}
	second, _ := url.Parse(b2.approve(b2.startLogin(a, ""), "Ada", "ada@example.com"))
	q = second.Query()
	q.Set("code", first.Query().Get("code"))
	if r := b2.get(a.URL + second.Path + "?" + q.Encode()); r.Status != http.StatusUnauthorized {
		t.Fatalf("reused code = %d, want 401", r.Status)
	}
}

// TestHostileCookies: duplicated cookies and signed tokens of the wrong
// shape are treated as no session and reach no store.
func TestHostileCookies(t *testing.T) {
	p := startIDP(t)
	a := startApp(t, baseEnv(t, p, t.TempDir()))
	b := newBrowser(t)
	b.login(a, "Ada", "ada@example.com")
	good := b.cookie(a.URL, "sid").Value
	codec, _ := httpsession.NewCodec([]string{testSecret}, 3600)
	wrongLength, _ := codec.EncodeCookie("sid", httpsession.NewToken()[:20])
	wrongAlphabet, _ := codec.EncodeCookie("sid", strings.Repeat("!", 43))
	cases := map[string]string{
		"signed, wrong length":    "sid=" + wrongLength,
		"signed, wrong alphabet":  "sid=" + wrongAlphabet,
		"duplicated, bad first":   "sid=garbage; sid=" + good,
		"cookie for another name": "oauth_x=" + good,
	}
	for name, header := range cases {
		res := rawGet(t, a.URL+"/api/auth/me", header)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: /api/auth/me = %d, want 401", name, res.StatusCode)
		}
	}
}

// TestAtRest: what each store holds (the SQLite file, a dump of the Redis
// keys, the Mongo documents) has neither the cookie's token nor user data
// in plain text.
func TestAtRest(t *testing.T) {
	p := startIDP(t)
	for _, srv := range testbackends.All() {
		if srv.Dump == nil {
			continue // nothing outside the process to copy
		}
		t.Run(srv.Name, func(t *testing.T) {
			env := withStore(t, baseEnv(t, p, t.TempDir()), srv)
			a := startApp(t, env)
			b := newBrowser(t)
			b.login(a, "Grace Hopper", "grace.hopper@example.com")
			codec, _ := httpsession.NewCodec([]string{testSecret}, 3600)
			token, err := codec.DecodeCookie("sid", b.cookie(a.URL, "sid").Value)
			if err != nil {
				t.Fatal(err)
			}
			dump := srv.Dump(t, env)
			if !bytes.Contains(dump, []byte(httpsession.KeyFor(token))) {
				t.Fatalf("the dump does not hold the session's key: dumped the wrong place (%d bytes)", len(dump))
			}
			for _, secret := range []string{token, "grace.hopper@example.com", "Grace Hopper"} {
				if bytes.Contains(dump, []byte(secret)) {
					t.Errorf("the %s dump contains %q", srv.Name, secret)
				}
			}
		})
	}
}
