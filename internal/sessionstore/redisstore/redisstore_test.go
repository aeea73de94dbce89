package redisstore_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/redisstore"
	"example.com/oauth-sessions/internal/sessionstore/redisstore/redistest"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testservers"
)

// harness runs the suite over clients made with opts, tracking
// invalidations as the app does (a cluster's on every master); every test
// gets its own key prefix on the same server(s).
func harness(opts *redis.UniversalOptions, restart func(t testing.TB)) storetest.Harness {
	var n atomic.Int64
	caps := []storetest.Capability{storetest.Restart, storetest.OtherHandle, storetest.ServerExpiry, storetest.RateCount, storetest.ChangeFeed}
	return storetest.Harness{
		New: func(t *testing.T, now func() time.Time) sessionstore.Backend {
			return openWith(t, opts, fmt.Sprintf("test%d:", n.Add(1)), now)
		},
		Capabilities: caps,
		// Another app instance: its own clients, the same prefix.
		Other: func(t *testing.T, s sessionstore.Backend) sessionstore.Store {
			prefix := ""
			if st, ok := s.(interface{ KeyPrefix() string }); ok {
				prefix = st.KeyPrefix()
			}
			return openWith(t, opts, prefix, time.Now)
		},
		Restart: func(t *testing.T, s sessionstore.Backend) sessionstore.Backend {
			restart(t)
			return s // the same client must reconnect by itself
		},
	}
}

// openWith returns a store over a client made with opts, tracking
// invalidations as the app does, closed when the test ends.
func openWith(t testing.TB, opts *redis.UniversalOptions, prefix string, now func() time.Time) sessionstore.Backend {
	t.Helper()
	s, err := redisstore.NewTracked(redisstore.Options{Client: redis.NewUniversalClient(opts), KeyPrefix: prefix, Now: now, Tracking: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// open returns a tracking store.
func open(t testing.TB, opts *redis.UniversalOptions, prefix string) *redisstore.Tracked {
	t.Helper()
	return openWith(t, opts, prefix, time.Now).(*redisstore.Tracked)
}

func TestConformanceSingle(t *testing.T) {
	t.Parallel() // separate servers
	srv := redistest.Redis(t)
	storetest.Run(t, harness(&redis.UniversalOptions{Addrs: []string{srv.Addr}}, srv.Restart))
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel() // separate servers
	s := redistest.RedisSentinel(t)
	storetest.Run(t, harness(&redis.UniversalOptions{Addrs: []string{s.Sentinel.Addr}, MasterName: s.MasterName}, func(t testing.TB) {
		// Replication is asynchronous: a restart may fail over to the
		// replica, which must have what was written before (as an
		// operator makes sure before restarting a master).
		master := redis.NewClient(&redis.Options{Addr: s.Master.Addr})
		defer master.Close()
		if n, err := master.Do(t.Context(), "WAIT", 1, 5000).Int(); err != nil || n < 1 {
			t.Fatalf("replica not in sync before the restart: %d, %v", n, err)
		}
		s.Master.Restart(t)
	}))
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel() // separate servers
	nodes := redistest.RedisCluster(t)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr)
	}
	storetest.Run(t, harness(&redis.UniversalOptions{Addrs: addrs, IsClusterMode: true}, func(t testing.TB) {
		for _, n := range nodes {
			n.Restart(t)
		}
	}))
}

func BenchmarkStore(b *testing.B) {
	srv := redistest.Redis(b)
	opts := &redis.UniversalOptions{Addrs: []string{srv.Addr}}
	s := open(b, opts, "bench:")
	storetest.Bench(b, s)
}

// TestSentinelFailover: the master dies for good; Sentinel promotes the
// replica and the same client carries on, with the sessions it had.
// It also follows the new master's invalidations.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	d := redistest.RedisSentinel(t)
	opts := &redis.UniversalOptions{Addrs: []string{d.Sentinel.Addr}, MasterName: d.MasterName}
	s := open(t, opts, "failover:")
	rec := &storetest.Recorder{}
	s.Follow(rec)
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
	// Another instance writes on the new master: reported.
	waitUntil(t, 30*time.Second, func() bool { return s.Synced(ctx) })
	other := redis.NewClient(&redis.Options{Addr: d.Replica.Addr}) // promoted
	defer other.Close()
	rec.Reset()
	if err := other.Del(ctx, "failover:after").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, func() bool { return rec.Saw("after") })
}

// TestTrackingRecovers: while Redis is away the store is not synced and
// reports everything as changed; once back it follows again, and a FLUSHALL
// (an invalidation without keys) flushes everything.
func TestTrackingRecovers(t *testing.T) {
	t.Parallel()
	srv := redistest.Redis(t)
	opts := &redis.UniversalOptions{Addrs: []string{srv.Addr}}
	s := open(t, opts, "rec:")
	rec := &storetest.Recorder{}
	s.Follow(rec)
	ctx := t.Context()
	waitUntil(t, 10*time.Second, func() bool { return s.Synced(ctx) })

	srv.Stop(t)
	waitUntil(t, 5*time.Second, func() bool { return !s.Synced(ctx) })
	if !rec.Everything() {
		t.Fatal("losing the connection did not report everything as changed")
	}
	srv.Start(t)
	waitUntil(t, 10*time.Second, func() bool { return s.Synced(ctx) })

	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer other.Close()
	rec.Reset()
	if err := other.Set(ctx, "rec:k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, func() bool { return rec.Saw("k") })
	rec.Reset()
	if err := other.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, rec.Everything)
	if !s.Synced(ctx) {
		t.Fatal("a FLUSHALL left the store out of sync")
	}
	// Keys outside the prefix are not the store's.
	rec.Reset()
	if err := other.Set(ctx, "elsewhere:k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := other.Set(ctx, "rec:k2", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, func() bool { return rec.Saw("k2") })
	if rec.Saw("elsewhere:k") || rec.Saw("k") {
		t.Fatal("reported a key outside the store's prefix")
	}
}

func waitUntil(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	testservers.WaitUntil(t, d, ok, "the condition")
}

// logBuffer is a log destination tests read while the code writes to it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.b.Bytes(), []byte(s))
}

