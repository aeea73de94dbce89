package apiproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const token = "tok-3f9a7c"

// seen is one request as an upstream received it.
type seen struct {
	Method, Path, RawQuery, Host string
	Header                       http.Header
	Body                         []byte
}

// recorder is an upstream that records every request, then answers with
// its handler (200 "ok" when nil).
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.Header.Clone(), body})
		rec.mu.Unlock()
		if h == nil {
			_, _ = io.WriteString(w, "ok")
			return
		}
		h(w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) requests() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = nil
}

// only returns the one request the upstream saw, failing otherwise.
func (rec *recorder) only(t *testing.T) seen {
	t.Helper()
	reqs := rec.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests, want 1: %+v", len(reqs), reqs)
	}
	return reqs[0]
}

// logBuffer collects log lines written from the servers' goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	up, evil *recorder
	proxy    *httptest.Server
	p        *Proxy
	logs     *logBuffer
}

// setup starts an upstream answering with h, an "evil" server that nothing
// may ever reach, and the proxy mounted as the app mounts it: "x" is the
// upstream at /base/v1, "root" the same upstream at its root.
func setup(t *testing.T, h http.HandlerFunc, opts Options) *fixture {
	t.Helper()
	f := &fixture{up: newRecorder(t, h), evil: newRecorder(t, nil), logs: &logBuffer{}}
	ups, err := Parse("x=" + f.up.URL + "/base/v1/, root=" + f.up.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.p = New(ups, opts)
	// Not a ServeMux: it would clean "//" and ".." itself, hiding what the
	// proxy does; the app's router does not.
	f.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, rest, found := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), Mount), "/")
		if found {
			rest = "/" + rest
		}
		f.p.Serve(w, r, name, rest, token)
	}))
	t.Cleanup(f.proxy.Close)
	t.Cleanup(func() {
		if reqs := f.evil.requests(); len(reqs) > 0 {
			t.Errorf("the evil server was reached: %+v", reqs)
		}
	})
	return f
}

// do sends a request with the raw path given (sent exactly, not cleaned
// or re-encoded by the client) and returns the answer, read whole.
func (f *fixture) do(t *testing.T, method, rawPath string, body io.Reader, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.proxy.URL, body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath
	for k, vs := range header {
		req.Header[k] = vs
	}
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// errorOf decodes the proxy's own JSON answer.
func errorOf(t *testing.T, res *http.Response, body string) string {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q, want JSON", ct)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not {\"error\": …}: %v", body, err)
	}
	return e.Error
}

func TestForwardsToBasePathWithQuery(t *testing.T) {
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Remote", "yes")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "hello")
	}, Options{})
	upHost := strings.TrimPrefix(f.up.URL, "http://")
	for _, tc := range []struct{ path, wantPath, wantQuery string }{
		{"/api/remote/x/items/a%20b/c?q=1&r=x%2Fy", "/base/v1/items/a%20b/c", "q=1&r=x%2Fy"},
		{"/api/remote/x", "/base/v1", ""},
		{"/api/remote/x/", "/base/v1/", ""},
		{"/api/remote/x/speech:recognize?", "/base/v1/speech:recognize", ""},
		{"/api/remote/root/users/me?a=%26", "/users/me", "a=%26"},
		{"/api/remote/root", "/", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f.up.reset()
			res, body := f.do(t, http.MethodGet, tc.path, nil, nil)
			if res.StatusCode != http.StatusCreated || body != "hello" || res.Header.Get("X-Remote") != "yes" {
				t.Errorf("got %d %q (X-Remote %q), want the upstream's 201 hello", res.StatusCode, body, res.Header.Get("X-Remote"))
			}
			got := f.up.only(t)
			if got.Method != http.MethodGet || got.Path != tc.wantPath || got.RawQuery != tc.wantQuery || got.Host != upHost {
				t.Errorf("upstream saw %s %s ? %q (Host %s), want GET %s ? %q (Host %s)", got.Method, got.Path, got.RawQuery, got.Host, tc.wantPath, tc.wantQuery, upHost)
			}
		})
	}
}

