package redisstore_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/redisstore"
	"example.com/oauth-sessions/internal/sessionstore/redisstore/redistest"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testservers"
)

// Redis Cluster: the session cache follows every master (one invalidation
// connection each), through failovers and slot migrations.

func clusterOpts(nodes ...[]*testservers.Proc) *redis.UniversalOptions {
	opts := &redis.UniversalOptions{IsClusterMode: true}
	for _, list := range nodes {
		for _, n := range list {
			opts.Addrs = append(opts.Addrs, n.Addr)
		}
	}
	return opts
}

// followCluster is where each cluster test starts: the store under test,
// following its change feed and in sync; another instance's store on the
// same keys; and a plain cluster client, for what redis-cli would do.
func followCluster(t *testing.T, opts *redis.UniversalOptions, prefix string) (*redisstore.Tracked, *storetest.Recorder, sessionstore.Backend, *redis.ClusterClient) {
	t.Helper()
	s := open(t, opts, prefix)
	rec := &storetest.Recorder{}
	s.Follow(rec)
	waitUntil(t, 10*time.Second, func() bool { return s.Synced(t.Context()) })
	other := openWith(t, opts, prefix, time.Now)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: opts.Addrs})
	t.Cleanup(func() { cc.Close() })
	return s, rec, other, cc
}

// keyOn returns a key under prefix whose slot the master at addr serves,
// and the slot.
func keyOn(t *testing.T, c *redis.ClusterClient, addr, prefix, base string) (string, int) {
	t.Helper()
	ctx := t.Context()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int]string{}
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role != "master" {
				continue
			}
			for _, r := range sh.Slots {
				for s := r.Start; s <= r.End; s++ {
					owner[int(s)] = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
				}
			}
		}
	}
	for i := range 10000 {
		key := fmt.Sprintf("%s%d", base, i)
		slot, err := c.ClusterKeySlot(ctx, prefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if owner[int(slot)] == addr {
			return key, int(slot)
		}
	}
	t.Fatalf("no key found for master %s", addr)
	return "", 0
}

