// Package config reads the program's own settings from the environment into
// one validated struct. Every error names the variable and what is wrong
// with it in one line, so a bad deployment fails at start-up, not at the
// first login. The session store backends read their own variables (see
// sessionstore.Definition); config only checks that SESSION_STORE names
// one of them.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"example.com/oauth-sessions/internal/apiproxy"
	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/httpsession"
)

// Config is everything the program takes from its environment, but for the
// chosen backend's own settings.
type Config struct {
	// ListenAddr is where the server listens (LISTEN_ADDR, else ":PORT");
	// a port of 0 lets the system pick one (see Listening).
	ListenAddr string
	AppName    string // the pages' title and brand
	Env        string // "development" or "production"
	BaseURL    *url.URL
	DataDir    string
	// baseURLDefault: BASE_URL was not set, so BaseURL follows the port
	// the server actually listens on.
	baseURLDefault bool

	SessionStore            string   // as given; sessionstore.Lookup resolves aliases
	SessionSecrets          []string // newest first; empty in development means "generate one"
	SessionTTL              time.Duration
	SessionIdleTimeout      time.Duration
	SessionTouchAfter       time.Duration
	SessionCacheSize        int // sessions kept validated in memory; 0 = off
	AllowMemoryInProduction bool

	GoogleClientID     string
	GoogleClientSecret string
	GoogleIssuerURL    string
	// GoogleScopes are asked for besides openid, email and profile; with
	// GoogleOfflineAccess Google issues a refresh token too.
	GoogleScopes        []string
	GoogleOfflineAccess bool
	// BEGIN remove:github

	GitHubClientID     string
	GitHubClientSecret string
	GitHubURL          string // https://github.com, or a GitHub Enterprise Server
	GitHubAPIURL       string // https://api.github.com, or https://HOST/api/v3
	GitHubScopes       []string
	// END remove:github
	// BEGIN remove:oidc

	OIDCIssuerURL     string
	OIDCClientID      string
	OIDCClientSecret  string
	OIDCName          string // the sign-in button's label
	OIDCScopes        []string
	OIDCOfflineAccess bool
	// END remove:oidc

	AllowedEmailDomains []string
	DemoLogin           bool // the built-in development provider is offered
	// Tracing: OpenTelemetry, off unless OTELEndpoint is set (OTEL_*, as
	// the OpenTelemetry specification names them).
	OTELEndpoint    string // OTEL_EXPORTER_OTLP_ENDPOINT; "" with OTEL_SDK_DISABLED
	OTELProtocol    string
	OTELHeaders     map[string]string
	OTELSampler     string
	OTELSamplerArg  float64
	OTELServiceName string
	OTELResource    map[string]string

	// APIProxy are the remote APIs mounted at /api/remote/{name}/,
	// called with the signed-in user's access token (API_PROXY).
	APIProxy []apiproxy.Upstream

	TrustProxy bool
	LogLevel   string
	LogFormat  string
	// MaxConnections caps the open connections (MAX_CONNECTIONS), and
	// MaxConnectionsPerAddress those of one client address (0: no cap).
	MaxConnections           int
	MaxConnectionsPerAddress int
	// LoginRatePerMinute and LoginRateBurst limit the sign-ins one client
	// address may start; LoginStartMaxPerSecond caps them for the whole
	// instance, whoever starts them.
	LoginRatePerMinute     int
	LoginRateBurst         int
	LoginStartMaxPerSecond int
	// ShutdownDrain is how long the server keeps serving after SIGTERM while
	// /readyz reports not ready, so a load balancer stops sending to it
	// before it stops accepting connections.
	ShutdownDrain time.Duration
}

// Production reports whether APP_ENV is production.
func (c *Config) Production() bool { return c.Env == "production" }

// GoogleConfigured reports whether Google credentials are set.
func (c *Config) GoogleConfigured() bool { return c.GoogleClientID != "" }

// BEGIN remove:github

// GitHubConfigured reports whether GitHub credentials are set.
func (c *Config) GitHubConfigured() bool { return c.GitHubClientID != "" }

// END remove:github
// BEGIN remove:oidc

// OIDCConfigured reports whether a generic OpenID Connect provider is set.
func (c *Config) OIDCConfigured() bool { return c.OIDCClientID != "" }

// END remove:oidc