func TestRequestHeaders(t *testing.T) {
	f := setup(t, nil, Options{})
	res, _ := f.do(t, http.MethodGet, "/api/remote/x/h", nil, http.Header{
		"Cookie":              {"session=browser-secret"},
		"Authorization":       {"Basic YnJvd3Nlcjpz"},
		"Proxy-Authorization": {"Basic cHJveHk6cw=="},
		"X-Forwarded-For":     {"203.0.113.9"},
		"X-Forwarded-Host":    {"evil.example"},
		"X-Forwarded-Prefix":  {"/admin"},
		"X-Real-Ip":           {"203.0.113.9"},
		"Forwarded":           {"for=203.0.113.9"},
		"Connection":          {"X-Hop"},
		"X-Hop":               {"1"},
		"X-Keep":              {"kept"},
	})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	h := f.up.only(t).Header
	if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+token {
		t.Errorf("Authorization = %q, want only the bearer token", got)
	}
	for _, k := range []string{"Cookie", "Proxy-Authorization", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Prefix", "X-Real-Ip", "Forwarded", "X-Hop"} {
		if v, ok := h[k]; ok {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	if h.Get("X-Keep") != "kept" {
		t.Errorf("X-Keep = %q, want an ordinary header passed on", h.Get("X-Keep"))
	}
}

func TestMethodsAndBodies(t *testing.T) {
	f := setup(t, nil, Options{MaxBody: 64})
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		for _, chunked := range []bool{false, true} {
			f.up.reset()
			payload := `{"m":"` + method + `"}`
			var body io.Reader = strings.NewReader(payload)
			if chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			res, _ := f.do(t, method, "/api/remote/x/things/1", body, http.Header{"Content-Type": {"application/json"}})
			got := f.up.only(t)
			if res.StatusCode != http.StatusOK || got.Method != method || string(got.Body) != payload || got.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s (chunked %v): status %d, upstream saw %s %q (%s)", method, chunked, res.StatusCode, got.Method, got.Body, got.Header.Get("Content-Type"))
			}
		}
	}
}

func TestBodyOverLimit(t *testing.T) {
	f := setup(t, nil, Options{MaxBody: 10})
	for _, tc := range []struct {
		name string
		body func() io.Reader
	}{
		{"with length", func() io.Reader { return strings.NewReader("0123456789A") }},
		{"chunked", func() io.Reader { return io.MultiReader(strings.NewReader("0123456789A")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := f.do(t, http.MethodPost, "/api/remote/x/upload", tc.body(), nil)
			if res.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d, want 413", res.StatusCode)
			}
			errorOf(t, res, body)
		})
	}
	if reqs := f.up.requests(); len(reqs) > 0 {
		t.Fatalf("upstream saw %d requests for bodies over the limit", len(reqs))
	}
	// At the limit exactly, the body goes through.
	res, _ := f.do(t, http.MethodPost, "/api/remote/x/upload", strings.NewReader("0123456789"), nil)
	if got := f.up.only(t); res.StatusCode != http.StatusOK || string(got.Body) != "0123456789" {
		t.Errorf("at the limit: status %d, upstream got %q", res.StatusCode, got.Body)
	}
}

// escapes are paths (after /api/remote/x) that could leave the base path
// or the upstream's origin in some server along the way.
func escapes(evilHost string) []string {
	return []string{
		"/../x", "/a/../../x", "/..", "/./x", "/.",
		"/%2e%2e/x", "/%2E%2e/x", "/.%2e/x", "/%2e/x", "/a/%2E%2E",
		"/%252e%252e/x", "/%25252e%25252e/x", "/%2525252e/x",
		"/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/a%252fb", "/a\\b",
		"//evil.example/x", "//" + evilHost + "/x", "/https://evil.example/x", "/http://" + evilHost + "/x", "/a//b",
		"/%00", "/a%0d%0aX-Injected:%201", "/a%2500",
		"/..;/x", "/%2e%2e;x/y", "/%c0%ae%c0%ae/x", "/a%c0%afb", "/%ef%bc%8e%ef%bc%8e/x", "/a%ef%bc%8fb",
	}
}