// TestClusterFollowsEveryMaster: writes through another instance to keys
// on each of the three masters are reported, and a redis-cli-style delete
// (a plain client on the node) too.
func TestClusterFollowsEveryMaster(t *testing.T) {
	t.Parallel() // separate servers
	masters := redistest.RedisCluster(t)
	opts := clusterOpts(masters)
	s, rec, other, cc := followCluster(t, opts, "every:")
	ctx := t.Context()
	for i, m := range masters {
		key, _ := keyOn(t, cc, m.Addr, "every:", fmt.Sprintf("k%d-", i))
		rec.Reset()
		if err := other.Save(ctx, sessionstore.Entry{Key: key, Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 2*time.Second, func() bool { return rec.Saw(key) })
		// Straight on the node, as redis-cli -c would end up doing.
		node := redis.NewClient(&redis.Options{Addr: m.Addr})
		rec.Reset()
		if n, err := node.Del(ctx, "every:"+key).Result(); err != nil || n != 1 {
			t.Fatalf("DEL on %s: %d %v", m.Addr, n, err)
		}
		node.Close()
		waitUntil(t, 2*time.Second, func() bool { return rec.Saw(key) })
		if !s.Synced(ctx) {
			t.Fatal("not synced after plain writes")
		}
	}
}

// TestClusterFailover: a master dies and its replica takes over. While the
// shard has no followed master the cache is not trusted; a sign-out made
// meanwhile is never served stale; afterwards the feed is trusted again
// and follows the new master.
func TestClusterFailover(t *testing.T) {
	t.Parallel() // separate servers
	masters, replicas := redistest.RedisClusterWithReplicas(t)
	opts := clusterOpts(masters, replicas)
	s, rec, other, cc := followCluster(t, opts, "fo:")
	ctx := t.Context()

	victim := masters[0]
	key, _ := keyOn(t, cc, victim.Addr, "fo:", "signed-in-")
	if err := other.Save(ctx, sessionstore.Entry{Key: key, Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	vc := redis.NewClient(&redis.Options{Addr: victim.Addr})
	if n, err := vc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n < 1 {
		t.Fatalf("replica not in sync before the master dies: %d %v", n, err)
	}
	vc.Close()

	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range replicas {
				matches, _ := filepath.Glob(filepath.Join(r.Dir, "*.log"))
				for _, m := range matches {
					b, _ := os.ReadFile(m)
					t.Logf("%s:\n%s", r.Addr, b[max(0, len(b)-1500):])
				}
			}
		}
	})
	victim.Stop(t)
	died := time.Now()
	waitUntil(t, 2*time.Second, func() bool { return !s.Synced(ctx) })
	t.Logf("cache untrusted %s after the master died", time.Since(died).Round(time.Millisecond))

	// The sign-out: it succeeds once the replica has taken over.
	var signedOut time.Time
	waitUntil(t, 30*time.Second, func() bool {
		rec.Reset()
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := other.Delete(c, key); err != nil {
			t.Logf("delete: %v", err)
			return false
		}
		signedOut = time.Now()
		return true
	})
	t.Logf("sign-out accepted %s after the master died", signedOut.Sub(died).Round(time.Millisecond))
	// Once the feed is trusted again, it has dropped the session signed
	// out during the failover. Trusted again after the sign-out, it emptied
	// the cache on the way; trusted already (the tracker finds the new
	// master from CLUSTER SHARDS before go-redis's data client does), the
	// new master pushes the sign-out's invalidation after its reply, as for
	// any write: it gets the second the app tests allow for that. A feed
	// that missed the write never reports it.
	waitUntil(t, 30*time.Second, func() bool { return s.Synced(ctx) })
	deadline := time.Now().Add(time.Second)
	for !rec.SawOrAll(key) {
		if time.Now().After(deadline) {
			t.Fatal("the feed was trusted again without having dropped the session signed out during the failover")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("cache trusted again %s after the master died", time.Since(died).Round(time.Millisecond))

	// The new master's writes are followed.
	after, _ := keyOn(t, cc, promoted(t, cc, key, "fo:"), "fo:", "after-")
	rec.Reset()
	if err := other.Save(ctx, sessionstore.Entry{Key: after, Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, func() bool { return rec.Saw(after) })
}

// promoted returns the address of the master that now serves key.
func promoted(t *testing.T, cc *redis.ClusterClient, key, prefix string) string {
	t.Helper()
	slot, err := cc.ClusterKeySlot(t.Context(), prefix+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	waitUntil(t, 10*time.Second, func() bool {
		shards, err := cc.ClusterShards(t.Context()).Result()
		if err != nil {
			return false
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if slot < r.Start || slot > r.End {
					continue
				}
				for _, n := range sh.Nodes {
					if n.Role == "master" && n.Health == "online" {
						addr = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
						return true
					}
				}
			}
		}
		return false
	})
	return addr
}

// TestClusterSlotMigration: a slot moves from one master to another
// (CLUSTER SETSLOT … IMPORTING/MIGRATING, MIGRATE, SETSLOT … NODE) under
// the store; writes to its keys during and after the move are reported.
func TestClusterSlotMigration(t *testing.T) {
	t.Parallel() // separate servers
	masters := redistest.RedisCluster(t)
	opts := clusterOpts(masters)
	s, rec, other, cc := followCluster(t, opts, "mig:")
	ctx := t.Context()

	from, to := masters[0], masters[1]
	key, slot := keyOn(t, cc, from.Addr, "mig:", "moving-")
	if err := other.Save(ctx, sessionstore.Entry{Key: key, Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	src, dst := redis.NewClient(&redis.Options{Addr: from.Addr}), redis.NewClient(&redis.Options{Addr: to.Addr})
	defer src.Close()
	defer dst.Close()
	srcID, _ := src.Do(ctx, "CLUSTER", "MYID").Text()
	dstID, _ := dst.Do(ctx, "CLUSTER", "MYID").Text()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err())

	// Mid-move: the key is still on the source; a new key of the slot is
	// created on the target (ASK).
	rec.Reset()
	var fresh string
	for i := 0; ; i++ {
		fresh = fmt.Sprintf("fresh-%d", i)
		if sl, _ := cc.ClusterKeySlot(ctx, "mig:"+fresh).Result(); int(sl) == slot {
			break
		}
	}
	must(other.Save(ctx, sessionstore.Entry{Key: fresh, Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}))
	waitUntil(t, 2*time.Second, func() bool { return rec.Saw(fresh) })

	host, port, _ := net.SplitHostPort(to.Addr)
	rec.Reset()
	must(src.Do(ctx, "MIGRATE", host, port, "", 0, 5000, "KEYS", "mig:"+key).Err())
	waitUntil(t, 2*time.Second, func() bool { return rec.Saw(key) }) // it left the source
	for _, m := range masters {
		c := redis.NewClient(&redis.Options{Addr: m.Addr})
		must(c.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err())
		c.Close()
	}

	// After the move, writes land on the target and are followed.
	for _, w := range []func() error{
		func() error {
			return other.Save(ctx, sessionstore.Entry{Key: key, Data: []byte("w"), ExpiresAt: time.Now().Add(time.Hour)})
		},
		func() error { return other.Delete(ctx, key) },
	} {
		rec.Reset()
		must(w())
		waitUntil(t, 2*time.Second, func() bool { return rec.Saw(key) })
	}
	waitUntil(t, 2*time.Second, func() bool { return s.Synced(ctx) })
	if n, _ := dst.Exists(ctx, "mig:"+fresh).Result(); n != 1 {
		t.Fatal("the key made mid-move is not on the target: the test did not exercise ASK")
	}
}
