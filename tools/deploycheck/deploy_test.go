// Package deploycheck tests the deployment files as a user's tools read and
// run them: docker-compose.yml through the Compose Specification's own
// loader, for every profile, with .env.example as the user's .env; each
// healthcheck command against live servers; the Kubernetes manifests
// decoded strictly into the Kubernetes API types; and the Dockerfile. It is
// a module of its own so these dependencies stay out of the app's go.mod.
// No Docker engine is needed.
package deploycheck

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const root = "../.."

// testSecret is a SESSION_SECRET for the profiles that demand one.
const testSecret = "deploycheck-0123456789abcdef0123456789abcdef0123456789abcdef"

// project copies what compose reads (docker-compose.yml, deploy/) into a
// temporary folder, with .env.example as its .env plus the given lines, as
// a user who ran `cp .env.example .env` and edited it has it.
func project(t *testing.T, envLines ...string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join(root, "docker-compose.yml"), filepath.Join(dir, "docker-compose.yml"))
	entries, err := os.ReadDir(filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			copyFile(t, filepath.Join(root, "deploy", e.Name()), filepath.Join(dir, "deploy", e.Name()))
		}
	}
	env, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(env), "\n")
	for _, set := range envLines {
		name, _, _ := strings.Cut(set, "=")
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, name+"=") })
		if i < 0 {
			lines = append(lines, set)
		} else {
			lines[i] = set // an edited line, not a second one (the first would win)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadProject resolves the compose file in dir as `docker compose
// --profile ...` does there: the .env file for interpolation, nothing from
// this machine's environment.
func loadProject(t *testing.T, dir string, profiles ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "docker-compose.yml")},
		cli.WithWorkingDirectory(dir),
		cli.WithProfiles(profiles),
		cli.WithEnv([]string{}),
		cli.WithEnvFiles(filepath.Join(dir, ".env")),
		cli.WithDotEnv,
		cli.WithName("oauth-sessions"),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func load(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadProject(t, project(t, "SESSION_SECRET="+testSecret), profiles...)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load with profiles %v: %v", profiles, err)
	}
	return p
}

// loadAll loads the compose file with every profile at once, as
// `docker compose --profile "*"` does.
func loadAll(t *testing.T) *types.Project {
	t.Helper()
	return load(t, "*")
}

// env returns a service's resolved environment (environment: and its
// env_files, as compose passes them to the container).
func env(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// appVars lists the variables the app reads, from .env.example (which the
// app's own tests keep equal to what config.Load reads), commented-out
// ones ("#NAME=") included.
func appVars(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		k, _, ok := strings.Cut(strings.TrimPrefix(line, "#"), "=")
		if ok && !strings.ContainsAny(k, " \t") && k != "" {
			vars[k] = true
		}
	}
	if len(vars) < 20 {
		t.Fatalf("read only %d variables from .env.example", len(vars))
	}
	return vars
}

// TestComposeProfiles: each profile starts what it says, and nothing more.
func TestComposeProfiles(t *testing.T) {
	for _, tc := range []struct {
		profiles []string
		want     string
	}{
		{nil, "app"}, // SQLite: the app alone
		// BEGIN remove:mongo
		{[]string{"mongo"}, "app mongo"},
		// END remove:mongo
		// BEGIN remove:redis
		{[]string{"redis"}, "app redis"},
		{[]string{"scale"}, "app app1 app2 lb redis"},
		// END remove:redis
		{[]string{"observability"}, "app grafana jaeger prometheus"},
	} {
		p := load(t, tc.profiles...)
		names := p.ServiceNames()
		sort.Strings(names)
		if got := strings.Join(names, " "); got != tc.want {
			t.Errorf("profiles %v start %q, want %q", tc.profiles, got, tc.want)
		}
	}
}

// BEGIN remove:redis

// TestScaleDemandsASharedSecret: instances sharing a store must share the
// session secret; compose refuses the scale profile without one, and only
// the scale profile.
func TestScaleDemandsASharedSecret(t *testing.T) {
	dir := project(t) // .env.example as it is: SESSION_SECRET empty
	if _, err := loadProject(t, dir); err != nil {
		t.Fatalf("the default profile needs no secret, but: %v", err)
	}
	_, err := loadProject(t, dir, "scale")
	if err == nil || !strings.Contains(err.Error(), "SESSION_SECRET") || !strings.Contains(err.Error(), "share") {
		t.Fatalf("scale profile without SESSION_SECRET: %v; want compose to stop with a message about the shared secret", err)
	}
	p := load(t, "scale")
	for _, name := range []string{"app1", "app2"} {
		s, _ := p.GetService(name)
		if got := env(t, s)["SESSION_SECRET"]; got != testSecret {
			t.Errorf("%s SESSION_SECRET = %q, want the one from .env", name, got)
		}
	}
}

