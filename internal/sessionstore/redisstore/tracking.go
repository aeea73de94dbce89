package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"example.com/oauth-sessions/internal/sessionstore"
)

// invalidateChannel is where Redis publishes key invalidations to a
// connection that redirects tracking to itself over RESP2.
const invalidateChannel = "__redis__:invalidate"

// The tracker's liveness: the connection is pinged after pingAfter of
// silence, declared dead when a ping goes unanswered as long again, and
// trusted only while something (a message or a pong) arrived within
// trustFor. A connection that dies without a reset (a cable, a firewall)
// therefore stops being trusted within trustFor, not at the next TCP
// timeout. With Sentinel the current master is checked every masterCheck.
const (
	pingAfter     = 100 * time.Millisecond
	trustFor      = 300 * time.Millisecond
	subscribeWait = 5 * time.Second
	masterCheck   = time.Second
)

// tracker keeps one connection that receives Redis's invalidation messages
// for every key under the store's prefix (server-assisted client-side
// caching, CLIENT TRACKING in broadcast mode), and reports them to the
// store's followers. Broadcast mode covers writes by anyone — other app
// instances, the CLI, redis-cli — and the server's own expiry and eviction.
//
// Between connecting and the subscription being confirmed, and whenever the
// connection fails, goes silent or turns out not to be on the master,
// invalidations may be lost: the tracker then reports everything as
// changed and says it is not synced until a new subscription is confirmed.
type tracker struct {
	rdb       redis.UniversalClient
	node      string // for logs: the address, or the Sentinel master's name
	quiet     bool   // one of a cluster's: the cluster tracker says when the cache is on
	prefix    string
	followers *sessionstore.Followers
	logger    *slog.Logger
	cancel    context.CancelFunc
	done      chan struct{}

	synced    atomic.Bool
	epoch     time.Time    // monotonic base for lastHeard
	lastHeard atomic.Int64 // ns since epoch when the connection last spoke

	// With Sentinel: who to ask for the current master, and the master
	// the current subscription is on.
	sentinels []*redis.SentinelClient
	master    string
	followed  atomic.Pointer[string]
	current   atomic.Pointer[redis.PubSub]
}

func startTracker(opts *redis.UniversalOptions, prefix string, followers *sessionstore.Followers, logger *slog.Logger, quiet bool) *tracker {
	ctx, cancel := context.WithCancel(context.Background())
	t := &tracker{prefix: prefix, followers: followers, logger: logger, cancel: cancel, quiet: quiet,
		done: make(chan struct{}), epoch: time.Now(), master: opts.MasterName, node: strings.Join(opts.Addrs, ",")}
	if opts.MasterName != "" {
		t.node = opts.MasterName
	}
	o := *opts
	// RESP2: the invalidations then arrive as ordinary Pub/Sub messages on
	// the subscribed connection itself (REDIRECT to its own ID).
	o.Protocol = 2
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		role, err := cn.Do(ctx, "ROLE").Slice()
		if err != nil {
			return fmt.Errorf("role: %w", err)
		}
		switch {
		case len(role) > 0 && role[0] == "sentinel":
			return nil // go-redis runs this hook on its Sentinel connections too
		case len(role) == 0 || role[0] != "master":
			// A demoted master no longer sees the writes; Sentinel's
			// dialer finds the new one on the next attempt.
			return fmt.Errorf("redis tracking: %v is not a master", role)
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return fmt.Errorf("client id: %w", err)
		}
		args := []any{"CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST"}
		if prefix != "" {
			args = append(args, "PREFIX", prefix)
		}
		if err := cn.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("client tracking: %w", err)
		}
		return nil
	}
	if t.master != "" {
		// go-redis moves its command connections after a failover, not its
		// Pub/Sub ones: the tracker checks for itself (see watchMaster).
		for _, addr := range opts.Addrs {
			t.sentinels = append(t.sentinels, redis.NewSentinelClient(&redis.Options{
				Addr: addr, Username: opts.SentinelUsername, Password: opts.SentinelPassword,
				TLSConfig: opts.TLSConfig, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
			}))
		}
		go t.watchMaster(ctx)
	}
	t.rdb = redis.NewUniversalClient(&o)
	go t.run(ctx)
	return t
}

// Synced reports whether the tracker is subscribed and heard from its
// connection within trustFor.
func (t *tracker) Synced() bool {
	return t.synced.Load() && time.Since(t.epoch)-time.Duration(t.lastHeard.Load()) <= trustFor
}

func (t *tracker) heard() { t.lastHeard.Store(int64(time.Since(t.epoch))) }

