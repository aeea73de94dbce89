// Package apiproxy is the backend-for-frontend's proxy to remote APIs: the
// browser calls /api/remote/{name}/…, and the proxy calls the upstream
// configured under that name with the signed-in user's access token, so
// the token never reaches the browser.
//
// Because the answers are served from the app's own origin, the proxy
// refuses any path that could leave the configured base, never follows a
// redirect out of it, and strips what a remote could use to act on the
// app's origin (cookies, script, origin-wide policies).
package apiproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Mount is where the app serves the proxy: /api/remote/{name}/…. Redirects
// from a remote are rewritten to point under it.
const Mount = "/api/remote/"

const (
	defaultTimeout = 30 * time.Second
	defaultMaxBody = 1 << 20

	// csp is sent with every answer: a remote's HTML (or SVG) is served
	// from the app's origin, where its script would run with the user's
	// session; sandboxed with nothing allowed, it is inert.
	csp = "sandbox; default-src 'none'"
)

// Options tune a Proxy; the zero value is usable.
type Options struct {
	// Timeout bounds the exchange with the remote up to its response
	// headers, dial and request body included; the response body then
	// streams for as long as it takes. 0 means 30s.
	Timeout time.Duration
	// MaxBody is the largest request body passed on, in bytes; 0 means
	// 1 MiB. The body is read whole before the remote is called, so one
	// that is too large is refused before the remote sees any of it.
	MaxBody int64
	// Transport makes the calls to the remotes; nil means
	// NewTransport(Timeout). It must not follow redirects (an
	// http.RoundTripper does not).
	Transport http.RoundTripper
	// Logger gets one Warn line per failed exchange; nil discards.
	Logger *slog.Logger
}

// Proxy forwards requests to a fixed set of upstreams. It is safe for
// concurrent use and holds no per-request state.
type Proxy struct {
	upstreams map[string]Upstream
	timeout   time.Duration
	maxBody   int64
	transport http.RoundTripper
	logger    *slog.Logger
}

// New returns a proxy to ups, which come from Parse. It panics on an
// upstream without a base URL or on a repeated name, which Parse never
// returns.
func New(ups []Upstream, opts Options) *Proxy {
	p := &Proxy{
		upstreams: make(map[string]Upstream, len(ups)),
		timeout:   opts.Timeout,
		maxBody:   opts.MaxBody,
		transport: opts.Transport,
		logger:    opts.Logger,
	}
	if p.timeout <= 0 {
		p.timeout = defaultTimeout
	}
	if p.maxBody <= 0 {
		p.maxBody = defaultMaxBody
	}
	if p.transport == nil {
		p.transport = NewTransport(p.timeout)
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	for _, u := range ups {
		if u.Base == nil {
			panic(fmt.Sprintf("apiproxy: upstream %q has no base URL", u.Name))
		}
		if _, dup := p.upstreams[u.Name]; dup {
			panic(fmt.Sprintf("apiproxy: two upstreams named %q", u.Name))
		}
		p.upstreams[u.Name] = u
	}
	return p
}

// NewTransport is the transport a Proxy uses when Options.Transport is nil,
// for a caller that wants to wrap it (for tracing, say): its own connection
// pool, dials and TLS handshakes bounded by timeout (0 means 30s), and no
// transparent decompression, so bodies pass through as the remote sent
// them.
func NewTransport(timeout time.Duration) *http.Transport {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    32,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    min(10*time.Second, timeout),
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		DisableCompression:     true,
	}
}

var (
	errTimeout  = errors.New("no response headers in time")
	errRedirect = errors.New("redirect outside the configured address")
)

