package deploycheck

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestAlertRules: promtool checks deploy/prometheus/alerts.yml and runs
// its unit tests (alerts_test.yml), and every alert has a test there.
func TestAlertRules(t *testing.T) {
	promtool := need(t, "promtool", "apt-get install -y prometheus")
	dir := filepath.Join(root, "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, r := range alertRules(t) {
		if !fires[r.Alert] {
			t.Errorf("alert %s has no test in alerts_test.yml that makes it fire", r.Alert)
		}
	}
}

type alertRule struct {
	Alert string `json:"alert"`
	Expr  string `json:"expr"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// dashboardQueries returns every panel query of deploy/grafana/dashboard.json.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			out["panel "+p.Title] = q.Expr
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return out
}

// TestPrometheusEvaluatesEveryQuery runs the app (built as the Dockerfile
// builds it) and a real Prometheus that scrapes it with
// deploy/prometheus/prometheus.yml and the alert rules; after sign-ins and
// refusals, every alert expression and every dashboard query is evaluated
// through Prometheus's HTTP API: each must parse, and each metric it names
// must be one Prometheus has scraped from the app (a renamed metric fails
// here).
func TestPrometheusEvaluatesEveryQuery(t *testing.T) {
	prom := need(t, "prometheus", "apt-get install -y prometheus")
	web := buildApp(t)
	app := startApp(t, "web", web, []string{"DATA_DIR=" + t.TempDir(), "SESSION_SECRET=" + testSecret, "PATH=" + os.Getenv("PATH")})
	base := "http://" + app.addr
	// Traffic of every kind the queries speak of: sign-ins, a failed one,
	// a 404, the metrics themselves.
	for range 3 {
		jar, _ := cookiejar.New(nil)
		if err := demoSignIn(noRedirects(jar), base); err != nil {
			t.Fatalf("demo sign-in: %v", err)
		}
	}
	for _, path := range []string{"/api/auth/google/callback?state=forged&code=x", "/no-such-page", "/api/auth/me"} {
		if res, err := http.Get(base + path); err == nil {
			res.Body.Close()
		}
	}

	// The shipped configuration, its targets pointed at the running app,
	// its scrapes made often enough for a test.
	cfg, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := yaml.Unmarshal(cfg, &conf); err != nil {
		t.Fatal(err)
	}
	jobs, _ := conf["scrape_configs"].([]any)
	if len(jobs) != 1 {
		t.Fatalf("prometheus.yml has %d scrape configs, want the app's one", len(jobs))
	}
	job := jobs[0].(map[string]any)
	delete(job, "dns_sd_configs")
	job["static_configs"] = []any{map[string]any{"targets": []any{app.addr}}}
	job["scrape_interval"] = "1s"
	conf["global"] = map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"}
	dir := t.TempDir()
	out, _ := yaml.Marshal(conf)
	alerts, _ := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	for name, b := range map[string][]byte{"prometheus.yml": out, "alerts.yml": alerts} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProc(t, "prometheus", prom, addr, []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + addr}, nil)
	api := "http://" + addr + "/api/v1/"
	get := func(path string) (json.RawMessage, error) {
		res, err := http.Get(api + path)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		var r struct {
			Status string          `json:"status"`
			Data   json.RawMessage `json:"data"`
			Error  string          `json:"error"`
		}
		b, _ := io.ReadAll(res.Body)
		if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
			return nil, fmt.Errorf("%s: %s %s", path, r.Status, r.Error)
		}
		return r.Data, nil
	}
	// Two scrapes at least, so rates have two points.
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := get("query?query=" + url.QueryEscape(`count_over_time(up{job="oauth-sessions"}[1m]) >= 3`))
		if err == nil && !strings.Contains(string(d), `"result":[]`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not scrape the app three times within 30s (%v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	queries := dashboardQueries(t)
	for _, r := range alertRules(t) {
		queries["alert "+r.Alert] = r.Expr
	}
	for what, expr := range queries {
		if _, err := get("query?query=" + url.QueryEscape(expr)); err != nil {
			t.Errorf("%s does not evaluate: %v", what, err)
			continue
		}
		for _, name := range metricNames(expr) {
			d, err := get("series?match[]=" + url.QueryEscape(name))
			if err != nil || string(d) == "[]" {
				t.Errorf("%s names %s, which Prometheus has not scraped from the app (renamed? never exported?)", what, name)
			}
		}
	}
	// The rules are loaded and healthy.
	d, err := get("rules")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name, Health, LastError string
			}
		}
	}
	_ = json.Unmarshal(d, &rules)
	loaded := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			loaded++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	if want := len(alertRules(t)); loaded != want {
		t.Errorf("Prometheus loaded %d rules, want the %d of alerts.yml", loaded, want)
	}
}

var (
	quoted   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchers = regexp.MustCompile(`\{[^}]*\}`)
	ranges   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping = regexp.MustCompile(`\b(by|without|on|ignoring)\s*\([^)]*\)`)
	ident    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*\b\s*\(?`)
)

