package apiproxy

import (
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []string // name=base, as parsed
	}{
		{"", nil},
		{"   ", nil},
		{"gh=https://api.example.org", []string{"gh=https://api.example.org"}},
		{"a=https://h/v1/", []string{"a=https://h/v1"}},
		{"a=https://h/", []string{"a=https://h"}},
		{"a=https://h/v1//", []string{"a=https://h/v1"}},
		{" a = https://h:8443/x/y , b_2-c=http://127.0.0.1:9000 ", []string{"a=https://h:8443/x/y", "b_2-c=http://127.0.0.1:9000"}},
		{"a=HTTPS://H/v1", []string{"a=https://H/v1"}},
		{"a=https://h/a%20b", []string{"a=https://h/a%20b"}},
		{"0=https://[::1]:8080/v1", []string{"0=https://[::1]:8080/v1"}},
		{"abcdefghijklmnopqrstuvwxyz012345=https://h", []string{"abcdefghijklmnopqrstuvwxyz012345=https://h"}},
	} {
		ups, err := Parse(tc.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		var got []string
		for _, u := range ups {
			got = append(got, u.Name+"="+u.Base.String())
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") || (tc.want == nil) != (ups == nil) {
			t.Errorf("Parse(%q) = %q, want %q", tc.spec, got, tc.want)
		}
	}
}

func TestParseBasePath(t *testing.T) {
	ups, err := Parse("a=https://h/v1/")
	if err != nil {
		t.Fatal(err)
	}
	if b := ups[0].Base; b.Path != "/v1" || b.Scheme != "https" || b.Host != "h" || b.RawQuery != "" || b.User != nil {
		t.Errorf("base %#v", b)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"a=https://h,x=ftp://h", `item 2 ("x=ftp://h"): the URL must be http or https`},
		{"a=https://h,a=https://g", `item 2 ("a=https://g"): the name "a" is already used by item 1`},
		{"a=https://h, b=https://g ,a=https://i", `item 3 ("a=https://i"): the name "a" is already used by item 1`},
		{"https://h", `item 1 ("https://h"): want name=URL`},
		{"a", `item 1 ("a"): want name=URL`},
		{"a=https://h,", `item 2 (""): empty item`},
		{"=https://h", `item 1 ("=https://h"): the name must be`},
		{"A=https://h", `the name must be`},
		{"-a=https://h", `the name must be`},
		{"_a=https://h", `the name must be`},
		{"a.b=https://h", `the name must be`},
		{"a/b=https://h", `the name must be`},
		{"abcdefghijklmnopqrstuvwxyz0123456=https://h", `the name must be`},
		{"a=https://h/v1?key=s3cret", `item 1 ("a=https://h/v1?…"): the URL must not have a query`},
		{"a=https://h/v1?", `the URL must not have a query`},
		{"a=https://h/v1#frag", `the URL must not have a fragment`},
		{"a=https://h/v1#", `the URL must not have a fragment`},
		{"a=https://user:pa55@h/v1", `item 1 ("a=https://…@h/v1"): the URL must not contain userinfo`},
		{"a=https://user@h", `the URL must not contain userinfo`},
		{"a=h/v1", `the URL must be absolute`},
		{"a=/v1", `the URL must be absolute`},
		{"a=", `the URL must be absolute`},
		{"a=ftp://h", `the URL must be http or https`},
		{"a=javascript:alert(1)", `the URL must be http or https`},
		{"a=https:h", `the URL must have a host`},
		{"a=https:///v1", `the URL must have a host`},
		{"a=https://:443/v1", `the URL must have a host`},
		{"a=https://h:port", `the URL does not parse`},
		{"a=https://h/v1/../admin", `the URL's path: the path must not contain . or .. segments`},
		{"a=https://h//v1", `the URL's path: the path must not contain empty segments`},
		{"a=https://h/a%2fb", `the URL's path: the path must not contain encoded slashes`},
	} {
		_, err := Parse(tc.spec)
		if err == nil {
			t.Errorf("Parse(%q) accepted", tc.spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): %q, want %q", tc.spec, err, tc.want)
		}
		for _, secret := range []string{"pa55", "s3cret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Parse(%q): error %q shows a secret", tc.spec, err)
			}
		}
	}
}

func TestLoopback(t *testing.T) {
	for raw, want := range map[string]bool{
		"http://localhost:8080":         true,
		"http://LocalHost":              true,
		"http://127.0.0.1":              true,
		"http://127.8.9.10:1":           true,
		"http://[::1]:9000":             true,
		"http://[::ffff:127.0.0.1]":     true,
		"https://api.example.com":       false,
		"http://10.0.0.1":               false,
		"http://localhost.evil.example": false,
		"http://127.0.0.1.nip.io":       false,
		"http://[::2]":                  false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := (Upstream{Name: "a", Base: u}).Loopback(); got != want {
			t.Errorf("%s: Loopback() = %v, want %v", raw, got, want)
		}
	}
	if (Upstream{}).Loopback() {
		t.Error("an upstream without a base is loopback")
	}
}
