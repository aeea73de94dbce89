// Package config reads the program's settings from the environment into one
// validated struct. Every error names the variable and what is wrong with it
// in one line, so a bad deployment fails at start-up, not at the first login.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Store names accepted by SESSION_STORE.
const (
	StoreSQLite = "sqlite"
	StoreMemory = "memory"
	StoreRedis  = "redis"
	StoreMongo  = "mongo"
)

var validStores = []string{StoreSQLite, StoreRedis, StoreMongo, "mongodb", StoreMemory}

// Config is everything the program takes from its environment.
type Config struct {
	Port    int
	Env     string // "development" or "production"
	BaseURL *url.URL
	DataDir string

	SessionStore            string
	SessionSecrets          []string // newest first; empty in development means "generate one"
	SessionTTL              time.Duration
	SessionIdleTimeout      time.Duration
	SessionTouchAfter       time.Duration
	SessionCacheSize        int // sessions kept validated in memory; 0 = off
	AllowMemoryInProduction bool

	SQLitePath  string
	SQLiteTable string

	Redis Redis
	Mongo Mongo

	GoogleClientID      string
	GoogleClientSecret  string
	GoogleIssuerURL     string
	AllowedEmailDomains []string
	DemoLogin           bool // the built-in development provider is offered

	TrustProxy bool
	LogLevel   string
	LogFormat  string
	// ShutdownDrain is how long the server keeps serving after SIGTERM while
	// /readyz reports not ready, so a load balancer stops sending to it
	// before it stops accepting connections.
	ShutdownDrain time.Duration
}

// Redis holds the Redis store's settings.
type Redis struct {
	URL            string
	Host           string
	Port           int
	Username       string
	Password       string
	DB             int
	SentinelMaster string
	SentinelAddrs  []string
	ClusterAddrs   []string
	KeyPrefix      string
}

// Mongo holds the MongoDB store's settings.
type Mongo struct {
	URL                string
	Collection         string
	AutoRemove         string // native, interval or disabled
	AutoRemoveInterval time.Duration
}

// Production reports whether APP_ENV is production.
func (c *Config) Production() bool { return c.Env == "production" }

// GoogleConfigured reports whether real provider credentials are set.
func (c *Config) GoogleConfigured() bool { return c.GoogleClientID != "" }

// Error is a configuration error about one variable.
type Error struct {
	Var, Problem string
}

func (e *Error) Error() string { return "config: " + e.Var + ": " + e.Problem }

// reader collects values and the first error, so Load reads top to bottom.
type reader struct {
	getenv func(string) string
	err    error
}

func (r *reader) fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = &Error{Var: name, Problem: fmt.Sprintf(format, args...)}
	}
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.lookup(name)); v != "" {
		return v
	}
	return def
}

// lookup returns the variable name, or the contents of the file that
// NAME_FILE names: the Docker and Kubernetes secrets convention, so that
// secrets need not sit in the environment. One trailing newline is dropped.
func (r *reader) lookup(name string) string {
	v := r.getenv(name)
	path := strings.TrimSpace(r.getenv(name + "_FILE"))
	if path == "" {
		return v
	}
	if v != "" {
		r.fail(name+"_FILE", "%s is set too; set one of them", name)
		return v
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		r.fail(name+"_FILE", "cannot read %q: %v", path, err)
		return ""
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.TrimSpace(s) == "" {
		r.fail(name+"_FILE", "%q is empty", path)
	}
	return s
}

func (r *reader) oneOf(name, def string, valid ...string) string {
	v := strings.ToLower(r.str(name, def))
	if !slices.Contains(valid, v) {
		r.fail(name, "%q is not valid; use one of: %s", v, strings.Join(valid, ", "))
	}
	return v
}

func (r *reader) integer(name string, def, min, max int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.fail(name, "%q is not a whole number from %d to %d", v, min, max)
		return def
	}
	return n
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "%q is not a boolean (use true or false)", v)
		return def
	}
	return b
}

