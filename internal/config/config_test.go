package config

import (
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

var prod = []string{"APP_ENV", "production", "SESSION_SECRET", strong, "BASE_URL", "https://app.example.com",
	"GOOGLE_CLIENT_ID", "id", "GOOGLE_CLIENT_SECRET", "secret"}

func TestDefaults(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8080 || c.Env != "development" || c.BaseURL.String() != "http://localhost:8080" ||
		c.SessionStore != StoreSQLite || c.SessionTTL != 10*time.Minute || c.SQLitePath != filepath.Join("data", "sessions.db") ||
		c.SQLiteTable != "sessions" || c.GoogleIssuerURL != "https://accounts.google.com" || !c.DemoLogin ||
		c.Mongo.URL != "mongodb://localhost:27017/sessions" || c.Redis.KeyPrefix != "sess:" {
		t.Fatalf("defaults = %+v", c)
	}
	c, err = Load(env(prod...))
	if err != nil {
		t.Fatal(err)
	}
	if c.SessionTTL != 24*time.Hour || c.DemoLogin {
		t.Fatalf("production defaults: TTL %s, demo %v; want 24h and no demo login", c.SessionTTL, c.DemoLogin)
	}
	if c, _ := Load(env("PORT", "9090")); c.BaseURL.String() != "http://localhost:9090" {
		t.Fatalf("BASE_URL default follows PORT: got %s", c.BaseURL)
	}
	if c, _ := Load(env("SESSION_STORE", "mongodb")); c.SessionStore != StoreMongo {
		t.Fatalf("mongodb alias = %q", c.SessionStore)
	}
	if c, _ := Load(env()); c.SessionCacheSize != 10000 {
		t.Fatalf("default SESSION_CACHE_SIZE = %d, want 10000", c.SessionCacheSize)
	}
	if c, _ := Load(env("SESSION_CACHE_SIZE", "0")); c.SessionCacheSize != 0 {
		t.Fatalf("SESSION_CACHE_SIZE=0 = %d, want 0 (off)", c.SessionCacheSize)
	}
	if c, _ := Load(env("SESSION_IDLE_TIMEOUT", "1m")); c.SessionTouchAfter != 15*time.Second {
		t.Fatalf("default touch interval with a 1m idle timeout = %s, want 15s", c.SessionTouchAfter)
	}
	if c, _ := Load(env("SESSION_SECRET", "new-one, old-one")); len(c.SessionSecrets) != 2 || c.SessionSecrets[0] != "new-one" {
		t.Fatalf("secrets = %q", c.SessionSecrets)
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	cases := []struct {
		env     []string
		varName string
		want    string
	}{
		{[]string{"SESSION_STORE", "postgres"}, "SESSION_STORE", "sqlite, redis, mongo, mongodb, memory"},
		{[]string{"PORT", "eighty"}, "PORT", "whole number"},
		{[]string{"PORT", "70000"}, "PORT", "whole number"},
		{[]string{"APP_ENV", "prod"}, "APP_ENV", "development, production"},
		{[]string{"SESSION_TTL", "ten minutes"}, "SESSION_TTL", "not a duration"},
		{[]string{"SESSION_TTL", "5s"}, "SESSION_TTL", "too short"},
		{[]string{"BASE_URL", "localhost:8080"}, "BASE_URL", "absolute"},
		{[]string{"SESSION_SQLITE_TABLE", "drop table;"}, "SESSION_SQLITE_TABLE", "plain table name"},
		{[]string{"TRUST_PROXY", "maybe"}, "TRUST_PROXY", "boolean"},
		{[]string{"GOOGLE_CLIENT_ID", "only-id"}, "GOOGLE_CLIENT_SECRET", "set both"},
		{[]string{"REDIS_URL", "http://x"}, "REDIS_URL", "redis://"},
		{[]string{"REDIS_SENTINEL_MASTER", "m"}, "REDIS_SENTINEL_ADDRS", "set both"},
		{[]string{"MONGODB_SESSION_URL", "localhost"}, "MONGODB_SESSION_URL", "mongodb://"},
		{[]string{"MONGODB_AUTOREMOVE", "sometimes"}, "MONGODB_AUTOREMOVE", "native, interval, disabled"},
		{[]string{"SESSION_IDLE_TIMEOUT", "10m", "SESSION_TOUCH_AFTER", "6m"}, "SESSION_TOUCH_AFTER", "at most half"},
		{[]string{"SESSION_CACHE_SIZE", "-1"}, "SESSION_CACHE_SIZE", "whole number from 0"},
		{[]string{"SESSION_CACHE_SIZE", "lots"}, "SESSION_CACHE_SIZE", "whole number from 0"},
		{[]string{"APP_ENV", "production", "BASE_URL", "https://a.example", "GOOGLE_CLIENT_ID", "i", "GOOGLE_CLIENT_SECRET", "s"}, "SESSION_SECRET", "required in production"},
		{append(append([]string{}, prod...), "SESSION_SECRET", "short"), "SESSION_SECRET", "at least 32"},
		{append(append([]string{}, prod...), "BASE_URL", "http://app.example.com"), "BASE_URL", "https"},
		{append(append([]string{}, prod...), "GOOGLE_CLIENT_ID", "", "GOOGLE_CLIENT_SECRET", ""), "GOOGLE_CLIENT_ID", "required in production"},
		{append(append([]string{}, prod...), "SESSION_STORE", "memory"), "SESSION_STORE", "refused in production"},
	}
	for _, tc := range cases {
		_, err := Load(env(tc.env...))
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "config: "+tc.varName+": ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q; want one line about %s mentioning %q", tc.env, msg, tc.varName, tc.want)
		}
	}
	if _, err := Load(env(append(append([]string{}, prod...), "SESSION_STORE", "memory", "ALLOW_MEMORY_STORE_IN_PRODUCTION", "true")...)); err != nil {
		t.Errorf("memory explicitly allowed in production: %v", err)
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

// TestEnvExampleListsExactlyWhatIsRead keeps .env.example in step with Load.
func TestEnvExampleListsExactlyWhatIsRead(t *testing.T) {
	read := map[string]bool{}
	if _, err := Load(func(k string) string { read[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example: line %q is not KEY=value", line)
		}
		listed[name] = true
	}
	for k := range read {
		if !listed[k] {
			t.Errorf("the app reads %s but .env.example does not list it", k)
		}
	}
	for k := range listed {
		if !read[k] {
			t.Errorf(".env.example lists %s but the app does not read it", k)
		}
	}
	// The file's values must load as they are.
	vals := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			vals[k] = v
		}
	}
	if _, err := Load(func(k string) string { return vals[k] }); err != nil {
		t.Fatalf(".env.example as given does not load: %v", err)
	}
}