// Serve forwards r to the upstream called name, at its base path + rest,
// as the user whose access token is given (an empty token sends no
// Authorization). rest is the still percent-encoded part of
// r.URL.EscapedPath() after Mount+name: empty or starting with "/". Every
// answer the proxy makes itself is JSON {"error": "…"}.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, name, rest, accessToken string) {
	up, ok := p.upstreams[name]
	if !ok {
		writeError(w, http.StatusNotFound, "no remote API called "+clip(name, 64))
		return
	}
	refuse := func(status int, reason string) {
		p.logger.Info("remote API request refused", "remote", name, "method", r.Method, "status", status, "reason", reason)
		writeError(w, status, reason)
	}
	if reason := checkPath(rest); reason != "" {
		refuse(http.StatusBadRequest, reason)
		return
	}
	switch r.Method {
	case http.MethodTrace, "TRACK", http.MethodConnect:
		// A TRACE answer echoes the request as the remote got it, bearer
		// token included; CONNECT would open a tunnel.
		refuse(http.StatusMethodNotAllowed, "the method "+r.Method+" is not allowed")
		return
	}
	header := r.Header
	if upgrade := r.Header.Get("Upgrade"); strings.EqualFold(upgrade, "h2c") {
		// curl --http2 asks for HTTP/2 on a plain connection; the request
		// stands without it.
		header = r.Header.Clone()
		header.Del("Upgrade")
		header.Del("Http2-Settings")
	} else if upgrade != "" {
		// A WebSocket handshake is a GET, which the app's cross-origin
		// protection lets through: another site could open a socket that
		// carries the user's token.
		refuse(http.StatusBadRequest, "connection upgrades are not supported")
		return
	}
	body, err := p.readBody(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", p.maxBody))
		} else {
			refuse(http.StatusBadRequest, "the request body could not be read")
		}
		return
	}

	// checkPath has vouched for rest, so appending it cannot leave the
	// base path, and it decodes.
	escaped := up.Base.EscapedPath() + rest
	if escaped == "" {
		escaped = "/"
	}
	decoded, err := url.PathUnescape(escaped)
	if err != nil {
		refuse(http.StatusBadRequest, "the path has invalid percent-encoding")
		return
	}

	// The timeout is a timer rather than a context deadline, because it
	// must stop once the response headers are in, not cut the body off.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	timer := time.AfterFunc(p.timeout, func() { cancel(errTimeout) })
	defer timer.Stop()

	in := r.WithContext(ctx)
	in.Header = header
	in.Body, in.ContentLength = http.NoBody, 0
	if len(body) > 0 {
		in.Body, in.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		in.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	in.TransferEncoding, in.Trailer = nil, nil

	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = &url.URL{
				Scheme:   up.Base.Scheme,
				Host:     up.Base.Host,
				Path:     decoded,
				RawPath:  escaped,
				RawQuery: pr.Out.URL.RawQuery, // as sent, less what ReverseProxy drops as unparsable
			}
			pr.Out.Host = up.Base.Host
			stripRequestHeader(pr.Out.Header)
			if accessToken != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+accessToken)
			}
		},
		Transport:     p.transport,
		FlushInterval: -1, // streamed answers (server-sent events, long polls) arrive as written
		ModifyResponse: func(res *http.Response) error {
			if !timer.Stop() {
				return errTimeout
			}
			if err := fixLocation(res, up); err != nil {
				return err
			}
			secureResponseHeader(res.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			p.fail(ctx, w, r, name, err)
		},
		// ReverseProxy logs only when a response body breaks off midway,
		// quoting the upstream's error; this keeps the event, not the text.
		ErrorLog: log.New(interruptedLog{p.logger, name, r.Method}, "", 0),
	}
	rp.ServeHTTP(w, in)
}

// readBody reads the request body whole, or fails with
// *http.MaxBytesError when it is larger than the limit.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > p.maxBody {
		return nil, &http.MaxBytesError{Limit: p.maxBody}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, p.maxBody)); err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return buf.Bytes(), nil
}

