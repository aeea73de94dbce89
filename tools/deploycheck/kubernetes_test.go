package deploycheck

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

var k8sDir = filepath.Join(root, "deploy", "kubernetes")

// strict decodes a YAML file into v, failing on any field v does not have:
// a misspelt or misplaced key in a manifest is an error here, as it is for
// kubectl's server-side field validation.
func strict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s does not decode strictly: %v", filepath.Base(path), err)
	}
}

// kustomization is the part of kustomize's Kustomization this base uses;
// decoded strictly, so anything else in the file fails the test.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

type manifests struct {
	kust       kustomization
	deployment appsv1.Deployment
	service    corev1.Service
	configMap  corev1.ConfigMap
	secret     corev1.Secret
	pdb        policyv1.PodDisruptionBudget
	podMonitor monitoringv1.PodMonitor // an example: it needs the Prometheus Operator
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	var m manifests
	strict(t, filepath.Join(k8sDir, "kustomization.yaml"), &m.kust)
	if m.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || m.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml is %s %s", m.kust.APIVersion, m.kust.Kind)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		name := filepath.Base(f)
		example := strings.HasSuffix(name, ".example.yaml")
		if listed := slices.Contains(m.kust.Resources, name); name != "kustomization.yaml" && listed == example {
			t.Errorf("%s: listed in kustomization.yaml's resources = %v; want every manifest but the examples", name, listed)
		}
	}
	// The Secret is created by hand; its example shows the shape and is
	// never applied over a real one.
	strict(t, filepath.Join(k8sDir, "secret.example.yaml"), &m.secret)
	if m.secret.Kind != "Secret" {
		t.Fatalf("secret.example.yaml is a %s", m.secret.Kind)
	}
	strict(t, filepath.Join(k8sDir, "podmonitor.example.yaml"), &m.podMonitor)
	if m.podMonitor.APIVersion != "monitoring.coreos.com/v1" || m.podMonitor.Kind != "PodMonitor" {
		t.Fatalf("podmonitor.example.yaml is %s %s", m.podMonitor.APIVersion, m.podMonitor.Kind)
	}
	seen := map[string]bool{}
	for _, r := range m.kust.Resources {
		path := filepath.Join(k8sDir, r)
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("resource %s: %v", r, err)
		}
		if err := yaml.Unmarshal(b, &meta); err != nil {
			t.Fatalf("resource %s: %v", r, err)
		}
		want := map[string]string{"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "PodDisruptionBudget": "policy/v1"}[meta.Kind]
		if want == "" || meta.APIVersion != want {
			t.Fatalf("resource %s is %s %s; this base has a Deployment, Service, ConfigMap and PodDisruptionBudget", r, meta.APIVersion, meta.Kind)
		}
		seen[meta.Kind] = true
		switch meta.Kind {
		case "Deployment":
			strict(t, path, &m.deployment)
		case "Service":
			strict(t, path, &m.service)
		case "ConfigMap":
			strict(t, path, &m.configMap)
		case "PodDisruptionBudget":
			strict(t, path, &m.pdb)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("the base has %v; want one of each of the four kinds", seen)
	}
	return m
}

