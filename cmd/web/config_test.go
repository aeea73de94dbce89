package main

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/sessionstore"
)

// envExample reads .env.example: the variables it sets, and the ones it
// lists commented out ("#NAME=value", no space), whose defaults are right
// wherever the app runs (DATA_DIR: the image's /data, the working folder).
// A section headed "(SESSION_STORE=name)" belongs to that backend and is
// left out when the backend is not built in (deleted from the template).
func envExample(t *testing.T) (set map[string]string, commented map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	set, commented = map[string]string{}, map[string]bool{}
	skip := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "# ---") {
			_, store, ok := strings.Cut(line, "(SESSION_STORE=")
			_, built := sessionstore.Lookup(backends(), strings.TrimSuffix(store, ") ---"))
			skip = ok && !built
			continue
		}
		if skip {
			continue
		}
		if name, _, ok := strings.Cut(strings.TrimPrefix(line, "#"), "="); ok && strings.HasPrefix(line, "#") && !strings.ContainsAny(name, " \t") {
			commented[name] = true
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example: line %q is not KEY=value", line)
		}
		set[name] = value
	}
	return set, commented
}

// readAll reads the whole configuration with getenv: the program's own and
// every built-in backend's, and returns the first problem.
func readAll(getenv func(string) string) error {
	if _, err := loadConfig(getenv); err != nil {
		return err
	}
	for _, d := range backends() {
		env := envconfig.New(getenv)
		d.Configure(env, sessionstore.Params{DataDir: "data", Logger: slog.New(slog.DiscardHandler)})
		if err := env.Err(); err != nil {
			return err
		}
	}
	return nil
}

// varsRead returns every variable the program and its backends read (but
// NAME_FILE: any variable may come from a file).
func varsRead(t *testing.T) map[string]bool {
	t.Helper()
	read := map[string]bool{}
	if err := readAll(func(k string) string {
		if !strings.HasSuffix(k, "_FILE") {
			read[k] = true
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	return read
}

// TestEnvExampleListsExactlyWhatIsRead keeps .env.example in step with what
// the program and its backends read.
func TestEnvExampleListsExactlyWhatIsRead(t *testing.T) {
	read := varsRead(t)
	set, commented := envExample(t)
	for k := range read {
		if _, ok := set[k]; !ok && !commented[k] {
			t.Errorf("the app reads %s but .env.example does not list it", k)
		}
	}
	for k := range set {
		if !read[k] {
			t.Errorf(".env.example lists %s but the app does not read it", k)
		}
	}
	for k := range commented {
		if !read[k] {
			t.Errorf(".env.example lists %s (commented out) but the app does not read it", k)
		}
	}
	// The file's values must load as they are.
	if err := readAll(func(k string) string { return set[k] }); err != nil {
		t.Fatalf(".env.example as given does not load: %v", err)
	}
	// docker run --env-file .env.example must keep the data in the image's
	// volume: nothing in the file may move DATA_DIR or the SQLite file.
	for _, k := range []string{"DATA_DIR", "SESSION_SQLITE_PATH"} {
		if set[k] != "" {
			t.Errorf(".env.example sets %s=%s, which overrides the container's volume", k, set[k])
		}
	}
}

// TestConfigurationDocListsExactlyWhatIsRead keeps docs/configuration.md in
// step with the code and .env.example: every variable read is the name in
// the first cell of a table row there, and every name there is read and
// listed in .env.example. Rows, not prose: removing a backend from the
// template deletes its rows.
func TestConfigurationDocListsExactlyWhatIsRead(t *testing.T) {
	read := varsRead(t)
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	documented := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = true
		}
	}
	set, commented := envExample(t)
	for k := range read {
		if !documented[k] {
			t.Errorf("the app reads %s but docs/configuration.md has no row for it", k)
		}
	}
	for k := range documented {
		if !read[k] {
			t.Errorf("docs/configuration.md lists %s but the app does not read it", k)
		}
		if _, ok := set[k]; !ok && !commented[k] {
			t.Errorf("docs/configuration.md lists %s but .env.example does not", k)
		}
	}
}

// TestExampleSecretsAreRefused: every literal session secret shown in the
// repository's docs and deployment files is one production refuses, so a
// deployment that copied it does not start.
func TestExampleSecretsAreRefused(t *testing.T) {
	re := regexp.MustCompile(`(?m)(?:SESSION_SECRET=|session-secret:\s*)([^\s$…"'` + "`" + `(][^\s"'` + "`" + `]*)`)
	found := 0
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".cache" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		ext := filepath.Ext(path)
		if d.IsDir() || !(ext == ".md" || ext == ".yaml" || ext == ".yml" || ext == ".env" || strings.HasPrefix(d.Name(), ".env") || d.Name() == "Dockerfile") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			found++
			env := map[string]string{"APP_ENV": "production", "BASE_URL": "https://app.example.com", "SESSION_SECRET": m[1],
				"GOOGLE_CLIENT_ID": "id", "GOOGLE_CLIENT_SECRET": "secret"}
			if _, err := loadConfig(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "SESSION_SECRET") {
				t.Errorf("%s shows the session secret %q, which production accepts (%v): add it to config.IsExampleSecret", path, m[1], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("found no example secret in the repository: the scan is broken (deploy/kubernetes/secret.example.yaml has one)")
	}
}