func TestEscapesRefused(t *testing.T) {
	f := setup(t, nil, Options{})
	evilHost := strings.TrimPrefix(f.evil.URL, "http://")
	for _, rest := range escapes(evilHost) {
		t.Run("http"+rest, func(t *testing.T) {
			res, body := f.do(t, http.MethodGet, "/api/remote/x"+rest+"?q=1", nil, nil)
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d (%s), want 400", res.StatusCode, body)
				return
			}
			errorOf(t, res, body)
		})
		t.Run("direct"+rest, func(t *testing.T) {
			w := httptest.NewRecorder()
			f.p.Serve(w, httptest.NewRequest(http.MethodGet, "/api/remote/x", nil), "x", rest, token)
			if w.Code != http.StatusBadRequest {
				t.Errorf("status %d (%s), want 400", w.Code, w.Body)
			}
		})
	}
	// Raw control characters and invalid escapes never pass the Go
	// server's request line, but a caller could hand them over.
	for _, rest := range []string{"/%zz", "/a%2", "/a%", "/a%2x/b", "/a\x00b", "/a\tb", "/a\nb", "/a b", "/a?b", "/a#b", "a", "/\x7f"} {
		w := httptest.NewRecorder()
		f.p.Serve(w, httptest.NewRequest(http.MethodGet, "/api/remote/x", nil), "x", rest, token)
		if w.Code != http.StatusBadRequest {
			t.Errorf("rest %q: status %d, want 400", rest, w.Code)
		}
	}
	if reqs := f.up.requests(); len(reqs) > 0 {
		t.Errorf("upstream saw %d requests: %+v", len(reqs), reqs)
	}
}

// TestOddButSafePathsPass keeps the escape rules from refusing paths that
// are merely unusual.
func TestOddButSafePathsPass(t *testing.T) {
	f := setup(t, nil, Options{})
	for _, rest := range []string{"/a..b", "/.well-known/x", "/...", "/%2e%2ex", "/100%25", "/a%20b", "/caf%C3%A9", "/v1:batch", "/a;b=c", "/~user/@me", "/a/"} {
		f.up.reset()
		res, body := f.do(t, http.MethodGet, "/api/remote/x"+rest, nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d (%s), want 200", rest, res.StatusCode, body)
			continue
		}
		if got := f.up.only(t).Path; got != "/base/v1"+rest {
			t.Errorf("%s: upstream saw %s, want /base/v1%s", rest, got, rest)
		}
	}
}

func TestRefusedMethods(t *testing.T) {
	f := setup(t, nil, Options{})
	res, body := f.do(t, http.MethodTrace, "/api/remote/x/a", nil, nil)
	if res.StatusCode != http.StatusMethodNotAllowed || strings.Contains(body, token) {
		t.Errorf("TRACE: status %d %q, want 405 without the token", res.StatusCode, body)
	}
	res, _ = f.do(t, http.MethodGet, "/api/remote/x/socket", nil, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}})
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("WebSocket upgrade: status %d, want 400", res.StatusCode)
	}
	if reqs := f.up.requests(); len(reqs) > 0 {
		t.Errorf("upstream saw %d requests", len(reqs))
	}
	// curl --http2 on plain HTTP: served as HTTP/1.1, the upgrade dropped.
	res, _ = f.do(t, http.MethodGet, "/api/remote/x/h2c", nil, http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAAQAoAAAAAIAAAAA"}})
	if got := f.up.only(t); res.StatusCode != http.StatusOK || got.Header.Get("Upgrade") != "" || got.Header.Get("Http2-Settings") != "" {
		t.Errorf("h2c upgrade: status %d, upstream got Upgrade %q", res.StatusCode, got.Header.Get("Upgrade"))
	}
}

func TestUnknownName(t *testing.T) {
	f := setup(t, nil, Options{})
	w := httptest.NewRecorder()
	f.p.Serve(w, httptest.NewRequest(http.MethodGet, "/api/remote/x", nil), `no"pe<b>`, "/a", token)
	res := w.Result()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", res.StatusCode)
	}
	body := w.Body.String()
	if got, want := errorOf(t, res, body), `no remote API called no"pe<b>`; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if strings.Contains(body, "<b>") {
		t.Errorf("body %q carries raw markup", body)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("error answer without nosniff")
	}
	if reqs := f.up.requests(); len(reqs) > 0 {
		t.Errorf("upstream saw %d requests", len(reqs))
	}
}

