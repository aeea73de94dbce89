package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

const strong = "0123456789abcdef0123456789abcdef-strong"

// stores stands for the program's list of backends; config only checks
// that SESSION_STORE names one of them, the first being the default.
var stores = []string{"sqlite", "memory", "other"}

// load reads the configuration with kv as the environment.
func load(kv ...string) (*Config, error) { return Load(env(kv...), stores) }

var prod = []string{"APP_ENV", "production", "SESSION_SECRET", strong, "BASE_URL", "https://app.example.com",
	"GOOGLE_CLIENT_ID", "id", "GOOGLE_CLIENT_SECRET", "secret"}

func TestDefaults(t *testing.T) {
	c, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8080" || c.AppName != "OAuth sessions" || c.Env != "development" || c.BaseURL.String() != "http://localhost:8080" || c.DataDir != "data" ||
		c.SessionStore != "sqlite" || c.SessionTTL != 10*time.Minute || c.GoogleIssuerURL != "https://accounts.google.com" || !c.DemoLogin {
		t.Fatalf("defaults = %+v", c)
	}
	c, err = load(prod...)
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionTTL != 24*time.Hour || c.DemoLogin {
		t.Fatalf("production defaults: TTL %s, demo %v; want 24h and no demo login", c.SessionTTL, c.DemoLogin)
	}
	// BEGIN remove:github
	// Production with GitHub alone.
	onlyGitHub := []string{"APP_ENV", "production", "SESSION_SECRET", strong, "BASE_URL", "https://app.example.com", "GITHUB_CLIENT_ID", "i", "GITHUB_CLIENT_SECRET", "s"}
	if c, err := load(onlyGitHub...); err != nil || !c.GitHubConfigured() || c.GoogleConfigured() || c.GitHubURL != "https://github.com" || c.GitHubAPIURL != "https://api.github.com" {
		t.Fatalf("production with GitHub only: %+v %v", c, err)
	}
	if c, _ := load("GITHUB_CLIENT_ID", "i", "GITHUB_CLIENT_SECRET", "s"); c.DemoLogin {
		t.Fatal("the demo login is offered beside GitHub")
	}
	// END remove:github
	// BEGIN remove:oidc
	// Production with an OpenID Connect provider alone.
	onlyOIDC := []string{"APP_ENV", "production", "SESSION_SECRET", strong, "BASE_URL", "https://app.example.com",
		"OIDC_ISSUER_URL", "https://kc.example.com/realms/r/", "OIDC_CLIENT_ID", "i", "OIDC_CLIENT_SECRET", "s", "OIDC_NAME", "Keycloak"}
	if c, err := load(onlyOIDC...); err != nil || !c.OIDCConfigured() || c.OIDCIssuerURL != "https://kc.example.com/realms/r/" || c.OIDCName != "Keycloak" ||
		strings.Join(c.OIDCScopes, " ") != "openid email profile" {
		t.Fatalf("production with an OIDC provider only: %+v %v", c, err)
	}
	if c, _ := load("OIDC_ISSUER_URL", "https://kc.example.com/realms/r/", "OIDC_CLIENT_ID", "i", "OIDC_CLIENT_SECRET", "s"); c.DemoLogin {
		t.Fatal("the demo login is offered beside an OpenID Connect provider")
	}
	// END remove:oidc
	if c, _ := load("GOOGLE_CLIENT_ID", "i", "GOOGLE_CLIENT_SECRET", "s"); c.DemoLogin {
		t.Fatal("the demo login is offered beside Google")
	}
	if c, _ := load("PORT", "9090"); c.BaseURL.String() != "http://localhost:9090" {
		t.Fatalf("BASE_URL default follows PORT: got %s", c.BaseURL)
	}
	if c, _ := load("LISTEN_ADDR", "127.0.0.1:9091", "PORT", "9090"); c.ListenAddr != "127.0.0.1:9091" || c.BaseURL.String() != "http://127.0.0.1:9091" {
		t.Fatalf("LISTEN_ADDR wins over PORT and names the default base URL: %s, %s", c.ListenAddr, c.BaseURL)
	}
	// Port 0: the base URL follows the port the server gets, unless set.
	for _, kv := range [][]string{{"PORT", "0"}, {"LISTEN_ADDR", "127.0.0.1:0"}, {"LISTEN_ADDR", "[::1]:0"}} {
		c, err := load(kv...)
		if err != nil {
			t.Fatal(err)
		}
		c.Listening(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234})
		if c.BaseURL.String() != "http://127.0.0.1:41234" && !(kv[1] == "0" && c.BaseURL.String() == "http://localhost:41234") {
			t.Fatalf("%s=%s, listening on :41234: base URL %s", kv[0], kv[1], c.BaseURL)
		}
	}
	if c, _ := load("PORT", "0", "BASE_URL", "https://app.example.com"); func() bool {
		c.Listening(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234})
		return c.BaseURL.String() != "https://app.example.com"
	}() {
		t.Fatalf("BASE_URL set: the listener must not change it (got %s)", c.BaseURL)
	}
	if c, _ := load("APP_NAME", "Acme portal"); c.AppName != "Acme portal" {
		t.Fatalf("APP_NAME = %q", c.AppName)
	}
	if c, _ := load("SESSION_STORE", "Other"); c.SessionStore != "other" {
		t.Fatalf("SESSION_STORE=Other = %q, want other", c.SessionStore)
	}
	if c, _ := load(); c.SessionCacheSize != 10000 {
		t.Fatalf("default SESSION_CACHE_SIZE = %d, want 10000", c.SessionCacheSize)
	}
	if c, _ := load("SESSION_CACHE_SIZE", "0"); c.SessionCacheSize != 0 {
		t.Fatalf("SESSION_CACHE_SIZE=0 = %d, want 0 (off)", c.SessionCacheSize)
	}
	if c, _ := load("SESSION_IDLE_TIMEOUT", "1m"); c.SessionTouchAfter != 15*time.Second {
		t.Fatalf("default touch interval with a 1m idle timeout = %s, want 15s", c.SessionTouchAfter)
	}
	if c, _ := load("SESSION_SECRET", "new-one, old-one"); len(c.SessionSecrets) != 2 || c.SessionSecrets[0] != "new-one" {
		t.Fatalf("secrets = %q", c.SessionSecrets)
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := []struct {
		env     []string
		varName string
		want    string
	}{
		{[]string{"SESSION_STORE", "postgres"}, "SESSION_STORE", "sqlite, memory, other"},
		{[]string{"PORT", "eighty"}, "PORT", "whole number"},
		{[]string{"PORT", "70000"}, "PORT", "whole number"},
		{[]string{"PORT", "-1"}, "PORT", "whole number from 0"},
		{[]string{"LISTEN_ADDR", "8080"}, "LISTEN_ADDR", "not host:port"},
		{[]string{"LISTEN_ADDR", "127.0.0.1:http"}, "LISTEN_ADDR", "not host:port"},
		{[]string{"LISTEN_ADDR", "127.0.0.1:99999"}, "LISTEN_ADDR", "not host:port"},
		{[]string{"APP_NAME", strings.Repeat("x", 65)}, "APP_NAME", "longer than 64"},
		{[]string{"APP_ENV", "prod"}, "APP_ENV", "development, production"},
		{[]string{"SESSION_TTL", "ten minutes"}, "SESSION_TTL", "not a duration"},
		{[]string{"SESSION_TTL", "5s"}, "SESSION_TTL", "too short"},
		{[]string{"BASE_URL", "localhost:8080"}, "BASE_URL", "absolute"},
		{[]string{"TRUST_PROXY", "maybe"}, "TRUST_PROXY", "boolean"},
		{[]string{"GOOGLE_CLIENT_ID", "only-id"}, "GOOGLE_CLIENT_SECRET", "set both"},
		{[]string{"SESSION_IDLE_TIMEOUT", "10m", "SESSION_TOUCH_AFTER", "6m"}, "SESSION_TOUCH_AFTER", "at most half"},
		{[]string{"SESSION_CACHE_SIZE", "-1"}, "SESSION_CACHE_SIZE", "whole number from 0"},
		{[]string{"SESSION_CACHE_SIZE", "lots"}, "SESSION_CACHE_SIZE", "whole number from 0"},
		{[]string{"APP_ENV", "production", "BASE_URL", "https://a.example", "GOOGLE_CLIENT_ID", "i", "GOOGLE_CLIENT_SECRET", "s"}, "SESSION_SECRET", "required in production"},
		{append(append([]string{}, prod...), "SESSION_SECRET", "short"), "SESSION_SECRET", "at least 32"},
		{append(append([]string{}, prod...), "SESSION_SECRET", strings.Repeat("a", 64)), "SESSION_SECRET", "guessable"},
		{append(append([]string{}, prod...), "SESSION_SECRET", "correct horse battery staple!!!!"), "SESSION_SECRET", "guessable"},
		{append(append([]string{}, prod...), "SESSION_SECRET", strong+","+strings.Repeat("ab", 20)), "SESSION_SECRET", "secret 2 looks guessable"},
		{append(append([]string{}, prod...), "SESSION_SECRET", "example-session-secret-replace-me-with-openssl-rand-hex-32"), "SESSION_SECRET", "example value"},
		{append(append([]string{}, prod...), "GOOGLE_ISSUER_URL", "http://idp.example.com"), "GOOGLE_ISSUER_URL", "https in production"},
		{append(append([]string{}, prod...), "DEMO_LOGIN", "true"), "DEMO_LOGIN", "refused in production"},
		{[]string{"SESSION_TTL", "1000000h"}, "SESSION_TTL", "400 days"},
		{append(append([]string{}, prod...), "BASE_URL", "http://app.example.com"), "BASE_URL", "https"},
		{append(append([]string{}, prod...), "GOOGLE_CLIENT_ID", "", "GOOGLE_CLIENT_SECRET", ""), "GOOGLE_CLIENT_ID", "required in production: set GOOGLE_CLIENT_ID"},
		// BEGIN remove:github
		{[]string{"GITHUB_CLIENT_ID", "only-id"}, "GITHUB_CLIENT_SECRET", "set both"},
		{[]string{"GITHUB_API_URL", "api.github.com"}, "GITHUB_API_URL", "not an http(s) URL"},
		{append(append([]string{}, prod...), "GITHUB_CLIENT_ID", "i", "GITHUB_CLIENT_SECRET", "s", "GITHUB_URL", "http://ghe.example.com"), "GITHUB_URL", "https in production"},
		// END remove:github
		// BEGIN remove:oidc
		{[]string{"OIDC_CLIENT_SECRET", "only-secret"}, "OIDC_CLIENT_SECRET", "set both"},
		{[]string{"OIDC_CLIENT_ID", "i", "OIDC_CLIENT_SECRET", "s"}, "OIDC_ISSUER_URL", "required with OIDC_CLIENT_ID"},
		{[]string{"OIDC_SCOPES", "email profile"}, "OIDC_SCOPES", "must include openid"},
		{append(append([]string{}, prod...), "OIDC_CLIENT_ID", "i", "OIDC_CLIENT_SECRET", "s", "OIDC_ISSUER_URL", "http://kc.example.com/realms/r"), "OIDC_ISSUER_URL", "https in production"},
		// END remove:oidc
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "not an http(s) URL"},
		{[]string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
		{[]string{"OTEL_TRACES_SAMPLER", "sometimes"}, "OTEL_TRACES_SAMPLER", "sometimes"},
		{[]string{"OTEL_TRACES_SAMPLER_ARG", "1.5"}, "OTEL_TRACES_SAMPLER_ARG", "ratio from 0 to 1"},
		{[]string{"OTEL_EXPORTER_OTLP_HEADERS", "api-key"}, "OTEL_EXPORTER_OTLP_HEADERS", "key=value pairs"},
		{[]string{"OTEL_SDK_DISABLED", "maybe"}, "OTEL_SDK_DISABLED", "not a boolean"},
		{[]string{"GOOGLE_SCOPES", `calendar "readonly"`}, "GOOGLE_SCOPES", "not a valid scope"},
		{[]string{"API_PROXY", "things=ftp://h"}, "API_PROXY", "http or https"},
		{append(append([]string{}, prod...), "API_PROXY", "things=http://api.example.com"), "API_PROXY", "https in production"},
	}
	for _, tc := range cases {
		_, err := load(tc.env...)
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "config: "+tc.varName+": ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q; want one line about %s mentioning %q", tc.env, msg, tc.varName, tc.want)
		}
	}
}

