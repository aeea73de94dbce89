package auth

import "testing"

func TestSafeReturnPath(t *testing.T) {
	cases := map[string]string{
		"":                        "/",
		"/":                       "/",
		"/dashboard?tab=1#top":    "/dashboard?tab=1#top",
		"/a/b":                    "/a/b",
		"//evil.example":          "/",
		"///evil.example":         "/",
		"/\\evil.example":         "/",
		"\\\\evil.example":        "/",
		"https://evil.example":    "/",
		"http:/evil.example":      "/",
		"javascript:alert(1)":     "/",
		"/%2F%2Fevil.example":     "/",
		"/%2f/evil.example":       "/",
		"/%5Cevil.example":        "/",
		"/%252F%252Fevil.example": "/",
		"%2F%2Fevil.example":      "/",
		"/ok\r\nSet-Cookie: x=1":  "/",
		"evil.example":            "/",
		"/%zz":                    "/",
	}
	for in, want := range cases {
		if got := SafeReturnPath(in); got != want {
			t.Errorf("SafeReturnPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSafeReturnPath(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "/%2F%2Fx", "https://x", "/a?b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := SafeReturnPath(p)
		if got == "/" {
			return
		}
		if got != p || got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) {
			t.Fatalf("SafeReturnPath(%q) = %q: not a plain same-site path", p, got)
		}
	})
}

func TestEmailAllowed(t *testing.T) {
	if !EmailAllowed("a@x.org", nil) || !EmailAllowed("a@Example.com", []string{"example.com"}) ||
		EmailAllowed("a@evil.com", []string{"example.com"}) || EmailAllowed("a@sub.example.com", []string{"example.com"}) ||
		EmailAllowed("", []string{"example.com"}) {
		t.Fatal("EmailAllowed gives a wrong answer")
	}
}
