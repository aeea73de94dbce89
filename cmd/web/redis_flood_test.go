package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"example.com/oauth-sessions/internal/testbackends"
)

// TestRateCountersStaySmallInRedis: a sign-in flood from 60,000 addresses
// against a Redis of 3 MB (maxmemory, noeviction) leaves few per-address
// counters there: the in-process checks and ceilings come first, so the
// shared counter is written at most at the ceilings' rate, and each lives
// only until its address's budget is whole again (seconds, for one start).
func TestRateCountersStaySmallInRedis(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	ownServer(t, env, testbackends.Named(t, "redis"))
	env["TRUST_PROXY"] = "true"
	delete(env, "LOGIN_RATE_LIMIT")
	delete(env, "LOGIN_RATE_BURST")
	delete(env, "LOGIN_START_MAX_PER_SECOND")
	opts, err := redis.ParseURL(env["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "3mb"}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a := startApp(t, env)

	stop := make(chan struct{})
	var attempts atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := w*7919 + i*8
				if _, err := startFrom(a.URL, fmt.Sprintf("10.%d.%d.%d", n/62500%4, n/250%250, n%250+1)); err == nil {
					attempts.Add(1)
				}
			}
		})
	}
	time.Sleep(5 * time.Second) // the flood's length, not a wait for something
	close(stop)
	wg.Wait()

	prefix := env["REDIS_KEY_PREFIX"] + "rl:login:"
	keys, bytes := 0, int64(0)
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
		if n, err := rdb.MemoryUsage(ctx, iter.Val()).Result(); err == nil {
			bytes += n
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	info, _ := rdb.Info(ctx, "memory").Result()
	used := ""
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory_human:"); ok {
			used = v
		}
	}
	t.Logf("%d starts tried from 60,000 addresses in 5 s; Redis holds %d rate counters, %d KB (Redis in all: %s of 3 MB)", attempts.Load(), keys, bytes>>10, used)
	// The bound SECURITY.md gives: 10% of a 3 MB Redis.
	if bytes > 300<<10 {
		t.Fatalf("rate counters take %d KB of a 3 MB Redis, want under 300 KB", bytes>>10)
	}
	if attempts.Load() < 10_000 {
		t.Fatalf("only %d starts tried: the flood did not flood", attempts.Load())
	}
}