// TestTracingSettings: the OTEL_* variables as the specification reads
// them; tracing stays off without an endpoint, and with OTEL_SDK_DISABLED.
func TestTracingSettings(t *testing.T) {
	c, err := load("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318", "OTEL_TRACES_SAMPLER", "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG", "0.25", "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=a%20b",
		"OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cr%3Dt", "APP_NAME", "Acme Shop 2")
	if err != nil {
		t.Fatal(err)
	}
	if c.OTELEndpoint != "http://collector:4318" || c.OTELSampler != "parentbased_traceidratio" || c.OTELSamplerArg != 0.25 ||
		c.OTELResource["team"] != "a b" || c.OTELHeaders["x-api-key"] != "s3cr=t" || c.OTELServiceName != "acme-shop-2" || c.OTELProtocol != "http/protobuf" {
		t.Fatalf("tracing settings = %q %q %v %v %v %q %q", c.OTELEndpoint, c.OTELSampler, c.OTELSamplerArg, c.OTELResource, c.OTELHeaders, c.OTELServiceName, c.OTELProtocol)
	}
	if c, err := load("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318", "OTEL_SDK_DISABLED", "true"); err != nil || c.OTELEndpoint != "" {
		t.Fatalf("OTEL_SDK_DISABLED=true leaves the endpoint %q (%v)", c.OTELEndpoint, err)
	}
	if c, err := load(); err != nil || c.OTELEndpoint != "" || c.OTELServiceName != strings.ReplaceAll(strings.ToLower(c.AppName), " ", "-") {
		t.Fatalf("defaults: endpoint %q, service %q (%v)", c.OTELEndpoint, c.OTELServiceName, err)
	}
}

