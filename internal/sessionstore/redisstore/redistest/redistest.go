// Package redistest starts real Redis servers for tests: a single server,
// a Sentinel deployment, a Cluster. It lives beside the Redis store so that
// deleting the store's folder deletes it too.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testservers"
)

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
func Redis(t testing.TB) *testservers.Proc {
	t.Helper()
	bin := testservers.Need(t, "redis-server", redisInstall)
	port := testservers.FreePort(t)
	return testservers.StartIn(t, "redis", bin, port, redisArgs(port))
}

// RedisCluster starts a three-master Redis Cluster and returns its nodes.
func RedisCluster(t testing.TB) []*testservers.Proc {
	t.Helper()
	masters, _ := cluster(t, 0)
	return masters
}

// RedisClusterWithReplicas starts a Redis Cluster of three masters with a
// replica each, so a master can fail over, and returns both kinds.
func RedisClusterWithReplicas(t testing.TB) (masters, replicas []*testservers.Proc) {
	t.Helper()
	return cluster(t, 1)
}

func cluster(t testing.TB, replicasEach int) (masters, replicas []*testservers.Proc) {
	t.Helper()
	bin := testservers.Need(t, "redis-server", redisInstall)
	cli := testservers.Need(t, "redis-cli", redisInstall)
	var nodes []*testservers.Proc
	var addrs []string
	for i := range 3 * (1 + replicasEach) {
		port := testservers.FreePort(t)
		p := testservers.StartIn(t, fmt.Sprintf("redis-cluster-%d", i), bin, port,
			redisArgs(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
		nodes = append(nodes, p)
		addrs = append(addrs, p.Addr)
	}
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", fmt.Sprint(replicasEach), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	testservers.WaitUntil(t, 20*time.Second, func() bool {
		for _, n := range nodes {
			c := redis.NewClient(&redis.Options{Addr: n.Addr})
			info, _ := c.ClusterInfo(ctx).Result()
			c.Close()
			if !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	}, "every node of the cluster reaching cluster_state:ok")
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		role, err := c.Do(ctx, "ROLE").Slice()
		c.Close()
		if err != nil || len(role) == 0 {
			t.Fatalf("ROLE of %s: %v", n.Addr, err)
		}
		if role[0] == "master" {
			masters = append(masters, n)
		} else {
			replicas = append(replicas, n)
		}
	}
	if len(masters) != 3 || len(replicas) != 3*replicasEach {
		t.Fatalf("cluster of %d masters and %d replicas, want 3 and %d", len(masters), len(replicas), 3*replicasEach)
	}
	return masters, replicas
}

// Sentinel is a master, a replica and one sentinel watching them.
type Sentinel struct {
	Master, Replica, Sentinel *testservers.Proc
	MasterName                string
}

// RedisSentinel starts a Sentinel deployment.
func RedisSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := testservers.Need(t, "redis-server", redisInstall)
	sbin := testservers.Need(t, "redis-sentinel", redisInstall)
	mport := testservers.FreePort(t)
	master := testservers.StartIn(t, "redis-master", bin, mport, redisArgs(mport))
	rport := testservers.FreePort(t)
	replica := testservers.StartIn(t, "redis-replica", bin, rport, redisArgs(rport, "--replicaof", "127.0.0.1", fmt.Sprint(mport)))
	sport := testservers.FreePort(t)
	const name = "sessions-master"
	sentinel := testservers.StartIn(t, "redis-sentinel", sbin, sport, func(dir string) []string {
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n",
			sport, dir, name, mport, name, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf}
	})
	// Wait until the sentinel knows the master and its replica, in sync. A
	// sentinel learns of replicas from the master's INFO, which it asks for
	// every 10 s: a master that dies before then leaves it nothing to
	// promote, and it retries only after twice the failover timeout.
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer c.Close()
	testservers.WaitUntil(t, 30*time.Second, func() bool {
		addr, err := c.GetMasterAddrByName(context.Background(), name).Result()
		if err != nil || len(addr) != 2 {
			return false
		}
		replicas, err := c.Replicas(context.Background(), name).Result()
		for _, r := range replicas {
			if r["port"] == fmt.Sprint(rport) && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return err == nil
			}
		}
		return false
	}, "the sentinel knowing master %s and its replica", name)
	return &Sentinel{Master: master, Replica: replica, Sentinel: sentinel, MasterName: name}
}