// provider is a real sign-in provider as the configuration sees it: the
// variable that turns it on, and whether it is set.
type provider struct {
	idVar      string
	configured bool
}

// providers lists the real sign-in providers, in the order of their
// buttons. Adding one is a line here.
func (c *Config) providers() []provider {
	return []provider{
		{"GOOGLE_CLIENT_ID", c.GoogleConfigured()},
		// BEGIN remove:github
		{"GITHUB_CLIENT_ID", c.GitHubConfigured()},
		// END remove:github
		// BEGIN remove:oidc
		{"OIDC_CLIENT_ID", c.OIDCConfigured()},
		// END remove:oidc
	}
}

// providerConfigured reports whether a real sign-in provider is set.
func (c *Config) providerConfigured() bool {
	return slices.ContainsFunc(c.providers(), func(p provider) bool { return p.configured })
}

// idVars are the variables that turn the real sign-in providers on:
// "A, B or C", for the production error without any.
func (c *Config) idVars() string {
	var ids []string
	for _, p := range c.providers() {
		ids = append(ids, p.idVar)
	}
	if len(ids) == 1 {
		return ids[0]
	}
	return strings.Join(ids[:len(ids)-1], ", ") + " or " + ids[len(ids)-1]
}

// credentials reads PREFIX_CLIENT_ID and PREFIX_CLIENT_SECRET, which go
// together.
func credentials(r *envconfig.Reader, prefix string) (id, secret string) {
	id, secret = r.Str(prefix+"_CLIENT_ID", ""), r.Str(prefix+"_CLIENT_SECRET", "")
	if (id == "") != (secret == "") {
		r.Fail(prefix+"_CLIENT_SECRET", "%s_CLIENT_ID and %s_CLIENT_SECRET go together; set both or neither", prefix, prefix)
	}
	return id, secret
}

// BEGIN remove:github

// providerURL reads a provider's URL: absolute http(s), and https when
// needHTTPS (production: the client secret and the tokens go there).
func providerURL(r *envconfig.Reader, name, def string, needHTTPS bool) string {
	return checkURL(r, name, strings.TrimRight(r.Str(name, def), "/"), needHTTPS)
}

// END remove:github

// issuerURL reads an OpenID Connect issuer as it is written: it must match
// the issuer of the provider's discovery document byte for byte, and some
// end in a slash (Auth0's).
func issuerURL(r *envconfig.Reader, name, def string, needHTTPS bool) string {
	return checkURL(r, name, r.Str(name, def), needHTTPS)
}

func checkURL(r *envconfig.Reader, name, v string, needHTTPS bool) string {
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		r.Fail(name, "%q is not an http(s) URL", v)
	case needHTTPS && u.Scheme != "https":
		r.Fail(name, "%q must use https in production (the client secret and tokens go there)", v)
	}
	return v
}

// Error is a configuration error about one variable.
type Error = envconfig.Error

// maxSessionTTL is the longest SESSION_TTL: the 400 days browsers keep a
// cookie at most.
const maxSessionTTL = 400 * 24 * time.Hour

// minSecretBits is the least estimated entropy of a production secret.
const minSecretBits = 128

// EntropyBits estimates the entropy of a secret as its length times the
// bits of its alphabet (log2 of the distinct characters it uses): a crude
// bound that refuses a repeated byte or a short phrase, and accepts what
// `openssl rand -hex 32` or `openssl rand -base64 32` print, whatever
// characters they happen to repeat.
func EntropyBits(s string) float64 {
	distinct := map[rune]bool{}
	n := 0
	for _, r := range s {
		distinct[r] = true
		n++
	}
	if len(distinct) < 2 {
		return 0
	}
	return float64(n) * math.Log2(float64(len(distinct)))
}

// IsExampleSecret reports whether s is one of the example secrets shown in
// this repository (deploy/kubernetes/secret.example.yaml, the docs): a
// deployment that copied one is as good as public. A test keeps this list
// in step with the files.
func IsExampleSecret(s string) bool {
	switch s {
	case "example-session-secret-replace-me-with-openssl-rand-hex-32":
		return true
	}
	return false
}