func (r *reader) duration(name string, def, min time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, "%q is not a duration (examples: 90s, 10m, 24h)", v)
		return def
	}
	if d < min {
		r.fail(name, "%s is too short (minimum %s)", d, min)
		return def
	}
	return d
}

func (r *reader) list(name string) []string {
	var out []string
	for _, part := range strings.Split(r.lookup(name), ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Load reads and validates the configuration. getenv is os.Getenv in the
// program and a map lookup in tests.
func Load(getenv func(string) string) (*Config, error) {
	r := &reader{getenv: getenv}
	c := &Config{}
	c.Port = r.integer("PORT", 8080, 1, 65535)
	c.Env = r.oneOf("APP_ENV", "development", "development", "production")
	c.BaseURL = r.baseURL(c.Port, c.Production())
	c.DataDir = r.str("DATA_DIR", "data")

	c.SessionStore = r.oneOf("SESSION_STORE", StoreSQLite, validStores...)
	if c.SessionStore == "mongodb" {
		c.SessionStore = StoreMongo
	}
	c.SessionSecrets = r.list("SESSION_SECRET")
	for i, s := range c.SessionSecrets {
		if c.Production() && len(s) < 32 {
			r.fail("SESSION_SECRET", "secret %d is %d bytes; production needs at least 32 (e.g. openssl rand -hex 32)", i+1, len(s))
		}
	}
	if c.Production() && len(c.SessionSecrets) == 0 {
		r.fail("SESSION_SECRET", "is required in production (at least 32 bytes, e.g. openssl rand -hex 32)")
	}
	defTTL := 10 * time.Minute
	if c.Production() {
		defTTL = 24 * time.Hour
	}
	c.SessionTTL = r.duration("SESSION_TTL", defTTL, time.Minute)
	c.SessionIdleTimeout = r.duration("SESSION_IDLE_TIMEOUT", 0, 0)
	if c.SessionIdleTimeout != 0 && c.SessionIdleTimeout < time.Minute {
		r.fail("SESSION_IDLE_TIMEOUT", "%s is too short (minimum 1m, or 0 for off)", c.SessionIdleTimeout)
	}
	c.SessionTouchAfter = r.duration("SESSION_TOUCH_AFTER", time.Minute, 0)
	if idle := c.SessionIdleTimeout; idle > 0 && c.SessionTouchAfter > idle/2 {
		// A session is only extended on a read at least TouchAfter after
		// the last: it must come well before the idle deadline.
		if r.str("SESSION_TOUCH_AFTER", "") != "" {
			r.fail("SESSION_TOUCH_AFTER", "%s must be at most half of SESSION_IDLE_TIMEOUT (%s), or active users are signed out", c.SessionTouchAfter, idle)
		}
		c.SessionTouchAfter = idle / 4
	}
	c.SessionCacheSize = r.integer("SESSION_CACHE_SIZE", 10000, 0, 10_000_000)
	c.AllowMemoryInProduction = r.boolean("ALLOW_MEMORY_STORE_IN_PRODUCTION", false)
	if c.Production() && c.SessionStore == StoreMemory && !c.AllowMemoryInProduction {
		r.fail("SESSION_STORE", "memory loses every session on restart and is refused in production; use sqlite, redis or mongo (or set ALLOW_MEMORY_STORE_IN_PRODUCTION=true)")
	}

	c.SQLitePath = r.str("SESSION_SQLITE_PATH", filepath.Join(c.DataDir, "sessions.db"))
	c.SQLiteTable = r.str("SESSION_SQLITE_TABLE", "sessions")
	if !validIdent(c.SQLiteTable) {
		r.fail("SESSION_SQLITE_TABLE", "%q is not a plain table name (letters, digits, underscore; not starting with a digit)", c.SQLiteTable)
	}

	c.Redis = Redis{
		URL:            r.str("REDIS_URL", ""),
		Host:           r.str("REDIS_HOST", "localhost"),
		Port:           r.integer("REDIS_PORT", 6379, 1, 65535),
		Username:       r.str("REDIS_USERNAME", ""),
		Password:       r.lookup("REDIS_PASSWORD"),
		DB:             r.integer("REDIS_DB", 0, 0, 15),
		SentinelMaster: r.str("REDIS_SENTINEL_MASTER", ""),
		SentinelAddrs:  r.list("REDIS_SENTINEL_ADDRS"),
		ClusterAddrs:   r.list("REDIS_CLUSTER_ADDRS"),
		KeyPrefix:      r.str("REDIS_KEY_PREFIX", "sess:"),
	}
	if c.Redis.URL != "" {
		if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			r.fail("REDIS_URL", "must be a redis:// or rediss:// URL")
		}
	}
	if (c.Redis.SentinelMaster == "") != (len(c.Redis.SentinelAddrs) == 0) {
		r.fail("REDIS_SENTINEL_ADDRS", "REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS go together; set both or neither")
	}
	if len(c.Redis.ClusterAddrs) > 0 && c.Redis.SentinelMaster != "" {
		r.fail("REDIS_CLUSTER_ADDRS", "set either Redis Cluster or Sentinel, not both")
	}

	c.Mongo = Mongo{
		URL:                r.str("MONGODB_SESSION_URL", "mongodb://localhost:27017/sessions"),
		Collection:         r.str("MONGODB_SESSION_COLLECTION", "sessions"),
		AutoRemove:         r.oneOf("MONGODB_AUTOREMOVE", "native", "native", "interval", "disabled"),
		AutoRemoveInterval: r.duration("MONGODB_AUTOREMOVE_INTERVAL", 10*time.Minute, time.Second),
	}
	if u, err := url.Parse(c.Mongo.URL); err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") {
		r.fail("MONGODB_SESSION_URL", "must be a mongodb:// or mongodb+srv:// URL")
	}

	c.GoogleClientID = r.str("GOOGLE_CLIENT_ID", "")
	c.GoogleClientSecret = r.str("GOOGLE_CLIENT_SECRET", "")
	c.GoogleIssuerURL = strings.TrimRight(r.str("GOOGLE_ISSUER_URL", "https://accounts.google.com"), "/")
	if u, err := url.Parse(c.GoogleIssuerURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		r.fail("GOOGLE_ISSUER_URL", "%q is not an http(s) URL", c.GoogleIssuerURL)
	}
	if (c.GoogleClientID == "") != (c.GoogleClientSecret == "") {
		r.fail("GOOGLE_CLIENT_SECRET", "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET go together; set both or neither")
	}
	if c.Production() && !c.GoogleConfigured() {
		r.fail("GOOGLE_CLIENT_ID", "is required in production (create OAuth credentials; see README)")
	}
	for _, d := range r.list("ALLOWED_EMAIL_DOMAINS") {
		c.AllowedEmailDomains = append(c.AllowedEmailDomains, strings.ToLower(strings.TrimPrefix(d, "@")))
	}
	c.DemoLogin = !c.Production() && !c.GoogleConfigured() && r.boolean("DEMO_LOGIN", true)

	c.TrustProxy = r.boolean("TRUST_PROXY", false)
	c.LogLevel = r.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	c.LogFormat = r.oneOf("LOG_FORMAT", "text", "text", "json")
	defDrain := time.Duration(0)
	if c.Production() {
		defDrain = 5 * time.Second
	}
	c.ShutdownDrain = r.duration("SHUTDOWN_DRAIN", defDrain, 0)
	if c.ShutdownDrain > 5*time.Minute {
		r.fail("SHUTDOWN_DRAIN", "%s is too long (maximum 5m)", c.ShutdownDrain)
	}
	if r.err != nil {
		return nil, r.err
	}
	return c, nil
}

func (r *reader) baseURL(port int, production bool) *url.URL {
	raw := r.str("BASE_URL", fmt.Sprintf("http://localhost:%d", port))
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		r.fail("BASE_URL", "%q is not an absolute http(s) URL such as https://app.example.com", raw)
		return &url.URL{Scheme: "http", Host: fmt.Sprintf("localhost:%d", port)}
	}
	if production && u.Scheme != "https" {
		r.fail("BASE_URL", "%q must use https in production (secure cookies need it)", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
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