func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(m.kust.Images) != 1 || m.kust.Images[0].Name != c.Image {
		t.Errorf("the container's image %q is not the one kustomization.yaml sets (%+v)", c.Image, m.kust.Images)
	}

	// Security: numeric non-root user (the Dockerfile's), read-only root,
	// no privilege escalation, no capabilities.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != imageUID(t) {
		t.Errorf("pod securityContext = %+v; want runAsNonRoot and runAsUser %d (the image's USER)", psc, imageUID(t))
	}
	csc := c.SecurityContext
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext = %+v; want readOnlyRootFilesystem, no privilege escalation, capabilities dropped", csc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v; want CPU and memory requests and a memory limit", c.Resources)
	}

	// The environment: every name is one the app reads, directly or as
	// NAME_FILE; values from the ConfigMap and the container together.
	vars := appVars(t)
	env := map[string]string{}
	for k, v := range m.configMap.Data {
		env[k] = v
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != m.configMap.Name {
		t.Errorf("envFrom = %+v; want the ConfigMap %s", c.EnvFrom, m.configMap.Name)
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for k := range env {
		if !vars[strings.TrimSuffix(k, "_FILE")] {
			t.Errorf("the manifests set %s, which the app does not read", k)
		}
	}
	if env["APP_ENV"] != "production" {
		t.Errorf("APP_ENV = %q, want production", env["APP_ENV"])
	}
	// Two replicas need one store that every instance reaches: a server
	// store (one of .env.example's store sections but sqlite's), never one
	// that keeps each replica's sessions to itself; and the ConfigMap says
	// so to whoever changes it.
	shared := serverStores(t)
	if s, ok := env["SESSION_STORE"]; ok && !shared[s] {
		t.Errorf("SESSION_STORE = %q: two replicas need a shared store (one of %v)", s, slices.Sorted(maps.Keys(shared)))
	}
	if b, err := os.ReadFile(filepath.Join(k8sDir, "configmap.yaml")); err != nil || !strings.Contains(string(b), "must share a store") {
		t.Errorf("configmap.yaml does not say that the replicas must share a store (%v)", err)
	}
	// BEGIN remove:redis
	if _, ok := env["SESSION_STORE"]; !ok {
		t.Error("SESSION_STORE is not set (the default keeps each replica's sessions to itself); the base shares Redis")
	}
	// END remove:redis

	// Ports and probes match what the app serves.
	port := int32(8080)
	if env["PORT"] != "8080" || len(c.Ports) != 1 || c.Ports[0].ContainerPort != port || c.Ports[0].Name != "http" {
		t.Errorf("PORT = %q, ports = %+v; want the app on 8080, named http", env["PORT"], c.Ports)
	}
	for name, probe := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || probe.HTTPGet.Port.String() != "http" {
			t.Errorf("probe for %s = %+v", name, probe)
		}
	}
	if m.service.Spec.Ports[0].TargetPort.String() != "http" || !sameLabels(m.service.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("service = %+v; want it to target the pods' http port", m.service.Spec)
	}
	if m.pdb.Spec.MinAvailable == nil || m.pdb.Spec.MinAvailable.IntValue() < 1 || m.pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) ||
		!sameLabels(m.pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("pdb = %+v; want at least one of the replicas kept, and not all", m.pdb.Spec)
	}

	// The PodMonitor scrapes every replica's /metrics on its http port.
	pm := m.podMonitor.Spec
	if !sameLabels(pm.Selector.MatchLabels, d.Spec.Template.Labels) || len(pm.PodMetricsEndpoints) != 1 ||
		pm.PodMetricsEndpoints[0].Port == nil || *pm.PodMetricsEndpoints[0].Port != "http" || pm.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor = %+v; want the pods' http port, /metrics", pm)
	}
	// Tracing settings the app accepts: off with an empty endpoint, a
	// sampler it knows.
	if s := env["OTEL_TRACES_SAMPLER"]; s != "" && !strings.Contains("always_on always_off traceidratio parentbased_always_on parentbased_always_off parentbased_traceidratio", s) {
		t.Errorf("OTEL_TRACES_SAMPLER = %q is not a sampler the app knows", s)
	}
	if _, ok := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; !ok {
		t.Error("the ConfigMap does not show where to set the traces' endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)")
	}

	// Shutdown: the endpoint leaves the Service during the preStop pause,
	// then the app drains; all of it fits in the grace period.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 1 {
		t.Fatalf("preStop = %+v; want the native sleep action (the image has no shell)", c.Lifecycle)
	}
	drain, err := time.ParseDuration(env["SHUTDOWN_DRAIN"])
	if err != nil {
		t.Fatalf("SHUTDOWN_DRAIN = %q: %v", env["SHUTDOWN_DRAIN"], err)
	}
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; pause+drain+10*time.Second > grace {
		t.Errorf("terminationGracePeriodSeconds %s leaves no room after the pause (%s) and the drain (%s)", grace, pause, drain)
	}

	// Files: DATA_DIR and /tmp are writable volumes; secrets are files from
	// the Secret, which has every key a *_FILE variable points at.
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	for _, dir := range []string{env["DATA_DIR"], "/tmp"} {
		vm, ok := mounts[dir]
		if !ok || vm.ReadOnly || volumes[vm.Name].EmptyDir == nil {
			t.Errorf("%s is not a writable volume (the root file system is read-only)", dir)
		}
	}
	for k, v := range env {
		if !strings.HasSuffix(k, "_FILE") {
			continue
		}
		dir, key := filepath.Split(v)
		vm, ok := mounts[strings.TrimSuffix(dir, "/")]
		if !ok || volumes[vm.Name].Secret == nil || volumes[vm.Name].Secret.SecretName != m.secret.Name {
			t.Errorf("%s=%s is not in the mounted Secret %s", k, v, m.secret.Name)
			continue
		}
		if _, ok := m.secret.StringData[key]; !ok {
			t.Errorf("%s=%s: the Secret has no key %q", k, v, key)
		}
	}
}

// serverStores returns the stores .env.example has a section for, headed
// "(SESSION_STORE=name)", but sqlite: the ones on a server every instance
// can reach.
func serverStores(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, "(SESSION_STORE="); ok && strings.HasPrefix(line, "# ---") {
			if name, _, ok := strings.Cut(rest, ")"); ok && name != "sqlite" {
				stores[name] = true
			}
		}
	}
	return stores
}

// imageUID is the numeric user of the Dockerfile's runtime stage.
func imageUID(t *testing.T) int64 {
	t.Helper()
	users := dockerfileInstructions(t, "USER")
	if len(users) == 0 {
		t.Fatal("the Dockerfile sets no USER")
	}
	var uid int64
	for _, ch := range strings.Split(users[len(users)-1], ":")[0] {
		if ch < '0' || ch > '9' {
			t.Fatalf("USER %s is not numeric", users[len(users)-1])
		}
		uid = uid*10 + int64(ch-'0')
	}
	return uid
}

func sameLabels(a, b map[string]string) bool {
	if len(a) == 0 {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