func TestComposeScaleProfile(t *testing.T) {
	p := load(t, "scale")
	for _, name := range []string{"app1", "app2"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("scale profile lacks %s: %v", name, err)
		}
		e := env(t, s)
		if e["SESSION_STORE"] != "redis" || !strings.Contains(e["REDIS_URL"], "redis:6379") || e["TRUST_PROXY"] != "true" {
			t.Errorf("%s: SESSION_STORE %q, REDIS_URL %q, TRUST_PROXY %q; want shared Redis behind a trusted proxy", name, e["SESSION_STORE"], e["REDIS_URL"], e["TRUST_PROXY"])
		}
		if s.Image != "oauth-sessions:latest" || s.PullPolicy != types.PullPolicyNever {
			t.Errorf("%s runs %q (pull %q); want the image the app service builds", name, s.Image, s.PullPolicy)
		}
	}
	lb, err := p.GetService("lb")
	if err != nil {
		t.Fatal(err)
	}
	if len(lb.Ports) == 0 || len(lb.Volumes) == 0 {
		t.Fatalf("lb has no port or config: %+v", lb)
	}
	for _, dep := range []string{"app1", "app2"} {
		if d := lb.DependsOn[dep]; !d.Restart || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("lb depends on %s as %+v; want restart coupling (nginx resolves names at start)", dep, d)
		}
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server app1:8080", "server app2:8080", "X-Forwarded-Proto", "Host $http_host", "keepalive ", "proxy_next_upstream", "non_idempotent"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("deploy/nginx.conf lacks %q", want)
		}
	}
	for _, leak := range []string{"$upstream_addr", "X-Upstream"} {
		if strings.Contains(string(conf), leak) {
			t.Errorf("deploy/nginx.conf sends %s to clients (internal addresses)", leak)
		}
	}
}

// END remove:redis

func TestComposeServices(t *testing.T) {
	p := loadAll(t)
	for _, s := range p.Services {
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable {
			if s.Name != "lb" {
				t.Errorf("service %s has no health check", s.Name)
			}
		}
		if tag := s.Image[strings.LastIndex(s.Image, ":")+1:]; s.Name != "app" && s.Build == nil && !strings.HasPrefix(s.Image, "oauth-sessions") &&
			(tag == "latest" || !strings.ContainsAny(tag, ".")) {
			t.Errorf("service %s image %q is not pinned to a version", s.Name, s.Image)
		}
	}
	// BEGIN remove:redis
	redis, _ := p.GetService("redis")
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction", "--maxmemory "} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q (noeviction does nothing without maxmemory)", cmd, want)
		}
	}
	if redis.Deploy == nil || redis.Deploy.Resources.Limits == nil || redis.Deploy.Resources.Limits.MemoryBytes == 0 {
		t.Error("redis has no container memory limit")
	}
	// END remove:redis
	// BEGIN remove:mongo
	mongo, _ := p.GetService("mongo")
	if !strings.HasPrefix(mongo.Image, "mongo:") {
		t.Errorf("mongo image = %q, want the official image", mongo.Image)
	}
	// END remove:mongo
	// Each store's server keeps its data in a named volume, where its image
	// keeps it.
	for svc, target := range map[string]string{
		// BEGIN remove:redis
		"redis": "/data",
		// END remove:redis
		// BEGIN remove:mongo
		"mongo": "/data/db",
		// END remove:mongo
	} {
		s, _ := p.GetService(svc)
		if !namedVolumeAt(p, s, target) {
			t.Errorf("service %s has no named volume at %s", svc, target)
		}
	}
	built := 0
	for _, s := range p.Services {
		if s.Build != nil {
			built++
		}
	}
	if built != 1 {
		t.Errorf("%d services build the image, want one (the others run it)", built)
	}
	app, _ := p.GetService("app")
	if app.Build == nil {
		t.Error("app is not built from the Dockerfile")
	}
	// The app waits for each store's server (every service but the app's
	// instances and the load balancer), when its profile runs it.
	for _, s := range p.Services {
		if s.Image == app.Image || s.Name == "lb" || slices.Contains(s.Profiles, "observability") {
			continue
		}
		if d, ok := app.DependsOn[s.Name]; !ok || d.Condition != types.ServiceConditionHealthy || d.Required {
			t.Errorf("app's dependency on %s = %+v; want healthy, and optional (SQLite needs no server)", s.Name, d)
		}
	}
	if got := strings.Join(app.HealthCheck.Test, " "); !strings.Contains(got, "/web healthcheck") {
		t.Errorf("app health check %q does not use the binary's healthcheck", got)
	}
	if len(app.EnvFiles) == 0 || !strings.HasSuffix(app.EnvFiles[0].Path, ".env") || bool(app.EnvFiles[0].Required) {
		t.Errorf("app env_file = %+v, want an optional .env", app.EnvFiles)
	}
	if v := env(t, app)["SESSION_STORE"]; v != "sqlite" {
		t.Errorf("app SESSION_STORE default = %q, want sqlite", v)
	}
}

