package deploycheck

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestScaleTopology runs the scale profile as compose would, but as
// processes: redis-server with the compose file's flags, the app built as
// the Dockerfile builds it, twice, each with exactly the environment compose
// resolves for app1 and app2 (.env.example as .env), and nginx running
// deploy/nginx.conf. Only addresses are rewritten: service names and the
// container port become loopback ports, /data becomes a folder.
//
// Through nginx it signs in with the demo login, checks both instances
// serve, restarts them one after the other under load (GETs, and sign-ins
// and sign-outs: POSTs) and expects no failed request and no one signed
// out; then a sign-out through nginx is seen by both instances.
func TestScaleTopology(t *testing.T) {
	redisBin := need(t, "redis-server", "apt-get install -y redis-server")
	nginxBin := need(t, "nginx", "apt-get install -y nginx", "/usr/sbin/nginx")
	web := buildApp(t)
	p := load(t, "scale")

	rs, err := p.GetService("redis")
	if err != nil || len(rs.Command) == 0 || rs.Command[0] != "redis-server" {
		t.Fatalf("redis service: %v %v", rs.Command, err)
	}
	redisAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	host, port, _ := strings.Cut(redisAddr, ":")
	redisArgs := append(append([]string{}, rs.Command[1:]...), "--port", port, "--bind", host, "--dir", t.TempDir(), "--daemonize", "no")
	startProc(t, "redis", redisBin, redisAddr, redisArgs, nil)

	lbAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + lbAddr
	apps := map[string]*proc{}
	for _, name := range []string{"app1", "app2"} {
		s, _ := p.GetService(name)
		e := env(t, s)
		if e["PORT"] != "8080" || e["BASE_URL"] != "http://localhost:8081" || e["DATA_DIR"] != "/data" || !strings.Contains(e["REDIS_URL"], "redis:6379") {
			t.Fatalf("%s environment changed shape; update the rewrite below: %v", name, e)
		}
		e["BASE_URL"] = base
		e["REDIS_URL"] = strings.Replace(e["REDIS_URL"], "redis:6379", redisAddr, 1)
		e["DATA_DIR"] = t.TempDir() // the volume
		var environ []string
		for k, v := range e {
			environ = append(environ, k+"="+v)
		}
		sort.Strings(environ)
		// The container's PORT stays; LISTEN_ADDR (which wins) puts the
		// process on a loopback port it picks and names in its log.
		apps[name] = startApp(t, name, web, environ)
	}
	startNginx(t, nginxBin, lbAddr, map[string]string{"app1:8080": apps["app1"].addr, "app2:8080": apps["app2"].addr})

	// Sign in through nginx; the form and the callback may land on either
	// instance.
	sid := signIn(t, base)
	counts := func() (int, int) {
		return strings.Count(apps["app1"].logs(), "path=/api/auth/me"), strings.Count(apps["app2"].logs(), "path=/api/auth/me")
	}
	before1, before2 := counts()
	for i := range 40 {
		if st := me(t, base, sid); st != http.StatusOK {
			t.Fatalf("request %d through nginx: /api/auth/me = %d, want 200", i, st)
		}
	}
	after1, after2 := counts()
	t.Logf("40 requests: %d served by app1, %d by app2", after1-before1, after2-before2)
	if after1 == before1 || after2 == before2 {
		t.Fatalf("40 requests were not served by both instances: app1 %d, app2 %d", after1-before1, after2-before2)
	}

	// The rolling restart, under load.
	var ok, failed, signedOut, cycles atomic.Int64
	var mu sync.Mutex
	var problems []string
	fail := func(format string, args ...any) {
		failed.Add(1)
		mu.Lock()
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/me", nil)
				req.Header.Set("Cookie", "sid="+sid)
				res, err := client.Do(req)
				if err != nil {
					fail("GET /api/auth/me: %v", err)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusUnauthorized:
					signedOut.Add(1)
				default:
					fail("GET /api/auth/me: %d", res.StatusCode)
				}
			}
		})
	}
	wg.Go(func() { // sign in and out now and then: GETs and a POST each time
		for {
			select { // within the compose file's limit on sign-ins per address
			case <-stop:
				return
			case <-time.After(1500 * time.Millisecond):
			}
			if err := signInOut(base); err != nil {
				fail("sign-in and sign-out: %v", err)
			} else {
				cycles.Add(1)
			}
		}
	})
	time.Sleep(time.Second)
	for _, name := range []string{"app1", "app2"} {
		began := time.Now()
		if err := apps[name].stop(t); err != nil {
			t.Errorf("%s did not exit cleanly on SIGTERM: %v\n%s", name, err, apps[name].logs())
		}
		apps[name].start(t)
		waitHTTP(t, "http://"+apps[name].addr+"/readyz", 30*time.Second)
		t.Logf("%s restarted and ready after %s", name, time.Since(began).Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("during the rolling restart: %d signed-in requests answered, %d sign-in/sign-out cycles, %d failed, %d signed out",
		ok.Load(), cycles.Load(), failed.Load(), signedOut.Load())
	if failed.Load() > 0 || signedOut.Load() > 0 {
		t.Fatalf("the rolling restart failed %d requests and signed the user out %d times: %v", failed.Load(), signedOut.Load(), problems)
	}
	if ok.Load() < 100 || cycles.Load() < 3 {
		t.Fatalf("the load did not run: %d requests, %d cycles", ok.Load(), cycles.Load())
	}

	// The cookie survived; a sign-out through nginx is seen by both
	// instances, each of which has the session in its cache.
	for _, name := range []string{"app1", "app2"} {
		if st := me(t, "http://"+apps[name].addr, sid); st != http.StatusOK {
			t.Fatalf("after the restarts %s says %d for the session, want 200", name, st)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/auth/logout", nil)
	req.Header.Set("Cookie", "sid="+sid)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("sign-out through nginx: %v %v", res, err)
	}
	res.Body.Close()
	for _, name := range []string{"app1", "app2"} {
		deadline := time.Now().Add(time.Second)
		for me(t, "http://"+apps[name].addr, sid) != http.StatusUnauthorized {
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves the session 1s after the sign-out", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// A header stuffed with 2,500 made-up cookies (30 KB) is refused by
	// nginx (its default: no header line over 8 KB, which deploy/nginx.conf
	// leaves as it is) and never reaches the app, which would take it
	// (docs/deploy.md).
	var fake strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&fake, "oauth_%04x=x; ", i)
	}
	for target, want := range map[string]int{base: http.StatusBadRequest, "http://" + apps["app1"].addr: http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodGet, target+"/api/auth/me", nil)
		req.Header.Set("Cookie", fake.String())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s/api/auth/me with a 30 KB Cookie header = %d, want %d", target, res.StatusCode, want)
		}
	}
}