func TestRedirects(t *testing.T) {
	var status int
	var location string
	var mu sync.Mutex
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Location", location)
		w.WriteHeader(status)
	}, Options{})
	up, evil := f.up.URL, f.evil.URL
	upHostPort := strings.TrimPrefix(up, "http://")
	const offsite = "the remote API redirected outside its configured address"
	for _, tc := range []struct {
		status   int
		location string
		want     string // the Location the browser gets; "" for a 502
	}{
		{302, "/base/v1/next?p=2#top", "/api/remote/x/next?p=2#top"},
		{301, "other", "/api/remote/x/items/other"}, // relative to /base/v1/items/1
		{307, "?page=3", "/api/remote/x/items/1?page=3"},
		{303, up + "/base/v1/z", "/api/remote/x/z"},
		{308, up + "/base/v1", "/api/remote/x"},
		{201, "/base/v1/items/9", "/api/remote/x/items/9"},
		{302, evil + "/x", ""},
		{302, "//" + strings.TrimPrefix(evil, "http://") + "/x", ""},
		{302, "https://" + upHostPort + "/base/v1/z", ""},
		{302, "/base/other", ""},
		{302, "/base/v1x", ""},
		{302, "/base/v1/../../admin", ""},
		{302, "/base/v1/%2e%2e/admin", ""},
		{302, "/base/v1/a%2fb", ""},
		{302, "javascript:alert(1)", ""},
		{302, "http:evil.example", ""},
	} {
		t.Run(tc.location, func(t *testing.T) {
			mu.Lock()
			status, location = tc.status, tc.location
			mu.Unlock()
			res, body := f.do(t, http.MethodGet, "/api/remote/x/items/1", nil, nil)
			if tc.want == "" {
				if res.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d, Location %q, want 502", res.StatusCode, res.Header.Get("Location"))
				}
				if got := errorOf(t, res, body); got != offsite {
					t.Errorf("error %q, want %q", got, offsite)
				}
				if res.Header.Get("Location") != "" {
					t.Errorf("502 carries Location %q", res.Header.Get("Location"))
				}
				return
			}
			if res.StatusCode != tc.status || res.Header.Get("Location") != tc.want {
				t.Errorf("got %d Location %q, want %d %q", res.StatusCode, res.Header.Get("Location"), tc.status, tc.want)
			}
		})
	}
	if n := len(f.up.requests()); n != 16 {
		t.Errorf("upstream saw %d requests, want one per case: the proxy must not follow redirects", n)
	}
	if !strings.Contains(f.logs.String(), `"reason":"redirect outside the configured address"`) {
		t.Errorf("no log line for the refused redirects:\n%s", f.logs)
	}
}

func TestResponseHeaders(t *testing.T) {
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "session=remote; Path=/")
		h.Add("Set-Cookie", "other=1")
		h.Set("Content-Security-Policy", "script-src *")
		h.Set("Access-Control-Allow-Origin", "https://evil.example")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Clear-Site-Data", `"cookies"`)
		h.Set("Refresh", "0; url=https://evil.example/")
		h.Set("Strict-Transport-Security", "max-age=63072000")
		h.Set("Www-Authenticate", `Basic realm="x"`)
		h.Set("Cache-Control", "public, max-age=60, s-maxage=600")
		h.Set("Content-Type", "text/html")
		h.Set("Link", `</next>; rel="next"`)
		_, _ = io.WriteString(w, "<script>alert(1)</script>")
	}, Options{})
	res, body := f.do(t, http.MethodGet, "/api/remote/x/page", nil, nil)
	if res.StatusCode != http.StatusOK || body != "<script>alert(1)</script>" {
		t.Fatalf("got %d %q, want the upstream's page", res.StatusCode, body)
	}
	for _, k := range []string{"Set-Cookie", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Clear-Site-Data", "Refresh", "Strict-Transport-Security", "Www-Authenticate"} {
		if v, ok := res.Header[k]; ok {
			t.Errorf("%s passed through: %q", k, v)
		}
	}
	want := map[string]string{
		"Content-Security-Policy": "sandbox; default-src 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "max-age=60, private",
		"Content-Type":            "text/html",
		"Link":                    `</next>; rel="next"`,
	}
	for k, v := range want {
		if got := res.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestPrivateCache(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "private",
		"no-store":                          "no-store",
		"public, max-age=60":                "max-age=60, private",
		"private, max-age=60":               "private, max-age=60",
		`private="Set-Cookie", max-age=600`: `private="Set-Cookie", max-age=600, private`,
		"no-cache, S-MaxAge=5":              "no-cache, private",
	} {
		h := http.Header{}
		if in != "" {
			h.Set("Cache-Control", in)
		}
		privateCache(h)
		if got := h.Get("Cache-Control"); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

// TestUnreachable uses an upstream that accepts connections and closes
// them at once: unreachable for HTTP, and never a port someone else might
// have taken since.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	logs := &logBuffer{}
	ups, err := Parse("dead=http://" + ln.Addr().String() + "/v1")
	if err != nil {
		t.Fatal(err)
	}
	p := New(ups, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	w := httptest.NewRecorder()
	p.Serve(w, httptest.NewRequest(http.MethodGet, "/api/remote/dead/a?secret=shh", nil), "dead", "/a", token)
	if w.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", w.Code)
	}
	if got := errorOf(t, w.Result(), w.Body.String()); got != "the remote API could not be reached" {
		t.Errorf("error %q", got)
	}
	line := logs.String()
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "remote=dead") || strings.Count(line, "\n") != 1 {
		t.Errorf("want one Warn line naming the remote, got:\n%s", line)
	}
	for _, secret := range []string{token, "shh", "EOF", "reset", ln.Addr().String()} {
		if strings.Contains(line+w.Body.String(), secret) {
			t.Errorf("log or answer contains %q:\n%s%s", secret, line, w.Body)
		}
	}
}

