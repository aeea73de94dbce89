package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/example/oauth-sessions/internal/sessionstore"
)

// invalidateChannel is where Redis publishes key invalidations to a
// connection that redirects tracking to itself over RESP2.
const invalidateChannel = "__redis__:invalidate"

// tracker keeps one connection that receives Redis's invalidation messages
// for every key under the store's prefix (server-assisted client-side
// caching, CLIENT TRACKING in broadcast mode), and reports them to the
// store's followers. Broadcast mode covers writes by anyone — other app
// instances, the CLI, redis-cli — and the server's own expiry and eviction.
//
// Between connecting and the subscription being confirmed, and whenever the
// connection fails or stops answering pings, invalidations may be lost:
// the tracker then reports everything as changed and says it is not synced
// until a new subscription is confirmed.
type tracker struct {
	rdb       redis.UniversalClient
	prefix    string
	followers *sessionstore.Followers
	logger    *slog.Logger
	synced    atomic.Bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// pingAfter is how long the connection may be silent before the tracker
// pings it; a ping unanswered for as long again means the connection is dead.
const pingAfter = time.Second

func startTracker(opts *redis.UniversalOptions, prefix string, followers *sessionstore.Followers, logger *slog.Logger) *tracker {
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
			// dialer will find the new one on the next attempt.
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
	ctx, cancel := context.WithCancel(context.Background())
	t := &tracker{rdb: redis.NewUniversalClient(&o), prefix: prefix, followers: followers, logger: logger,
		cancel: cancel, done: make(chan struct{})}
	go t.run(ctx)
	return t
}

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
		t.logger.Log(ctx, level, "Redis invalidation stream interrupted: session cache off until it is back", "error", err, "retryIn", backoff)
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
	ps := t.rdb.Subscribe(ctx, invalidateChannel)
	defer ps.Close()
	// go-redis reads do not watch the context: closing the subscription is
	// what interrupts one when the store closes.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	pinged := false
	for ctx.Err() == nil {
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
				t.followers.InvalidateAll()
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == invalidateChannel {
				// Anything cached before this point may have missed an
				// invalidation; from here on none is missed.
				t.followers.InvalidateAll()
				t.synced.Store(true)
				t.logger.Info("Following Redis invalidations: session cache on", "prefix", t.prefix)
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

func (t *tracker) close() error {
	t.cancel()
	<-t.done
	t.synced.Store(false)
	return t.rdb.Close()
}