// promqlWords are PromQL's keywords: not metric names.
var promqlWords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}

// metricNames returns the metric names an expression reads: its
// identifiers that are neither functions (followed by "("), keywords,
// label names (in matchers and groupings) nor strings.
func metricNames(expr string) []string {
	e := quoted.ReplaceAllString(expr, `""`)
	e = matchers.ReplaceAllString(e, " ")
	e = ranges.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	var names []string
	for _, m := range ident.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") {
			continue // a function or an aggregation
		}
		m = strings.TrimSpace(m)
		if slices.Contains(promqlWords, strings.ToLower(m)) || slices.Contains(names, m) {
			continue
		}
		names = append(names, m)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`sum by (instance) (rate(http_requests_total{status=~"5.."}[5m])) / on(instance) group_left sum without (le) (rate(x_total[5m])) > 0.05 and up == 0`)
	if want := []string{"http_requests_total", "x_total", "up"}; !slices.Equal(got, want) {
		t.Fatalf("metricNames = %q, want %q", got, want)
	}
}

// TestComposeObservabilityProfile: `docker compose --profile observability`
// resolves, mounts the very Prometheus configuration and rules that
// TestPrometheusEvaluatesEveryQuery runs, scrapes every service that runs
// the app, provisions the dashboard where Grafana's provisioning looks,
// and sends the app's traces to its Jaeger when the user's .env says so.
func TestComposeObservabilityProfile(t *testing.T) {
	p, err := loadProject(t, project(t, "SESSION_SECRET="+testSecret, "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318"), "observability")
	if err != nil {
		t.Fatalf("the observability profile does not load: %v", err)
	}
	mountOf := func(svc, target string) string {
		s, err := p.GetService(svc)
		if err != nil {
			t.Fatalf("the observability profile has no %s: %v", svc, err)
		}
		for _, v := range s.Volumes {
			if v.Target == target {
				rel, err := filepath.Rel(p.WorkingDir, v.Source)
				if err != nil {
					t.Fatal(err)
				}
				return filepath.ToSlash(rel)
			}
		}
		t.Fatalf("%s mounts nothing at %s", svc, target)
		return ""
	}
	if got := mountOf("prometheus", "/etc/prometheus"); got != "deploy/prometheus" {
		t.Errorf("Prometheus's configuration comes from %s, not the tested deploy/prometheus", got)
	}
	if got := mountOf("grafana", "/etc/grafana/provisioning"); got != "deploy/grafana/provisioning" {
		t.Errorf("Grafana's provisioning comes from %s", got)
	}
	provisioning, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "provisioning", "dashboards", "dashboards.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mountOf("grafana", "/var/lib/grafana/dashboards/oauth-sessions.json"); got != "deploy/grafana/dashboard.json" ||
		!strings.Contains(string(provisioning), "path: /var/lib/grafana/dashboards") {
		t.Errorf("the dashboard is mounted from %s, or not where the provisioning looks", got)
	}

	// Every service running the app, in every profile, is a name
	// Prometheus resolves.
	var conf struct {
		ScrapeConfigs []struct {
			DNS []struct {
				Names []string `json:"names"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &conf); err != nil || len(conf.ScrapeConfigs) != 1 || len(conf.ScrapeConfigs[0].DNS) != 1 {
		t.Fatalf("prometheus.yml: %v %+v", err, conf)
	}
	dns := conf.ScrapeConfigs[0].DNS[0]
	for _, s := range loadAll(t).Services {
		if s.Image == "oauth-sessions:latest" && (!slices.Contains(dns.Names, s.Name) || dns.Port != 8080) {
			t.Errorf("Prometheus does not scrape the app service %s (names %v, port %d)", s.Name, dns.Names, dns.Port)
		}
	}
	app, _ := p.GetService("app")
	if got := env(t, app)["OTEL_EXPORTER_OTLP_ENDPOINT"]; got != "http://jaeger:4318" {
		t.Errorf("with the endpoint in .env, the app exports traces to %q", got)
	}
}
