package deploycheck

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a server process the tests start, stop with SIGTERM and start
// again with the same command, as compose restarts a container.
type proc struct {
	name string
	bin  string
	args []string
	env  []string // exactly this environment: nothing from the test's own
	dir  string
	addr string // where it listens, to know it is up
	log  *os.File
	// reports: the app, which picks its port (LISTEN_ADDR=127.0.0.1:0)
	// and names it in its log; addr is read from there, and a restart
	// listens there again.
	reports bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
}

// freePort returns a loopback port that was free a moment ago: for the
// servers that cannot pick their own (the stores' servers, nginx), which
// then bind 127.0.0.1 exactly as probed. The app picks its own (startApp).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// need finds a program the tests run, failing (never skipping) with the
// line that installs it.
func need(t testing.TB, name, install string, fallbacks ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: not in the fast lane (go test -short); ./scripts/test runs it", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p) // processes run in their own folders
			return abs
		}
	}
	t.Fatalf("%s is not installed; the deployment tests run it for real. Install it with: %s (or run ./scripts/test, which does)", name, install)
	return ""
}

func startProc(t *testing.T, name, bin, addr string, args, env []string) *proc {
	t.Helper()
	return newProc(t, &proc{name: name, bin: bin, args: args, env: env, addr: addr})
}

// startApp runs the app's binary with env on a port it picks itself, and
// reads where from its "Server listening" log line: no port is probed.
func startApp(t *testing.T, name, bin string, env []string) *proc {
	t.Helper()
	return newProc(t, &proc{name: name, bin: bin, env: env, reports: true})
}

func newProc(t *testing.T, p *proc) *proc {
	t.Helper()
	p.dir = t.TempDir()
	log, err := os.Create(filepath.Join(p.dir, p.name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p.log = log
	p.start(t)
	t.Cleanup(func() { p.stop(t); log.Close() })
	return p
}

// listeningRe finds the address in the app's "Server listening" line.
var listeningRe = regexp.MustCompile(`msg="Server listening" addr=(\S+)`)

func (p *proc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Dir = p.env, p.dir
	cmd.Stdout, cmd.Stderr = p.log, p.log
	offset := len(p.logs())
	if p.reports {
		listen := "127.0.0.1:0"
		if p.addr != "" {
			listen = p.addr // a restart: where it listened before
		}
		cmd.Env = append(append([]string{}, p.env...), "LISTEN_ADDR="+listen)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr := p.addr
		if p.reports {
			addr = ""
			if m := listeningRe.FindStringSubmatch(p.logs()[offset:]); m != nil {
				addr = m[1]
			}
		}
		if addr != "" {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				p.addr = addr
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited during start-up: %v\n%s", p.name, err, p.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 30s\n%s", p.name, p.addr, p.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 20s), returning
// how the process ended.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within 20s of SIGTERM", p.name)
	}
}

func (p *proc) logs() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

// waitHTTP waits until GET url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not 200 within %s (last: %v)", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buildApp builds the app as the Dockerfile's build stage does: static,
// trimmed, stripped.
func buildApp(t *testing.T) string {
	t.Helper()
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	const build = `CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/web ./cmd/web`
	if !strings.Contains(string(dockerfile), build) {
		t.Fatalf("the Dockerfile no longer builds with %q: update buildApp to match it", build)
	}
	out := filepath.Join(t.TempDir(), "web")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/web")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the app: %v\n%s", err, b)
	}
	return out
}
