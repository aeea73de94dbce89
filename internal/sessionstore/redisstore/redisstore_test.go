package redisstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

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