func (t *tracker) run(ctx context.Context) {
	defer close(t.done)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := t.follow(ctx)
		wasSynced := t.synced.Load()
		t.lost()
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		level := slog.LevelDebug // retries while Redis is away: logged once
		if wasSynced || attempt == 0 {
			level = slog.LevelWarn
		}
		t.logger.Log(ctx, level, "Redis invalidation stream interrupted: session cache off until it is back", "node", t.node, "error", err, "retryIn", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// lost marks the tracker out of sync and drops everything cached.
func (t *tracker) lost() {
	t.synced.Store(false)
	t.followers.InvalidateAll()
}

// follow runs one subscription until it fails.
func (t *tracker) follow(ctx context.Context) error {
	// With Sentinel, the master before subscribing and after the
	// confirmation must be the same one: then it is the one dialled.
	before, _ := t.currentMaster(ctx)
	ps := t.rdb.Subscribe(ctx, invalidateChannel)
	defer ps.Close()
	t.current.Store(ps)
	// go-redis reads do not watch the context: closing the subscription is
	// what interrupts one when the store closes.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	began := time.Now()
	pinged := false
	for ctx.Err() == nil {
		if !t.synced.Load() && time.Since(began) > subscribeWait {
			return errors.New("subscription not confirmed in time")
		}
		msg, err := ps.ReceiveTimeout(ctx, pingAfter)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if err := ps.Ping(ctx); err != nil {
					return fmt.Errorf("ping: %w", err)
				}
				continue
			}
			if strings.Contains(err.Error(), "unsupported pubsub message payload: <nil>") {
				// A null key list: the database was flushed.
				t.heard()
				t.followers.InvalidateAll()
				continue
			}
			return err
		}
		pinged = false
		t.heard()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == invalidateChannel {
				if after, ok := t.currentMaster(ctx); ok {
					if after != before {
						return fmt.Errorf("redis master moved from %s to %s while subscribing", before, after)
					}
					t.followed.Store(&after)
				}
				// Anything cached before this point may have missed an
				// invalidation; from here on none is missed.
				t.followers.InvalidateAll()
				t.synced.Store(true)
				level := slog.LevelInfo
				if t.quiet {
					level = slog.LevelDebug
				}
				t.logger.Log(ctx, level, "Following Redis invalidations: session cache on", "node", t.node, "prefix", t.prefix)
			}
		case *redis.Message:
			if m.Channel != invalidateChannel {
				continue
			}
			if m.PayloadSlice == nil {
				t.followers.InvalidateAll()
				continue
			}
			for _, k := range m.PayloadSlice {
				if strings.HasPrefix(k, t.prefix) {
					t.followers.Invalidate(k[len(t.prefix):])
				}
			}
		}
	}
	return ctx.Err()
}

// currentMaster asks the sentinels, in turn, for the master's address.
func (t *tracker) currentMaster(ctx context.Context) (string, bool) {
	for _, s := range t.sentinels {
		addr, err := s.GetMasterAddrByName(ctx, t.master).Result()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), true
		}
	}
	return "", false
}

// watchMaster asks the sentinels for the current master every masterCheck
// and drops the subscription when it is on another one: after a failover
// the old master may live on (demoted, or cut off from the sentinels) and
// would never see the new master's writes.
func (t *tracker) watchMaster(ctx context.Context) {
	tick := time.NewTicker(masterCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		followed := t.followed.Load()
		if followed == nil || !t.synced.Load() {
			continue
		}
		if master, ok := t.currentMaster(ctx); ok && master != *followed {
			t.logger.Warn("Redis master moved: following invalidations on the new master", "was", *followed, "now", master)
			t.synced.Store(false)
			if ps := t.current.Load(); ps != nil {
				ps.Close() // the follow loop sees the error and starts over
			}
		}
	}
}

func (t *tracker) close() error {
	t.cancel()
	<-t.done
	t.synced.Store(false)
	var errs []error
	for _, s := range t.sentinels {
		errs = append(errs, s.Close())
	}
	return errors.Join(append(errs, t.rdb.Close())...)
}

// The cluster tracker's view of the topology: asked every topologyCheck,
// and trusted for topologyTrust after the last answer.
const (
	topologyCheck = 250 * time.Millisecond
	topologyTrust = time.Second
)

