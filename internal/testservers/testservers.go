// Package testservers runs the real server processes tests need (a
// backend's own test helpers, its NAMEstore/NAMEtest package, say which),
// on free loopback ports, in temporary folders, stopped when the test ends,
// and holds the one helper tests use to wait for something to happen
// (WaitUntil). A missing server binary fails the test with the line that
// installs it; it never skips.
package testservers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// WaitUntil polls cond until it holds, failing the test with what (a
// format and its arguments) if it does not within d. It is the one place
// tests wait for something to happen; it does not wait out time itself.
func WaitUntil(t testing.TB, d time.Duration, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	pause := 100 * time.Microsecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: "+what, append([]any{d}, args...)...)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// Proc is one server process that can be stopped and started again on the
// same port and data folder, as a real restart would.
type Proc struct {
	Name string
	Addr string
	Dir  string
	// LastExit is how the process ended at its last Stop (nil: exit 0).
	LastExit error
	args     []string
	env      []string
	bin      string
	cmd      *exec.Cmd
	log      *os.File
	// reports: the process listens where LISTEN_ADDR says and names the
	// address in its log (the app); Addr is read from there.
	reports bool
}

// FreePort returns a loopback port that was free a moment ago, for
// servers that cannot pick their own (the stores' servers, nginx), all
// of which then bind 127.0.0.1 exactly as probed. The app never needs it:
// it listens on 127.0.0.1:0 and says where (StartApp).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NotInFastLane skips a test that needs what (a server, a browser) when
// the tests run with -short: the fast lane (make unit) runs every test
// that needs none. ./scripts/test, which CI runs, never passes -short, so
// there such a test always runs, and fails if what is missing.
func NotInFastLane(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s: not in the fast lane (go test -short); ./scripts/test runs it", what)
	}
}

// Need returns the path of the server binary bin, failing the test (never
// skipping it, but in the fast lane) with the install line when it is
// missing.
func Need(t testing.TB, bin, install string) string {
	t.Helper()
	NotInFastLane(t, bin)
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	t.Fatalf("%s is not installed; the tests need a real server. Install it with: %s (or run ./scripts/test, which does)", bin, install)
	return ""
}

func (p *Proc) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), p.env...)
	logStart := int64(0)
	if p.reports {
		// The first start takes any free port; a restart listens again
		// where the process was, as a restarted server does.
		listen := "127.0.0.1:0"
		if p.Addr != "" {
			listen = p.Addr
		}
		cmd.Env = append(cmd.Env, "LISTEN_ADDR="+listen)
		if st, err := p.log.Stat(); err == nil {
			logStart = st.Size()
		}
	}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	// The server dies with the test binary, even if the test crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd = cmd
	if p.reports {
		waitListening(t, p, logStart)
		return
	}
	waitPort(t, p)
}

// listeningRe finds the address in the app's "Server listening" log line.
var listeningRe = regexp.MustCompile(`msg="Server listening" addr=(\S+)`)

// waitListening waits for the line in which the process says where it
// listens (its log from offset on) and sets p.Addr from it.
func waitListening(t testing.TB, p *Proc, offset int64) {
	t.Helper()
	WaitUntil(t, 20*time.Second, func() bool {
		b, _ := os.ReadFile(p.log.Name())
		if int64(len(b)) < offset {
			return false
		}
		if m := listeningRe.FindSubmatch(b[offset:]); m != nil {
			p.Addr = string(m[1])
			return true
		}
		return false
	}, "%s saying where it listens:\n%s", p.Name, procLogs{p})
}

func waitPort(t testing.TB, p *Proc) {
	t.Helper()
	WaitUntil(t, 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "%s listening on %s:\n%s", p.Name, p.Addr, procLogs{p})
}

// procLogs formats as p's logs, read only when a failure prints them.
type procLogs struct{ p *Proc }

func (l procLogs) String() string { return l.p.Logs() }

// Stop stops the server (SIGTERM, as an orderly restart does).
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.LastExit = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// Start starts a stopped server again on the same port and folder.
func (p *Proc) Start(t testing.TB) {
	t.Helper()
	if p.cmd == nil {
		p.start(t)
	}
}

// Restart stops and starts the server.
func (p *Proc) Restart(t testing.TB) {
	t.Helper()
	p.Stop(t)
	p.Start(t)
}

// Logs returns what the process has written to stdout and stderr.
func (p *Proc) Logs() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

// Start runs bin with args and extra environment, waits until it listens
// on port, and stops it when the test ends.
func Start(t testing.TB, name, bin string, port int, args, env []string) *Proc {
	t.Helper()
	return newProcEnv(t, name, bin, port, func(string) []string { return args }, env)
}

// StartApp runs one of the project's own servers, which pick their port
// and name it in a "Server listening" log line: the app (cmd/web, told
// LISTEN_ADDR=127.0.0.1:0) or the demo provider (cmd/devidp, given
// -addr 127.0.0.1:0). It reads the address from the log, and stops the
// server when the test ends. Start after Stop listens on the same address
// again (the app).
func StartApp(t testing.TB, name, bin string, args, env []string) *Proc {
	t.Helper()
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: name, Dir: dir, bin: bin, log: log, env: env, args: args, reports: true}
	p.start(t)
	t.Cleanup(func() { p.Stop(t); log.Close() })
	return p
}

// URL is the app's base URL (http://Addr).
func (p *Proc) URL() string { return "http://" + p.Addr }

// StartIn is Start for servers whose arguments name the folder the
// process runs in (its data, its configuration file).
func StartIn(t testing.TB, name, bin string, port int, args func(dir string) []string) *Proc {
	t.Helper()
	return newProcEnv(t, name, bin, port, args, nil)
}

func newProcEnv(t testing.TB, name, bin string, port int, args func(dir string) []string, env []string) *Proc {
	t.Helper()
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, bin: bin, log: log, env: env}
	p.args = args(dir)
	p.start(t)
	t.Cleanup(func() { p.Stop(t); log.Close() })
	return p
}

// ModuleRoot returns the folder of the app's go.mod, above the working
// folder of a test.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !strings.Contains(dir, string(filepath.Separator)+"tools"+string(filepath.Separator)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// PID returns the running process's id (0 when stopped).
func (p *Proc) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Env returns the extra environment the process was started with.
func (p *Proc) Env() []string { return p.env }

// Signal sends sig to the running process (SIGKILL to simulate a crash).
func (p *Proc) Signal(sig os.Signal) error {
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}