// URL returns TEST_REDIS_URL when set (a Redis of your own, e.g. from
// docker compose), else starts a redis-server for the test. The app's own
// REDIS_URL is never read: a shell set up for the app does not point the
// tests at its Redis.
func URL(t testing.TB) (string, *testservers.Proc) {
	t.Helper()
	testservers.NotInFastLane(t, "Redis")
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u, nil
	}
	p := Redis(t)
	return "redis://" + p.Addr + "/0", p
}

// Server runs the Redis store for the program's tests: the variables of a
// store on its own key prefix.
func Server() storetest.Server {
	var n atomic.Int64
	env := func(url string) map[string]string {
		return map[string]string{"SESSION_STORE": "redis", "REDIS_URL": url, "REDIS_KEY_PREFIX": fmt.Sprintf("t%d-%d:", os.Getpid(), n.Add(1))}
	}
	return storetest.Server{
		Name: "redis",
		Env:  func(t testing.TB) map[string]string { u, _ := URL(t); return env(u) },
		Variants: []storetest.Variant{{Name: "redis-cluster", Env: func(t testing.TB) map[string]string {
			var addrs []string
			for _, n := range RedisCluster(t) {
				addrs = append(addrs, n.Addr)
			}
			return map[string]string{"SESSION_STORE": "redis", "REDIS_CLUSTER_ADDRS": strings.Join(addrs, ","),
				"REDIS_KEY_PREFIX": fmt.Sprintf("t%d-%d:", os.Getpid(), n.Add(1))}
		}}},
		Remove: func(t testing.TB, e map[string]string, key string) {
			addr := strings.Split(e["REDIS_CLUSTER_ADDRS"], ",")[0]
			if addr == "" {
				opts, err := redis.ParseURL(e["REDIS_URL"])
				if err != nil {
					t.Fatal(err)
				}
				addr = opts.Addr
			}
			host, port, _ := net.SplitHostPort(addr)
			cli := testservers.Need(t, "redis-cli", redisInstall)
			out, err := exec.Command(cli, "-c", "-h", host, "-p", port, "DEL", e["REDIS_KEY_PREFIX"]+key).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "1" {
				t.Fatalf("redis-cli -c DEL: %v %s", err, out)
			}
		},
		Own: func(t testing.TB) (map[string]string, *testservers.Proc) {
			p := Redis(t)
			return env("redis://" + p.Addr + "/0"), p
		},
		Fill: func(t testing.TB, e map[string]string) func() {
			opts, err := redis.ParseURL(e["REDIS_URL"])
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(opts)
			ctx := context.Background()
			used, err := c.Info(ctx, "memory").Result()
			if err != nil {
				t.Fatal(err)
			}
			var bytes int64
			for _, line := range strings.Split(used, "\r\n") {
				if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
					fmt.Sscan(v, &bytes)
				}
			}
			// As the compose file runs it: a ceiling, and no eviction.
			for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", fmt.Sprint(bytes + 4<<20)}} {
				if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// Redis counts a command's own arguments: after a large value is
			// refused, small ones still fit. Fill with smaller and smaller
			// values until even a tiny one is refused.
			n := 0
			for _, size := range []int{64 << 10, 4 << 10, 256, 16} {
				junk := strings.Repeat("x", size)
				for ; ; n++ {
					err := c.Set(ctx, fmt.Sprintf("filler:%d", n), junk, 0).Err()
					if err != nil && strings.HasPrefix(err.Error(), "OOM ") {
						break
					}
					if err != nil || n > 1_000_000 {
						t.Fatalf("filling Redis: %v after %d keys", err, n)
					}
				}
			}
			return func() {
				defer c.Close()
				iter := c.Scan(ctx, 0, "filler:*", 1000).Iterator()
				for iter.Next(ctx) {
					c.Del(ctx, iter.Val())
				}
				c.ConfigSet(ctx, "maxmemory", "0")
			}
		},
		Dump: func(t testing.TB, e map[string]string) []byte {
			opts, err := redis.ParseURL(e["REDIS_URL"])
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(opts)
			defer c.Close()
			ctx := context.Background()
			var out []byte
			iter := c.Scan(ctx, 0, e["REDIS_KEY_PREFIX"]+"*", 500).Iterator()
			for iter.Next(ctx) {
				dump, err := c.Dump(ctx, iter.Val()).Result()
				if err != nil {
					t.Fatal(err)
				}
				out = append(append(append(out, iter.Val()...), ' '), dump...)
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}
