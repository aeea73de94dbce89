package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// commands returns the shell lines of the fenced code blocks of a
// Markdown file (continuation lines joined).
func commands(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	pending := ""
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			in = !in
			continue
		}
		if !in {
			continue
		}
		line = pending + strings.TrimSpace(line)
		if strings.HasSuffix(line, "\\") {
			pending = strings.TrimSuffix(line, "\\") + " "
			continue
		}
		pending = ""
		if c, _, _ := strings.Cut(line, " #"); c != "" {
			out = append(out, strings.TrimSpace(c))
		}
	}
	return out
}

// docFiles returns the Markdown files whose commands are checked: the
// README and every page in docs/ but the generated benchmarks.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, p := range pages {
		if name := filepath.Base(p); name != "benchmarks.md" {
			files = append(files, "docs/"+name)
		}
	}
	if !slices.Contains(files, "docs/deploy.md") {
		t.Fatalf("found no docs/deploy.md among %v", files)
	}
	return files
}

// TestDocsFollowTheFiles keeps the README and the docs in step with the
// compose file, the CLI and the configuration: every profile, service and
// volume a command names exists, every `web sessions` subcommand exists,
// every variable set exists.
func TestDocsFollowTheFiles(t *testing.T) {
	p := loadAll(t)
	services := p.ServiceNames()
	var profiles []string
	for _, s := range p.Services {
		profiles = append(profiles, s.Profiles...)
	}
	cli, err := os.ReadFile(filepath.Join(root, "cmd", "web", "sessions_cmd.go"))
	if err != nil {
		t.Fatal(err)
	}
	vars := appVars(t)
	profileRe := regexp.MustCompile(`--profile (\S+)`)
	serviceRe := regexp.MustCompile(`docker compose (?:exec|cp|restart|stop|start|ps|logs)(?: -\S+| --no-deps)* ([a-z0-9]+)`)
	cpRe := regexp.MustCompile(`docker compose cp (?:\S+ )?([a-z0-9]+):`)
	volumeRe := regexp.MustCompile(`-v (oauth-sessions_[a-z0-9-]+):`)
	sessionsRe := regexp.MustCompile(`(?:/web|go run \./cmd/web) sessions ([a-z]+)`)
	varRe := regexp.MustCompile(`(?:^|\s)([A-Z][A-Z0-9_]+)=`)
	checked := 0
	for _, file := range docFiles(t) {
		for _, c := range commands(t, file) {
			for _, m := range profileRe.FindAllStringSubmatch(c, -1) {
				checked++
				if !slices.Contains(profiles, m[1]) {
					t.Errorf("%s: %q uses profile %s, which the compose file does not have", file, c, m[1])
				}
			}
			for _, re := range []*regexp.Regexp{serviceRe, cpRe} {
				for _, m := range re.FindAllStringSubmatch(c, -1) {
					checked++
					if !slices.Contains(services, m[1]) {
						t.Errorf("%s: %q names service %s, which the compose file does not have", file, c, m[1])
					}
				}
			}
			for _, m := range volumeRe.FindAllStringSubmatch(c, -1) {
				checked++
				if _, ok := p.Volumes[strings.TrimPrefix(m[1], p.Name+"_")]; !ok {
					t.Errorf("%s: %q names volume %s, which the compose file does not have", file, c, m[1])
				}
			}
			for _, m := range sessionsRe.FindAllStringSubmatch(c, -1) {
				checked++
				if !strings.Contains(string(cli), "\n  "+m[1]+" ") {
					t.Errorf("%s: %q runs `sessions %s`, which the CLI does not have", file, c, m[1])
				}
			}
			if strings.HasPrefix(c, "curl") || strings.Contains(c, "openssl") && !strings.Contains(c, "SESSION_SECRET") {
				continue
			}
			for _, m := range varRe.FindAllStringSubmatch(c, -1) {
				checked++
				if name := strings.TrimSuffix(m[1], "_FILE"); !vars[name] {
					t.Errorf("%s: %q sets %s, which the app does not read", file, c, m[1])
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("checked only %d references; the docs' commands were not found", checked)
	}
}
