package deploycheck

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestHealthchecks runs each compose healthcheck command, as Docker runs it
// inside the container, against a live healthy server (it must pass) and a
// live server that answers with an error (it must fail). Only the address
// the command talks to is added; the command is the compose file's. (A
// store's server whose check needs helpers of its own has its test in a
// file of its own.)
func TestHealthchecks(t *testing.T) {
	p := loadAll(t)
	// BEGIN remove:redis
	t.Run("redis", func(t *testing.T) {
		bin := need(t, "redis-server", "apt-get install -y redis-server")
		need(t, "redis-cli", "apt-get install -y redis-tools")
		test := healthcheck(t, p, "redis")
		for _, tc := range []struct {
			name    string
			args    []string
			healthy bool
		}{
			{"healthy", nil, true},
			{"answers NOAUTH", []string{"--requirepass", "only-for-this-test"}, false},
		} {
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			_, port, _ := strings.Cut(addr, ":")
			startProc(t, "redis-"+tc.name, bin, addr, append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, tc.args...), nil)
			err := runHealthcheck(t, test, nil, func(s string) string { return strings.ReplaceAll(s, "redis-cli ", "redis-cli -p "+port+" ") })
			if (err == nil) != tc.healthy {
				t.Errorf("redis healthcheck against a server that is %s: err %v", tc.name, err)
			}
		}
	})
	// END remove:redis

	t.Run("app", func(t *testing.T) {
		web := buildApp(t)
		test := healthcheck(t, p, "app")
		if test[0] != "CMD" || test[1] != "/web" {
			t.Fatalf("app healthcheck %v does not run the binary", test)
		}
		bin := func(s string) string { return strings.Replace(s, "/web", web, 1) }
		healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		}))
		defer healthy.Close()
		failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "broken", http.StatusInternalServerError)
		}))
		defer failing.Close()
		portOf := func(u string) string { return u[strings.LastIndex(u, ":")+1:] }
		if err := runHealthcheck(t, test, []string{"PORT=" + portOf(healthy.URL)}, bin); err != nil {
			t.Errorf("app healthcheck against a healthy server: %v", err)
		}
		if err := runHealthcheck(t, test, []string{"PORT=" + portOf(failing.URL)}, bin); err == nil {
			t.Error("app healthcheck passed against a server answering 500")
		}
		if err := runHealthcheck(t, test, []string{"PORT=" + fmt.Sprint(freePort(t))}, bin); err == nil {
			t.Error("app healthcheck passed with no server")
		}
	})
}

// healthcheck returns the healthcheck command of service in p.
func healthcheck(t *testing.T, p *types.Project, service string) []string {
	t.Helper()
	s, err := p.GetService(service)
	if err != nil || s.HealthCheck == nil {
		t.Fatalf("%s has no healthcheck: %v", service, err)
	}
	return s.HealthCheck.Test
}

// runHealthcheck runs a healthcheck command as Docker does, with env added
// to this process's environment and the command passed through rewrite
// (which points it at the test's server), and returns how it exited. A
// command that cannot run at all fails the test.
func runHealthcheck(t *testing.T, test []string, env []string, rewrite func(string) string) error {
	t.Helper()
	var cmd *exec.Cmd
	switch test[0] {
	case "CMD-SHELL":
		cmd = exec.Command("/bin/sh", "-c", rewrite(test[1]))
	case "CMD":
		// Arguments joined by NUL so a rewrite can insert whole ones.
		args := strings.Split(rewrite(strings.Join(test[1:], "\x00")), "\x00")
		cmd = exec.Command(args[0], args[1:]...)
	default:
		t.Fatalf("healthcheck %v: unknown form", test)
	}
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && (ee.ExitCode() == 126 || ee.ExitCode() == 127) {
			t.Fatalf("healthcheck %v could not run (exit %d): %s", test, ee.ExitCode(), out)
		}
	}
	return err
}