// clusterTracker follows a Redis Cluster: one tracker per master, each
// receiving the invalidations of the keys its master holds, placed from
// the cluster's own topology (CLUSTER SHARDS) and moved when it changes
// (a failover, a resharding, a node added or removed).
//
// It is synced only while the last look at the topology is recent, the
// masters it tracks cover every slot, and each of their trackers is
// synced: while a master is down and not yet replaced, while a new one is
// being subscribed to, or while the topology cannot be read, the cache
// serves nothing, and each tracker that loses its connection empties it.
type clusterTracker struct {
	topo      redis.UniversalClient // its own cluster client, for CLUSTER SHARDS
	opts      redis.UniversalOptions
	prefix    string
	followers *sessionstore.Followers
	logger    *slog.Logger
	cancel    context.CancelFunc
	done      chan struct{}

	changed func() // told when the masters change (the data client reloads)

	epoch   time.Time
	checked atomic.Int64 // ns since epoch of the last topology answer
	covered atomic.Bool  // the tracked masters own every slot
	nodes   atomic.Pointer[[]*tracker]
	byAddr  map[string]*tracker // the run loop's own
}

func startClusterTracker(opts *redis.UniversalOptions, prefix string, followers *sessionstore.Followers, logger *slog.Logger, changed func()) *clusterTracker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &clusterTracker{topo: redis.NewUniversalClient(opts), opts: *opts, prefix: prefix, followers: followers,
		logger: logger, cancel: cancel, done: make(chan struct{}), epoch: time.Now(), byAddr: map[string]*tracker{}, changed: changed}
	c.nodes.Store(&[]*tracker{})
	go c.run(ctx)
	return c
}

// Synced reports whether every slot's master is followed, right now.
func (c *clusterTracker) Synced() bool {
	if !c.covered.Load() || time.Since(c.epoch)-time.Duration(c.checked.Load()) > topologyTrust {
		return false
	}
	for _, t := range *c.nodes.Load() {
		if !t.Synced() {
			return false
		}
	}
	return true
}

func (c *clusterTracker) run(ctx context.Context) {
	defer close(c.done)
	tick := time.NewTicker(topologyCheck)
	defer tick.Stop()
	wasSynced := false
	for {
		if err := c.place(ctx); err != nil && ctx.Err() == nil {
			level := slog.LevelDebug
			if wasSynced {
				level = slog.LevelWarn
			}
			c.logger.Log(ctx, level, "Redis Cluster topology unreadable: session cache off until it is back", "error", err)
		}
		if synced := c.Synced(); synced != wasSynced {
			if synced {
				c.logger.Info("Following Redis invalidations on every cluster master: session cache on", "masters", len(c.byAddr), "prefix", c.prefix)
			}
			wasSynced = synced
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// place reads the topology and makes the trackers match it: one per
// master that is online, none for anything else.
func (c *clusterTracker) place(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, topologyTrust)
	defer cancel()
	shards, err := c.topo.ClusterShards(ctx).Result()
	if err != nil {
		return fmt.Errorf("cluster shards: %w", err)
	}
	masters := map[string]bool{}
	var slots [16384]bool
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role != "master" || n.Health != "online" {
				continue
			}
			host := n.IP
			if host == "" {
				host = n.Endpoint
			}
			port := n.Port
			if c.opts.TLSConfig != nil && n.TLSPort != 0 {
				port = n.TLSPort
			}
			masters[net.JoinHostPort(host, strconv.FormatInt(port, 10))] = true
			for _, r := range sh.Slots {
				for i := max(r.Start, 0); i <= min(r.End, 16383); i++ {
					slots[i] = true
				}
			}
		}
	}
	changed := false
	for addr, t := range c.byAddr {
		if !masters[addr] {
			c.logger.Info("Redis Cluster master gone: no longer following it", "node", addr)
			_ = t.close()
			delete(c.byAddr, addr)
			changed = true
		}
	}
	for addr := range masters {
		if c.byAddr[addr] == nil {
			o := redis.UniversalOptions{Addrs: []string{addr}, Username: c.opts.Username, Password: c.opts.Password, TLSConfig: c.opts.TLSConfig,
				DialTimeout: c.opts.DialTimeout, ReadTimeout: c.opts.ReadTimeout, WriteTimeout: c.opts.WriteTimeout}
			c.byAddr[addr] = startTracker(&o, c.prefix, c.followers, c.logger, true)
			changed = true
		}
	}
	if changed {
		list := make([]*tracker, 0, len(c.byAddr))
		for _, t := range c.byAddr {
			list = append(list, t)
		}
		c.nodes.Store(&list)
		// What a new master holds was never followed here.
		c.followers.InvalidateAll()
		c.changed()
	}
	full := true
	for _, ok := range slots {
		full = full && ok
	}
	c.covered.Store(full)
	c.checked.Store(int64(time.Since(c.epoch)))
	return nil
}

func (c *clusterTracker) close() error {
	c.cancel()
	<-c.done
	c.covered.Store(false)
	var errs []error
	for _, t := range c.byAddr {
		errs = append(errs, t.close())
	}
	return errors.Join(append(errs, c.topo.Close())...)
}