// Load reads and validates the configuration. getenv is os.Getenv in the
// program and a map lookup in tests. stores lists the names SESSION_STORE
// accepts; the first is the default.
func Load(getenv func(string) string, stores []string) (*Config, error) {
	r := envconfig.New(getenv)
	c := &Config{}
	port := r.Int("PORT", 8080, 0, 65535)
	c.ListenAddr = listenAddr(r, port)
	c.AppName = r.Str("APP_NAME", "OAuth sessions")
	if len(c.AppName) > 64 {
		r.Fail("APP_NAME", "%q is longer than 64 bytes (it is the pages' title)", c.AppName)
	}
	c.Env = r.OneOf("APP_ENV", "development", "development", "production")
	c.baseURLDefault = r.Str("BASE_URL", "") == ""
	c.BaseURL = baseURL(r, c.ListenAddr, c.Production())
	c.DataDir = r.Str("DATA_DIR", "data")

	c.SessionStore = r.OneOf("SESSION_STORE", stores[0], stores...)
	c.SessionSecrets = r.List("SESSION_SECRET")
	for i, s := range c.SessionSecrets {
		switch {
		case !c.Production():
		case len(s) < httpsession.MinSecretLen:
			r.Fail("SESSION_SECRET", "secret %d is %d bytes; production needs at least %d (e.g. openssl rand -hex 32)", i+1, len(s), httpsession.MinSecretLen)
		case IsExampleSecret(s):
			r.Fail("SESSION_SECRET", "secret %d is an example value from this repository; generate one with openssl rand -hex 32", i+1)
		case EntropyBits(s) < minSecretBits:
			r.Fail("SESSION_SECRET", "secret %d looks guessable (about %.0f bits; production needs %d): generate one with openssl rand -hex 32", i+1, EntropyBits(s), minSecretBits)
		}
	}
	if c.Production() && len(c.SessionSecrets) == 0 {
		r.Fail("SESSION_SECRET", "is required in production (at least %d bytes, e.g. openssl rand -hex 32)", httpsession.MinSecretLen)
	}
	defTTL := 10 * time.Minute
	if c.Production() {
		defTTL = 24 * time.Hour
	}
	c.SessionTTL = r.Duration("SESSION_TTL", defTTL, time.Minute)
	if c.SessionTTL > maxSessionTTL {
		// Browsers cap a cookie's lifetime at 400 days (RFC 6265bis): a
		// longer session would outlive its cookie anyway.
		r.Fail("SESSION_TTL", "%s is longer than browsers keep a cookie (400 days, 9600h)", c.SessionTTL)
	}
	c.SessionIdleTimeout = r.Duration("SESSION_IDLE_TIMEOUT", 0, 0)
	if c.SessionIdleTimeout != 0 && c.SessionIdleTimeout < time.Minute {
		r.Fail("SESSION_IDLE_TIMEOUT", "%s is too short (minimum 1m, or 0 for off)", c.SessionIdleTimeout)
	}
	c.SessionTouchAfter = r.Duration("SESSION_TOUCH_AFTER", time.Minute, 0)
	if idle := c.SessionIdleTimeout; idle > 0 && c.SessionTouchAfter > idle/2 {
		// A session is only extended on a read at least TouchAfter after
		// the last: it must come well before the idle deadline.
		if r.Str("SESSION_TOUCH_AFTER", "") != "" {
			r.Fail("SESSION_TOUCH_AFTER", "%s must be at most half of SESSION_IDLE_TIMEOUT (%s), or active users are signed out", c.SessionTouchAfter, idle)
		}
		c.SessionTouchAfter = idle / 4
	}
	c.SessionCacheSize = r.Int("SESSION_CACHE_SIZE", 10000, 0, 10_000_000)
	c.AllowMemoryInProduction = r.Bool("ALLOW_MEMORY_STORE_IN_PRODUCTION", false)

	prod := c.Production()
	c.GoogleClientID, c.GoogleClientSecret = credentials(r, "GOOGLE")
	c.GoogleIssuerURL = issuerURL(r, "GOOGLE_ISSUER_URL", "https://accounts.google.com", prod)
	c.GoogleScopes = scopes(r, "GOOGLE_SCOPES")
	c.GoogleOfflineAccess = r.Bool("GOOGLE_OFFLINE_ACCESS", false)
	// BEGIN remove:github
	c.GitHubClientID, c.GitHubClientSecret = credentials(r, "GITHUB")
	c.GitHubURL = providerURL(r, "GITHUB_URL", "https://github.com", prod && c.GitHubConfigured())
	c.GitHubAPIURL = providerURL(r, "GITHUB_API_URL", "https://api.github.com", prod && c.GitHubConfigured())
	c.GitHubScopes = scopes(r, "GITHUB_SCOPES")
	// END remove:github
	// BEGIN remove:oidc
	c.OIDCClientID, c.OIDCClientSecret = credentials(r, "OIDC")
	c.OIDCIssuerURL = issuerURL(r, "OIDC_ISSUER_URL", "", prod && c.OIDCConfigured())
	if c.OIDCConfigured() && c.OIDCIssuerURL == "" {
		r.Fail("OIDC_ISSUER_URL", "is required with OIDC_CLIENT_ID (your provider's issuer, e.g. https://kc.example.com/realms/myrealm)")
	}
	c.OIDCName = r.Str("OIDC_NAME", "Single sign-on")
	c.OIDCScopes = strings.Fields(r.Str("OIDC_SCOPES", "openid email profile"))
	if !slices.Contains(c.OIDCScopes, "openid") {
		r.Fail("OIDC_SCOPES", "%q must include openid", strings.Join(c.OIDCScopes, " "))
	}
	c.OIDCOfflineAccess = r.Bool("OIDC_OFFLINE_ACCESS", false)
	// END remove:oidc
	if prod && !c.providerConfigured() {
		r.Fail(c.providers()[0].idVar, "a sign-in provider is required in production: set %s with its secret (see docs/providers.md)", c.idVars())
	}
	for _, d := range r.List("ALLOWED_EMAIL_DOMAINS") {
		c.AllowedEmailDomains = append(c.AllowedEmailDomains, strings.ToLower(strings.TrimPrefix(d, "@")))
	}
	demo := r.Bool("DEMO_LOGIN", !c.Production())
	if c.Production() && demo && r.Str("DEMO_LOGIN", "") != "" {
		r.Fail("DEMO_LOGIN", "the demo login signs anyone in as anyone and is refused in production; remove DEMO_LOGIN or set it to false")
	}
	// The demo stands in for a real provider, never beside one.
	c.DemoLogin = !c.Production() && !c.providerConfigured() && demo

	ups, err := apiproxy.Parse(r.Raw("API_PROXY"))
	if err != nil {
		r.Fail("API_PROXY", "%v (format: name=https://api.example.com/base[,name2=...])", err)
	}
	for _, u := range ups {
		if prod && u.Base.Scheme != "https" && !u.Loopback() {
			// The user's access token goes with every call.
			r.Fail("API_PROXY", "%s must be https in production: the user's access token goes with every call", u.Name)
		}
	}
	c.APIProxy = ups

	otel(r, c)

	c.TrustProxy = r.Bool("TRUST_PROXY", false)
	c.LogLevel = r.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	c.LogFormat = r.OneOf("LOG_FORMAT", "text", "text", "json")
	c.MaxConnections = r.Int("MAX_CONNECTIONS", 1024, 16, 1_000_000)
	c.MaxConnectionsPerAddress = r.Int("MAX_CONNECTIONS_PER_ADDRESS", 64, 0, 1_000_000)
	c.LoginRatePerMinute = r.Int("LOGIN_RATE_LIMIT", 10, 1, 1_000_000)
	c.LoginRateBurst = r.Int("LOGIN_RATE_BURST", 20, 1, 1_000_000)
	c.LoginStartMaxPerSecond = r.Int("LOGIN_START_MAX_PER_SECOND", 100, 1, 1_000_000)
	defDrain := time.Duration(0)
	if c.Production() {
		defDrain = 5 * time.Second
	}
	c.ShutdownDrain = r.Duration("SHUTDOWN_DRAIN", defDrain, 0)
	if c.ShutdownDrain > 5*time.Minute {
		r.Fail("SHUTDOWN_DRAIN", "%s is too long (maximum 5m)", c.ShutdownDrain)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// listenAddr reads LISTEN_ADDR (host:port), which wins over PORT; without
// it the server listens on PORT on every address, as platforms that set
// PORT expect.
func listenAddr(r *envconfig.Reader, port int) string {
	v := r.Str("LISTEN_ADDR", "")
	if v == "" {
		return net.JoinHostPort("", strconv.Itoa(port))
	}
	_, p, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 0 || n > 65535 {
		r.Fail("LISTEN_ADDR", "%q is not host:port (e.g. 127.0.0.1:8080, :8080, or port 0 for any free port)", v)
		return net.JoinHostPort("", strconv.Itoa(port))
	}
	return v
}

// defaultBaseURL is the URL people reach a server listening on addr at:
// localhost for every address, else the host it listens on.
func defaultBaseURL(addr string) *url.URL {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}
}

// Listening completes the configuration once the server listens on addr:
// without BASE_URL, the base URL names the port actually bound (PORT=0 or
// LISTEN_ADDR=127.0.0.1:0 pick a free one).
func (c *Config) Listening(addr net.Addr) {
	if c.baseURLDefault {
		c.BaseURL = defaultBaseURL(addr.String())
	}
}

func baseURL(r *envconfig.Reader, listen string, production bool) *url.URL {
	def := defaultBaseURL(listen)
	raw := r.Str("BASE_URL", def.String())
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		r.Fail("BASE_URL", "%q is not an absolute http(s) URL such as https://app.example.com", raw)
		return def
	}
	if production && u.Scheme != "https" {
		r.Fail("BASE_URL", "%q must use https in production (secure cookies need it)", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u
}

// DevSecret returns the development secret kept in dir, creating it (mode
// 0600) on first use. A secret generated afresh at each start would sign
// everyone out on every restart, which is what this template demonstrates
// does not happen.
func DevSecret(dir string) (secret string, created bool, err error) {
	path := filepath.Join(dir, "session-secret")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("read development secret %q: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("create data folder %q: %w", dir, err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret = hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write development secret %q: %w", path, err)
	}
	return secret, true, nil
}

// scopes reads extra OAuth scopes, separated by spaces or commas (Google's
// are URLs), each a scope-token as RFC 6749 §3.3 defines it.
func scopes(r *envconfig.Reader, name string) []string {
	out := strings.FieldsFunc(r.Raw(name), func(c rune) bool { return c == ' ' || c == ',' })
	for _, s := range out {
		for _, c := range s {
			if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				r.Fail(name, "%q is not a valid scope (printable ASCII, no quotes or backslashes)", s)
				return nil
			}
		}
	}
	return out
}