// TestTrackingWithLeastPrivilege: the ACL the README documents for the
// invalidation connection is enough; without it the store reads Redis on
// every request (never synced) and keeps working.
func TestTrackingWithLeastPrivilege(t *testing.T) {
	t.Parallel()
	srv := redistest.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	ctx := t.Context()
	data := []any{"~acl:*", "+@read", "+@write", "+@scripting", "+auth", "+hello"}
	for user, extra := range map[string][]any{
		"tracker": {"resetchannels", "&__redis__:invalidate", "+client|id", "+client|tracking", "+role", "+subscribe", "+ping"},
		"plain":   {"resetchannels", "-client", "-subscribe"},
	} {
		args := append([]any{"ACL", "SETUSER", user, "reset", "on", ">pw"}, append(data, extra...)...)
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user string, logs *logBuffer) *redisstore.Tracked {
		opts := &redis.UniversalOptions{Addrs: []string{srv.Addr}, Username: user, Password: "pw"}
		s, err := redisstore.NewTracked(redisstore.Options{Client: redis.NewUniversalClient(opts), KeyPrefix: "acl:", Tracking: opts,
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	tracker := as("tracker", &logBuffer{})
	waitUntil(t, 10*time.Second, func() bool { return tracker.Synced(ctx) })

	logs := &logBuffer{}
	plain := as("plain", logs)
	// Its attempt to follow fails (and says so); it never syncs.
	waitUntil(t, 10*time.Second, func() bool { return logs.contains("Redis invalidation stream interrupted") })
	if plain.Synced(ctx) {
		t.Fatal("synced without the permission to track")
	}
	if err := plain.Save(ctx, sessionstore.Entry{Key: "k", Data: []byte("v"), ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, found, err := plain.Find(ctx, "k"); err != nil || !found {
		t.Fatalf("store without tracking: find = %v, %v", found, err)
	}
}

// TestTrackingMovesWithTheMaster: a manual failover leaves the old master
// running (as a replica). The invalidation stream must move to the new
// master, or writes there would never reach the cache.
func TestTrackingMovesWithTheMaster(t *testing.T) {
	t.Parallel()
	d := redistest.RedisSentinel(t)
	opts := &redis.UniversalOptions{Addrs: []string{d.Sentinel.Addr}, MasterName: d.MasterName}
	s := open(t, opts, "move:")
	rec := &storetest.Recorder{}
	s.Follow(rec)
	ctx := t.Context()
	waitUntil(t, 10*time.Second, func() bool { return s.Synced(ctx) })

	sentinel := redis.NewSentinelClient(&redis.Options{Addr: d.Sentinel.Addr})
	defer sentinel.Close()
	// The replica must be in sync before Sentinel agrees to fail over.
	waitUntil(t, 20*time.Second, func() bool { return sentinel.Failover(ctx, d.MasterName).Err() == nil })
	waitUntil(t, 20*time.Second, func() bool {
		addr, err := sentinel.GetMasterAddrByName(ctx, d.MasterName).Result()
		return err == nil && len(addr) == 2 && addr[0]+":"+addr[1] == d.Replica.Addr
	})
	newMaster := redis.NewClient(&redis.Options{Addr: d.Replica.Addr})
	defer newMaster.Close()
	waitUntil(t, 20*time.Second, func() bool {
		role, err := newMaster.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	// Write on the new master until the store reports it (the tracker may
	// still be moving); it must within a few seconds.
	testservers.WaitUntil(t, 10*time.Second, func() bool {
		if s.Synced(ctx) {
			if err := newMaster.Set(ctx, "move:k", "v", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Saw("k")
	}, "writes on the new master reaching the store's followers")
}

// TestTrackingDistrustsASilentConnection: a server that stops answering
// (here: CLIENT PAUSE) is not trusted past the liveness bound, and is
// trusted again once it answers.
func TestTrackingDistrustsASilentConnection(t *testing.T) {
	t.Parallel()
	srv := redistest.Redis(t)
	opts := &redis.UniversalOptions{Addrs: []string{srv.Addr}}
	s := open(t, opts, "quiet:")
	ctx := t.Context()
	waitUntil(t, 10*time.Second, func() bool { return s.Synced(ctx) })
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	waitUntil(t, 2*time.Second, func() bool { return !s.Synced(ctx) })
	t.Logf("not trusted %s after the server went silent", time.Since(paused).Round(time.Millisecond))
	if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return s.Synced(ctx) })
}
