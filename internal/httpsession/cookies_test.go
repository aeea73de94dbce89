package httpsession_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/httpsession"
)

// FuzzCookieLookup: Cookie and CookieNames answer as net/http does, for any
// Cookie header (in one or two lines).
func FuzzCookieLookup(f *testing.F) {
	for _, seed := range [][3]string{
		{"sid=abc; oauth_1=x; oauth_2=y", "", "sid"},
		{`sid="abc"; sid=def`, "oauth_3=z", "sid"},
		{"sid =x; bad name=1; oauth_1=\\; oauth_1=ok", "sid", "oauth_1"},
		{";;  ; =x; sid; sid=", "", "sid"},
		{"x=sidsid=1; sid", "sidsid=2", "sidsid"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, line1, line2, name string) {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cookie"] = []string{line1}
		if line2 != "" {
			r.Header["Cookie"] = append(r.Header["Cookie"], line2)
		}
		want, err := r.Cookie(name)
		got, ok := httpsession.Cookie(r, name)
		if ok != (err == nil) || ok && got != want.Value {
			t.Fatalf("cookie %q: Cookie = %q, %v; net/http = %v, %v", name, got, ok, want, err)
		}
		// The newest names with a prefix, by net/http's parse.
		prefix := name
		if len(prefix) > 2 {
			prefix = prefix[:2]
		}
		var ref []string
		all := r.Cookies()
		for i := len(all) - 1; i >= 0 && len(ref) < 3; i-- {
			if strings.HasPrefix(all[i].Name, prefix) && !slices.Contains(ref, all[i].Name) {
				ref = append(ref, all[i].Name)
			}
		}
		slices.Reverse(ref)
		if names := httpsession.CookieNames(r, prefix, 3); !slices.Equal(names, ref) {
			t.Fatalf("CookieNames(%q, 3) = %q, net/http's cookies give %q", prefix, names, ref)
		}
	})
}

// TestManyCookiesCostLittle: looking cookies up in a request stuffed with
// 2,500 made-up flow cookies allocates nothing but the list of names asked
// for (net/http's r.Cookies() makes one object per cookie).
func TestManyCookiesCostLittle(t *testing.T) {
	var b strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&b, "oauth_%04x=x; ", i)
	}
	b.WriteString("sid=token")
	r := &http.Request{Header: http.Header{"Cookie": {b.String()}}}
	allocs := testing.AllocsPerRun(100, func() {
		if v, ok := httpsession.Cookie(r, "sid"); !ok || v != "token" {
			t.Fatalf("sid = %q, %v", v, ok)
		}
		if _, ok := httpsession.Cookie(r, "notice"); ok {
			t.Fatal("found a cookie that is not there")
		}
		if names := httpsession.CookieNames(r, "oauth_", 5); len(names) != 5 || names[0] != "oauth_09bf" || names[4] != "oauth_09c3" {
			t.Fatalf("newest = %q", names)
		}
	})
	if allocs > 1 {
		t.Errorf("%.0f allocations for lookups in a request with 2,500 cookies, want 1 (the list of names)", allocs)
	}
	// Beyond net/http's default limit on the number of cookies (3,000),
	// none is found, as r.Cookie finds none.
	over := &http.Request{Header: http.Header{"Cookie": {strings.Repeat("a=1; ", 3000) + "sid=token"}}}
	if _, ok := httpsession.Cookie(over, "sid"); ok {
		t.Error("a cookie found among 3,001, beyond net/http's limit")
	}
	if _, err := over.Cookie("sid"); err == nil {
		t.Error("net/http's limit changed: update maxCookies")
	}
}