// startNginx runs deploy/nginx.conf, as the lb service mounts it, inside a
// minimal main configuration, with the upstream and listen addresses
// rewritten to loopback ports.
func startNginx(t *testing.T, bin, addr string, upstreams map[string]string) *proc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for from, to := range upstreams {
		if !strings.Contains(conf, "server "+from) {
			t.Fatalf("deploy/nginx.conf has no upstream %s", from)
		}
		conf = strings.ReplaceAll(conf, "server "+from, "server "+to)
	}
	if !strings.Contains(conf, "listen 80;") {
		t.Fatal("deploy/nginx.conf does not listen on 80")
	}
	conf = strings.Replace(conf, "listen 80;", "listen "+addr+";", 1)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Getuid() == 0 {
		user = "user root;" // its temporary folders are root's
	}
	main := fmt.Sprintf(`daemon off;
%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/default.conf;
}
`, user, dir)
	for name, body := range map[string]string{"default.conf": conf, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return startProc(t, "nginx", bin, addr, []string{"-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}, nil)
}

func signIn(t *testing.T, base string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	if err := demoSignIn(noRedirects(jar), base); err != nil {
		t.Fatalf("demo sign-in through nginx: %v", err)
	}
	u, _ := url.Parse(base)
	for _, c := range jar.Cookies(u) {
		if c.Name == "sid" {
			return c.Value
		}
	}
	t.Fatal("no session cookie after the demo sign-in")
	return ""
}

// signInOut signs in, checks the session, signs out with a POST and checks
// it is gone.
func signInOut(base string) error {
	jar, _ := cookiejar.New(nil)
	c := noRedirects(jar)
	if err := demoSignIn(c, base); err != nil {
		return err
	}
	for _, want := range []int{http.StatusOK, -1, http.StatusUnauthorized} {
		if want == -1 {
			res, err := c.Post(base+"/api/auth/logout", "application/json", nil)
			if err != nil {
				return err
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("POST /api/auth/logout: %d", res.StatusCode)
			}
			continue
		}
		res, err := c.Get(base + "/api/auth/me")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != want {
			return fmt.Errorf("/api/auth/me = %d, want %d", res.StatusCode, want)
		}
	}
	return nil
}

func me(t *testing.T, base, sid string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/me", nil)
	req.Header.Set("Cookie", "sid="+sid)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/api/auth/me: %v", base, err)
	}
	res.Body.Close()
	return res.StatusCode
}