// fail answers an exchange that went wrong. The upstream's error text is
// never shown or logged: it can quote the full URL, query included.
func (p *Proxy) fail(ctx context.Context, w http.ResponseWriter, r *http.Request, name string, err error) {
	status, msg, reason := http.StatusBadGateway, "the remote API could not be reached", unreachable(err)
	switch {
	case errors.Is(err, errRedirect):
		msg, reason = "the remote API redirected outside its configured address", errRedirect.Error()
	case errors.Is(err, errTimeout) || errors.Is(context.Cause(ctx), errTimeout) || isTimeout(err):
		status, msg, reason = http.StatusGatewayTimeout, "the remote API did not answer in time", "timeout"
	case r.Context().Err() != nil:
		// The browser went away: nothing failed on the remote's side, and
		// no one reads this answer.
		p.logger.Debug("remote API request abandoned by the client", "remote", name, "method", r.Method)
		writeError(w, http.StatusBadGateway, "the request was cancelled")
		return
	}
	p.logger.Warn("remote API request failed", "remote", name, "method", r.Method, "status", status, "reason", reason)
	writeError(w, status, msg)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// unreachable names, for the log, why a remote could not be reached.
func unreachable(err error) string {
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	var op *net.OpError
	switch {
	case errors.As(err, &dns):
		return "host name lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &cert):
		return "TLS certificate not accepted"
	case errors.As(err, &op) && op.Op == "dial":
		return "could not connect"
	default:
		return "no valid response"
	}
}

// interruptedLog receives ReverseProxy's log lines (see Serve).
type interruptedLog struct {
	logger *slog.Logger
	name   string
	method string
}

func (l interruptedLog) Write(b []byte) (int, error) {
	l.logger.Warn("remote API request failed", "remote", l.name, "method", l.method, "reason", "response interrupted")
	return len(b), nil
}

// stripRequestHeader removes what the browser sent for the app, not for
// the remote: the app's cookies and any credentials (the token replaces
// them), and the forwarding headers a remote might trust to learn, or be
// fooled about, who is calling. Hop-by-hop headers are ReverseProxy's.
func stripRequestHeader(h http.Header) {
	for k := range h {
		switch ck := http.CanonicalHeaderKey(k); {
		case ck == "Cookie", ck == "Authorization", ck == "Proxy-Authorization",
			ck == "Forwarded", ck == "X-Real-Ip", strings.HasPrefix(ck, "X-Forwarded-"):
			delete(h, k)
		}
	}
}

// secureResponseHeader takes from a remote's answer what would act on
// the app's origin, which is where the browser sees it come from.
func secureResponseHeader(h http.Header) {
	for k := range h {
		if actsOnOrigin(http.CanonicalHeaderKey(k)) {
			delete(h, k)
		}
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	privateCache(h)
}

// actsOnOrigin reports whether a response header (in canonical form) is
// one the remote must not send on the app's behalf.
func actsOnOrigin(k string) bool {
	switch k {
	case "Set-Cookie", "Set-Cookie2":
		// The cookies would be the app's: a remote could overwrite the
		// session cookie or plant one.
		return true
	case "Clear-Site-Data":
		// It would wipe the app's cookies and storage, signing the user
		// out.
		return true
	case "Strict-Transport-Security", "Alt-Svc", "Service-Worker-Allowed", "Nel", "Report-To", "Reporting-Endpoints":
		// Origin-wide policies are the app's to set, and reporting would
		// send the remote reports about the app's traffic.
		return true
	case "Refresh":
		// A redirect that would bypass the Location check.
		return true
	case "Www-Authenticate":
		// The browser would prompt for a password on the app's origin.
		return true
	case "Content-Security-Policy", "Content-Security-Policy-Report-Only":
		// Replaced by csp.
		return true
	}
	// CORS for the app's origin is the app's decision: a remote allowing
	// credentials from anywhere would let any site read the user's remote
	// data through the app's session.
	return strings.HasPrefix(k, "Access-Control-")
}

// privateCache keeps shared caches from storing the answer. The remote saw
// a request with Authorization, which a shared cache does not store an
// answer to by default; the app's request carries a cookie instead, which
// does not stop it, so the answer could be served to another user.
func privateCache(h http.Header) {
	var keep []string
	private := false
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.TrimSpace(d)
			name, _, qualified := strings.Cut(d, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "", "public", "s-maxage", "proxy-revalidate":
				continue
			case "private":
				private = private || !qualified // private="Field" leaves the rest shareable
			case "no-store":
				private = true
			}
			keep = append(keep, d)
		}
	}
	if !private {
		keep = append(keep, "private")
	}
	h.Set("Cache-Control", strings.Join(keep, ", "))
}

// fixLocation points a Location inside the upstream's base at the same
// place through the proxy, so the browser stays on the app. The transport
// never follows redirects; a redirect anywhere else (another origin, or
// outside the base path) is replaced by an error rather than handed to the
// browser, which would follow it without the token but from the app's
// page. A Location on another status (201 Created) is not followed by
// browsers and is left alone when it points elsewhere.
func fixLocation(res *http.Response, up Upstream) error {
	locs := res.Header.Values("Location")
	if len(locs) == 0 {
		return nil
	}
	local, ok := "", false
	if len(locs) == 1 { // browsers refuse several; so does the proxy
		local, ok = up.localLocation(locs[0], res.Request.URL)
	}
	switch {
	case ok:
		res.Header.Set("Location", local)
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return errRedirect
	}
	return nil
}

// localLocation is loc, resolved against the URL it answered, as a path
// under Mount, if it lies under the upstream's base.
func (u Upstream) localLocation(loc string, from *url.URL) (string, bool) {
	ref, err := url.Parse(loc)
	if err != nil {
		return "", false
	}
	abs := from.ResolveReference(ref)
	if !sameOrigin(abs, u.Base) {
		return "", false
	}
	rest, ok := strings.CutPrefix(abs.EscapedPath(), u.Base.EscapedPath())
	// The remainder is held to the rules of a browser's path: it is what
	// the browser will send back.
	if !ok || rest != "" && rest[0] != '/' || checkPath(rest) != "" {
		return "", false
	}
	out := Mount + u.Name + rest
	if abs.RawQuery != "" || abs.ForceQuery {
		out += "?" + abs.RawQuery
	}
	if abs.Fragment != "" {
		out += "#" + abs.EscapedFragment()
	}
	return out, true
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

type errorBody struct {
	Error string `json:"error"`
}

// writeError is the one shape of every answer the proxy makes itself.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// clip shortens s, which the client chose, before it is echoed back.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
