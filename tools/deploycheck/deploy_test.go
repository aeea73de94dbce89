// Package deploycheck tests the deployment files as a user's tools would read
// them: docker-compose.yml through the Compose Specification's own parser,
// and the Dockerfile. It is a module of its own so the compose parser's
// dependencies stay out of the app's go.mod. No Docker engine is needed.
package deploycheck

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const root = "../.."

func load(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithProfiles(profiles),
		cli.WithEnv([]string{}), // the file's own defaults, not this machine's environment
		cli.WithName("oauth-sessions"),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// appVars lists the variables the app reads, from .env.example (which the
// app's own tests keep equal to what config.Load reads).
func appVars(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, _, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			vars[k] = true
		}
	}
	if len(vars) < 20 {
		t.Fatalf("read only %d variables from .env.example", len(vars))
	}
	return vars
}

func TestComposeServices(t *testing.T) {
	p := load(t)
	for _, name := range []string{"redis", "mongo", "app"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable {
			t.Errorf("service %s has no health check", name)
		}
	}
	redis, _ := p.GetService("redis")
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q", cmd, want)
		}
	}
	mongo, _ := p.GetService("mongo")
	if !strings.HasPrefix(mongo.Image, "mongo:") {
		t.Errorf("mongo image = %q, want the official image", mongo.Image)
	}
	for svc, target := range map[string]string{"redis": "/data", "mongo": "/data/db", "app": "/data"} {
		s, _ := p.GetService(svc)
		found := false
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Target == target {
				if _, ok := p.Volumes[v.Source]; ok {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("service %s has no named volume at %s", svc, target)
		}
	}
	app, _ := p.GetService("app")
	for _, dep := range []string{"redis", "mongo"} {
		if d, ok := app.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("app does not wait for %s to be healthy: %+v", dep, app.DependsOn)
		}
	}
	if app.Build == nil {
		t.Error("app is not built from the Dockerfile")
	}
	if got := strings.Join(app.HealthCheck.Test, " "); !strings.Contains(got, "/web healthcheck") {
		t.Errorf("app health check %q does not use the binary's healthcheck", got)
	}
	if len(app.EnvFiles) == 0 || !strings.HasSuffix(app.EnvFiles[0].Path, ".env") || bool(app.EnvFiles[0].Required) {
		t.Errorf("app env_file = %+v, want an optional .env", app.EnvFiles)
	}
	if v := app.Environment["SESSION_STORE"]; v == nil || *v != "sqlite" {
		t.Errorf("app SESSION_STORE default = %v, want sqlite", v)
	}
}

func TestComposeScaleProfile(t *testing.T) {
	if _, err := load(t).GetService("lb"); err == nil {
		t.Fatal("the load balancer runs without --profile scale")
	}
	p := load(t, "scale")
	for _, name := range []string{"app1", "app2"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("scale profile lacks %s: %v", name, err)
		}
		if v := s.Environment["SESSION_STORE"]; v == nil || *v != "redis" {
			t.Errorf("%s SESSION_STORE = %v, want redis (shared sessions)", name, v)
		}
		if v := s.Environment["REDIS_URL"]; v == nil || !strings.Contains(*v, "redis:6379") {
			t.Errorf("%s REDIS_URL = %v, want the compose redis", name, v)
		}
	}
	lb, err := p.GetService("lb")
	if err != nil {
		t.Fatal(err)
	}
	if len(lb.Ports) == 0 || len(lb.Volumes) == 0 {
		t.Fatalf("lb has no port or config: %+v", lb)
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server app1:8080", "server app2:8080", "X-Forwarded-Proto", "Host $http_host"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("deploy/nginx.conf lacks %q", want)
		}
	}
}

func TestComposePassesOnlyVariablesTheAppReads(t *testing.T) {
	vars := appVars(t)
	p := load(t, "scale")
	for _, s := range p.Services {
		if s.Build == nil {
			continue // not the app
		}
		for k := range s.Environment {
			if !vars[k] {
				t.Errorf("service %s passes %s, which the app does not read", s.Name, k)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	text := string(b)
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		}
	}
	if len(froms) < 2 {
		t.Errorf("Dockerfile has %d stages, want a multi-stage build", len(froms))
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "root") || strings.HasPrefix(users[len(users)-1], "0") {
		t.Errorf("the runtime image runs as %v, want a non-root user", users)
	}
	for _, want := range []string{"CGO_ENABLED=0", `VOLUME ["/data"]`, `HEALTHCHECK`, `CMD ["/web", "healthcheck"]`, "DATA_DIR=/data"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if last := froms[len(froms)-1]; !slices.ContainsFunc([]string{"distroless", "scratch"}, func(s string) bool { return strings.Contains(last, s) }) {
		t.Errorf("runtime image %q is not minimal", last)
	}
}