// TestDataDirIsInAVolume: every app service keeps its data in a volume, not
// in the container's writable layer (lost when it is recreated).
func TestDataDirIsInAVolume(t *testing.T) {
	p := loadAll(t)
	for _, s := range p.Services {
		if s.Image != "oauth-sessions:latest" {
			continue
		}
		dataDir := env(t, s)["DATA_DIR"]
		if dataDir == "" {
			t.Errorf("service %s sets no DATA_DIR", s.Name)
			continue
		}
		in := false
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && (dataDir == v.Target || strings.HasPrefix(dataDir, strings.TrimSuffix(v.Target, "/")+"/")) {
				in = true
			}
		}
		if !in {
			t.Errorf("service %s: DATA_DIR=%s lies in no volume (%+v)", s.Name, dataDir, s.Volumes)
		}
	}
}

// TestBaseURLFollowsPort: PORT in .env moves the published port and the
// redirect URI together.
func TestBaseURLFollowsPort(t *testing.T) {
	p, err := loadProject(t, project(t, "PORT=9090"))
	if err != nil {
		t.Fatal(err)
	}
	app, _ := p.GetService("app")
	if len(app.Ports) != 1 || app.Ports[0].Published != "9090" || app.Ports[0].Target != 8080 {
		t.Errorf("ports = %+v, want 9090 published to the container's 8080", app.Ports)
	}
	e := env(t, app)
	if e["BASE_URL"] != "http://localhost:9090" || e["PORT"] != "8080" {
		t.Errorf("BASE_URL = %q, PORT = %q; want http://localhost:9090 and the container on 8080", e["BASE_URL"], e["PORT"])
	}
}

func namedVolumeAt(p *types.Project, s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == target {
			if _, ok := p.Volumes[v.Source]; ok {
				return true
			}
		}
	}
	return false
}

func TestComposePassesOnlyVariablesTheAppReads(t *testing.T) {
	vars := appVars(t)
	p := loadAll(t)
	for _, s := range p.Services {
		if s.Image != "oauth-sessions:latest" {
			continue // not the app
		}
		for k := range s.Environment {
			if !vars[strings.TrimSuffix(k, "_FILE")] {
				t.Errorf("service %s passes %s, which the app does not read", s.Name, k)
			}
		}
	}
}

// dockerfileInstructions returns the arguments of every instruction of
// that name, in order.
func dockerfileInstructions(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && strings.EqualFold(f[0], name) {
			out = append(out, strings.Join(f[1:], " "))
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	froms := dockerfileInstructions(t, "FROM")
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(froms))
	}
	for _, from := range froms {
		image := strings.Fields(strings.TrimPrefix(from, "--platform=$BUILDPLATFORM "))[0]
		name, digest, _ := strings.Cut(image, "@")
		if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 || !strings.Contains(name, ":") {
			t.Errorf("FROM %s is not pinned by tag and digest", image)
		}
	}
	if !strings.HasPrefix(froms[0], "--platform=$BUILDPLATFORM ") {
		t.Errorf("the build stage %q does not run on the build platform (cross-compiles for TARGETARCH)", froms[0])
	}
	if users := dockerfileInstructions(t, "USER"); len(users) == 0 || users[len(users)-1] != "65532:65532" {
		t.Errorf("the runtime image runs as %v, want the numeric non-root 65532:65532", users)
	}
	for _, want := range []string{"CGO_ENABLED=0", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "--mount=type=cache", `VOLUME ["/data"]`,
		`HEALTHCHECK`, `CMD ["/web", "healthcheck"]`, "DATA_DIR=/data"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// What this machine's buildah (imagecheck) cannot read.
	for _, unsupported := range []string{"COPY --link", "<<"} {
		if strings.Contains(text, unsupported) {
			t.Errorf("Dockerfile uses %q", unsupported)
		}
	}
	if last := froms[len(froms)-1]; !slices.ContainsFunc([]string{"distroless", "scratch"}, func(s string) bool { return strings.Contains(last, s) }) {
		t.Errorf("runtime image %q is not minimal", last)
	}
}

// TestDockerignore: the build context holds no secrets and no build output.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	for _, want := range []string{".env", ".env.*", ".git", ".cache", "data", "*.db", "bin", "node_modules"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
