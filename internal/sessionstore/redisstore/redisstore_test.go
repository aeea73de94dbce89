package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/example/oauth-sessions/internal/sessionstore"
	"github.com/example/oauth-sessions/internal/sessionstore/redisstore"
	"github.com/example/oauth-sessions/internal/sessionstore/storetest"
	"github.com/example/oauth-sessions/internal/testservers"
)

// harness runs the suite over clients from newClient; every test gets its
// own key prefix on the same server(s).
func harness(newClient func() redis.UniversalClient, restart func(t testing.TB)) storetest.Harness {
	var n atomic.Int64
	h := storetest.Harness{
		New: func(t *testing.T) sessionstore.Backend {
			s, err := redisstore.New(redisstore.Options{Client: newClient(), KeyPrefix: fmt.Sprintf("test%d:", n.Add(1))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	if restart != nil {
		h.Restart = func(t *testing.T, s sessionstore.Backend) sessionstore.Backend {
			restart(t)
			return s // the same client must reconnect by itself
		}
	}
	return h
}

func TestConformanceSingle(t *testing.T) {
	t.Parallel() // separate servers
	srv := testservers.Redis(t)
	storetest.Run(t, harness(func() redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}})
	}, srv.Restart))
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel() // separate servers
	s := testservers.RedisSentinel(t)
	storetest.Run(t, harness(func() redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{s.Sentinel.Addr}, MasterName: s.MasterName})
	}, s.Master.Restart))
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel() // separate servers
	nodes := testservers.RedisCluster(t)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr)
	}
	storetest.Run(t, harness(func() redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, IsClusterMode: true})
	}, func(t testing.TB) {
		for _, n := range nodes {
			n.Restart(t)
		}
	}))
}

func BenchmarkStore(b *testing.B) {
	srv := testservers.Redis(b)
	s, err := redisstore.New(redisstore.Options{Client: redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr}}), KeyPrefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Bench(b, s)
}

// TestSentinelFailover: the master dies for good; Sentinel promotes the
// replica and the same client carries on, with the sessions it had.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	d := testservers.RedisSentinel(t)
	s, err := redisstore.New(redisstore.Options{
		Client:    redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{d.Sentinel.Addr}, MasterName: d.MasterName}),
		KeyPrefix: "failover:",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.Save(ctx, sessionstore.Entry{Key: "before", Data: []byte("kept"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Let the replica catch up before the master goes.
	replica := redis.NewClient(&redis.Options{Addr: d.Replica.Addr})
	defer replica.Close()
	waitUntil(t, 10*time.Second, func() bool { n, _ := replica.Exists(ctx, "failover:before").Result(); return n == 1 })

	d.Master.Stop(t)
	start := time.Now()
	waitUntil(t, 30*time.Second, func() bool {
		e, found, err := s.Find(ctx, "before")
		return err == nil && found && string(e.Data) == "kept"
	})
	waitUntil(t, 30*time.Second, func() bool {
		return s.Save(ctx, sessionstore.Entry{Key: "after", Data: []byte("new"), ExpiresAt: time.Now().Add(time.Hour)}) == nil
	})
	t.Logf("serving reads and writes again %v after the master died", time.Since(start).Round(100*time.Millisecond))
	if e, found, err := s.Find(ctx, "after"); err != nil || !found || string(e.Data) != "new" {
		t.Fatalf("after failover: %v %v %q", err, found, e.Data)
	}
}

func waitUntil(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
