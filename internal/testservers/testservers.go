// Package testservers starts real Redis and MongoDB-protocol servers for
// tests: on free loopback ports, in temporary folders, stopped when the test
// ends. A missing server binary fails the test with the line that installs
// it; it never skips.
package testservers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

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
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func need(t testing.TB, bin, install string) string {
	t.Helper()
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
	cmd.Stdout, cmd.Stderr = p.log, p.log
	// The server dies with the test binary, even if the test crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd = cmd
	waitPort(t, p)
}

func waitPort(t testing.TB, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(p.log.Name())
			t.Fatalf("%s did not listen on %s within 20s:\n%s", p.Name, p.Addr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

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

func newProc(t testing.TB, name, bin string, port int, args func(dir string) []string) *Proc {
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

const redisInstall = "apt-get install -y redis-server redis-sentinel"

func redisArgs(port int, extra ...string) func(string) []string {
	return func(dir string) []string {
		return append([]string{
			"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
			"--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no", "--daemonize", "no",
		}, extra...)
	}
}

// Redis starts a single redis-server with append-only persistence, so a
// restart keeps its keys.
func Redis(t testing.TB) *Proc {
	t.Helper()
	bin := need(t, "redis-server", redisInstall)
	port := FreePort(t)
	return newProc(t, "redis", bin, port, redisArgs(port))
}

// RedisCluster starts a three-master Redis Cluster and returns its nodes.
func RedisCluster(t testing.TB) []*Proc {
	t.Helper()
	bin := need(t, "redis-server", redisInstall)
	cli := need(t, "redis-cli", redisInstall)
	var nodes []*Proc
	var addrs []string
	for i := range 3 {
		port := FreePort(t)
		p := newProc(t, fmt.Sprintf("redis-cluster-%d", i), bin, port,
			redisArgs(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
		nodes = append(nodes, p)
		addrs = append(addrs, p.Addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, _ := c.ClusterInfo(context.Background()).Result()
		if strings.Contains(info, "cluster_state:ok") {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not reach cluster_state:ok:\n%s", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sentinel is a master, a replica and one sentinel watching them.
type Sentinel struct {
	Master, Replica, Sentinel *Proc
	MasterName                string
}

// RedisSentinel starts a Sentinel deployment.
func RedisSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := need(t, "redis-server", redisInstall)
	sbin := need(t, "redis-sentinel", redisInstall)
	mport := FreePort(t)
	master := newProc(t, "redis-master", bin, mport, redisArgs(mport))
	rport := FreePort(t)
	replica := newProc(t, "redis-replica", bin, rport, redisArgs(rport, "--replicaof", "127.0.0.1", fmt.Sprint(mport)))
	sport := FreePort(t)
	const name = "sessions-master"
	sentinel := newProc(t, "redis-sentinel", sbin, sport, func(dir string) []string {
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 2000\nsentinel failover-timeout %s 10000\n",
			sport, dir, name, mport, name, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf}
	})
	// Wait until the sentinel knows the master.
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		addr, err := c.GetMasterAddrByName(context.Background(), name).Result()
		if err == nil && len(addr) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not know master %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &Sentinel{Master: master, Replica: replica, Sentinel: sentinel, MasterName: name}
}

// FerretDBBinary finds the FerretDB build: $FERRETDB_BIN, then
// .cache/bin/ferretdb at the module root (where ./scripts/test builds it),
// then $PATH.
func FerretDBBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FERRETDB_BIN"); p != "" {
		return p
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".cache", "bin", "ferretdb")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return need(t, "ferretdb", "./scripts/build-ferretdb (builds FerretDB v1.24.2 into .cache/bin)")
}

func moduleRoot() (string, error) {
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

// Mongo starts FerretDB (MongoDB wire protocol, SQLite handler) and returns
// it; its URL is mongodb://ADDR/. Keep collections small: FerretDB slows as
// they grow.
func Mongo(t testing.TB) *Proc {
	t.Helper()
	bin := FerretDBBinary(t)
	port := FreePort(t)
	return newProc(t, "ferretdb", bin, port, func(dir string) []string {
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		return []string{"--listen-addr", fmt.Sprintf("127.0.0.1:%d", port), "--sqlite-url", "file:" + data + "/"}
	})
}

// MongoURL returns MONGODB_SESSION_URL from the environment when set (a real
// MongoDB, e.g. from docker compose), else starts FerretDB. db names the
// database.
func MongoURL(t testing.TB, db string) (string, *Proc) {
	t.Helper()
	if u := os.Getenv("MONGODB_SESSION_URL"); u != "" {
		return u, nil
	}
	p := Mongo(t)
	return "mongodb://" + p.Addr + "/" + db, p
}

// RedisURL returns REDIS_URL from the environment when set, else starts a
// redis-server.
func RedisURL(t testing.TB) (string, *Proc) {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u, nil
	}
	p := Redis(t)
	return "redis://" + p.Addr + "/0", p
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