// otel reads the OpenTelemetry variables the app honours, as the
// specification defines them. Tracing is off unless an endpoint is set,
// and off whatever is set with OTEL_SDK_DISABLED=true.
func otel(r *envconfig.Reader, c *Config) {
	endpoint := r.Str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	if endpoint != "" {
		if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			r.Fail("OTEL_EXPORTER_OTLP_ENDPOINT", "%q is not an http(s) URL of an OTLP receiver, e.g. http://otel-collector:4318", endpoint)
		}
	}
	if !r.Bool("OTEL_SDK_DISABLED", false) {
		c.OTELEndpoint = endpoint
	}
	c.OTELProtocol = r.OneOf("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "http/protobuf", "grpc")
	c.OTELHeaders = keyValues(r, "OTEL_EXPORTER_OTLP_HEADERS")
	c.OTELSampler = r.OneOf("OTEL_TRACES_SAMPLER", "parentbased_always_on",
		"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio")
	c.OTELSamplerArg = 1
	if arg := r.Str("OTEL_TRACES_SAMPLER_ARG", ""); arg != "" {
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			r.Fail("OTEL_TRACES_SAMPLER_ARG", "%q is not a ratio from 0 to 1 (0.1 samples one trace in ten)", arg)
		} else {
			c.OTELSamplerArg = f
		}
	}
	c.OTELServiceName = r.Str("OTEL_SERVICE_NAME", serviceName(c.AppName))
	c.OTELResource = keyValues(r, "OTEL_RESOURCE_ATTRIBUTES")
}

// serviceName is the default service.name: the app's name as a lower-case
// slug ("OAuth sessions" → "oauth-sessions").
func serviceName(app string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(app) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(c)
			dash = false
		default:
			dash = true
		}
	}
	if b.Len() == 0 {
		return "app"
	}
	return b.String()
}

// keyValues reads the specification's list of key=value pairs, separated
// by commas, values percent-encoded (W3C Baggage's format).
func keyValues(r *envconfig.Reader, name string) map[string]string {
	raw := r.Raw(name)
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	out := map[string]string{}
	for _, item := range strings.Split(raw, ",") {
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		value, err := url.PathUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err != nil {
			// Not the value: headers may hold an API key.
			r.Fail(name, "is not a list of key=value pairs separated by commas")
			return nil
		}
		out[k] = value
	}
	return out
}