// TestSecretEntropy: what openssl prints passes, whatever it repeats; a
// repeated byte or a phrase does not.
func TestSecretEntropy(t *testing.T) {
	if b := EntropyBits("9f2c6a1e0d4b7c3a8e5f1b2d6c9a0e7f4b3d8c1a6e2f9b0d5c7a3e8f1b4d6c2a"); b < minSecretBits {
		t.Errorf("openssl rand -hex 32 estimated at %.0f bits", b)
	}
	if b := EntropyBits("q3Zx1mV9pL2sK8nB0cR4tY7uW6eA5dF1gH2jJ3kL4m8="); b < minSecretBits {
		t.Errorf("openssl rand -base64 32 estimated at %.0f bits", b)
	}
	// A hex secret that happens to use only 8 of its 16 digits still passes.
	if b := EntropyBits("0123456701234567012345670123456701234567012345670123456701234567"); b < minSecretBits {
		t.Errorf("a 64-digit hex secret using 8 digits estimated at %.0f bits", b)
	}
	for _, weak := range []string{strings.Repeat("x", 64), "hunter2hunter2hunter2hunter2hunt", "correct horse battery staple!!!!"} {
		if b := EntropyBits(weak); b >= minSecretBits {
			t.Errorf("%q estimated at %.0f bits, want refused", weak, b)
		}
	}
}

func TestDevSecretIsKeptAcrossStarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s1, created, err := DevSecret(dir)
	if err != nil || !created || len(s1) < 32 {
		t.Fatalf("first DevSecret = %q, %v, %v", s1, created, err)
	}
	s2, created, err := DevSecret(dir)
	if err != nil || created || s2 != s1 {
		t.Fatalf("second DevSecret = %q (created %v, %v); want the same secret", s2, created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "session-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// TestSecretsFromFiles: NAME_FILE names a file holding NAME's value (the
// Docker and Kubernetes secrets convention); problems name the variable.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "session_secret")
	if err := os.WriteFile(secretFile, []byte(strong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := append([]string{}, prod...)
	vars[3] = "" // SESSION_SECRET unset: it comes from the file
	c, err := load(append(vars, "SESSION_SECRET_FILE", secretFile, "GOOGLE_CLIENT_SECRET_FILE", secretFile, "GOOGLE_CLIENT_SECRET", "")...)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SessionSecrets) != 1 || c.SessionSecrets[0] != strong || c.GoogleClientSecret != strong {
		t.Fatalf("secrets from files = %q, client secret %q; want the file's contents without the newline", c.SessionSecrets, c.GoogleClientSecret)
	}
	for _, tc := range []struct {
		env        []string
		name, want string
	}{
		{[]string{"SESSION_SECRET_FILE", filepath.Join(dir, "missing")}, "SESSION_SECRET_FILE", "no such file"},
		{[]string{"SESSION_SECRET_FILE", empty}, "SESSION_SECRET_FILE", "is empty"},
		{[]string{"SESSION_SECRET", "x", "SESSION_SECRET_FILE", secretFile}, "SESSION_SECRET_FILE", "set one of them"},
	} {
		_, err := load(tc.env...)
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+tc.name+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v; want one about %s mentioning %q", tc.env, err, tc.name, tc.want)
		}
	}
}

func TestShutdownDrain(t *testing.T) {
	if c, _ := load(); c.ShutdownDrain != 0 {
		t.Fatalf("development drain = %s, want 0 (a restart by hand is instant)", c.ShutdownDrain)
	}
	if c, _ := load(prod...); c.ShutdownDrain != 5*time.Second {
		t.Fatalf("production drain = %s, want 5s", c.ShutdownDrain)
	}
	if c, _ := load("SHUTDOWN_DRAIN", "2s"); c.ShutdownDrain != 2*time.Second {
		t.Fatalf("SHUTDOWN_DRAIN=2s = %s", c.ShutdownDrain)
	}
	if _, err := load("SHUTDOWN_DRAIN", "1h"); err == nil || !strings.HasPrefix(err.Error(), "config: SHUTDOWN_DRAIN: ") {
		t.Fatalf("SHUTDOWN_DRAIN=1h: %v", err)
	}
}