// The timeouts here are the proxy's own real timer, so these tests wait in
// real time, briefly.
func TestSlowUpstreamTimesOut(t *testing.T) {
	release := make(chan struct{})
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, Options{Timeout: 100 * time.Millisecond})
	t.Cleanup(func() { close(release) }) // before the upstream closes: it waits for handlers
	start := time.Now()
	res, body := f.do(t, http.MethodGet, "/api/remote/x/slow?secret=shh", nil, nil)
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", res.StatusCode)
	}
	if got := errorOf(t, res, body); got != "the remote API did not answer in time" {
		t.Errorf("error %q", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with a 100ms timeout", d)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `"reason":"timeout"`) || strings.Contains(logs, "shh") || strings.Contains(logs, token) {
		t.Errorf("want a timeout line without query or token, got:\n%s", logs)
	}
}

// roundTripFunc is a caller's wrapper around a transport (for tracing, say).
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTimeoutWithCallersTransport checks that the timeout holds when the
// caller's transport has no timeouts of its own.
func TestTimeoutWithCallersTransport(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	plain := &http.Transport{}
	t.Cleanup(plain.CloseIdleConnections)
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, Options{Timeout: 100 * time.Millisecond, Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return plain.RoundTrip(r)
	})})
	t.Cleanup(func() { close(release) })
	res, _ := f.do(t, http.MethodGet, "/api/remote/x/slow", nil, nil)
	mu.Lock()
	defer mu.Unlock()
	if res.StatusCode != http.StatusGatewayTimeout || calls != 1 {
		t.Errorf("status %d after %d calls through the caller's transport, want 504 after 1", res.StatusCode, calls)
	}
}

func TestTimeoutStopsAtResponseHeaders(t *testing.T) {
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first,")
		http.NewResponseController(w).Flush()
		time.Sleep(300 * time.Millisecond) // three times the timeout
		_, _ = io.WriteString(w, "second")
	}, Options{Timeout: 100 * time.Millisecond})
	res, body := f.do(t, http.MethodGet, "/api/remote/x/long", nil, nil)
	if res.StatusCode != http.StatusOK || body != "first,second" {
		t.Errorf("got %d %q, want the whole body despite the slow finish", res.StatusCode, body)
	}
}

func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	f := setup(t, func(w http.ResponseWriter, r *http.Request) {
		// A declared length and no event-stream type: ReverseProxy would
		// buffer this by default, and passes it on at once only because the
		// proxy asks it to.
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Length", strconv.Itoa(len("data: first\n\ndata: second\n\n")))
		_, _ = io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	}, Options{})
	var once sync.Once
	releaseOnce := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseOnce)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.proxy.URL+"/api/remote/x/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	// The upstream is still waiting: this only arrives if the proxy
	// passes chunks on as they come.
	line, err := r.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first chunk: %q, %v (the proxy held the stream back)", line, err)
	}
	select {
	case <-release:
		t.Fatal("released too early")
	default:
	}
	releaseOnce()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "\ndata: second\n\n" {
		t.Errorf("rest: %q, %v", rest, err)
	}
}

func TestDefaults(t *testing.T) {
	p := New(nil, Options{})
	if p.timeout != 30*time.Second || p.maxBody != 1<<20 || p.logger == nil {
		t.Errorf("defaults: timeout %v, max body %d", p.timeout, p.maxBody)
	}
	tr, ok := p.transport.(*http.Transport)
	if !ok || tr.ResponseHeaderTimeout != 30*time.Second || tr.TLSHandshakeTimeout != 10*time.Second || !tr.DisableCompression {
		t.Errorf("default transport: %#v", p.transport)
	}
}
