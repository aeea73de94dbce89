// Package redisstore keeps sessions in Redis through go-redis's
// UniversalClient, so one code path serves a single server, Sentinel and
// Cluster. Several app instances share sessions through it.
package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/sessionstore"
)

var (
	_ sessionstore.Backend     = (*Store)(nil)
	_ sessionstore.RateCounter = (*Store)(nil)
	_ sessionstore.Backend     = (*Tracked)(nil)
	_ sessionstore.ChangeFeed  = (*Tracked)(nil)
)

// Definition introduces the Redis store: SESSION_STORE=redis, with
// REDIS_URL or REDIS_HOST/PORT/USERNAME/PASSWORD/DB, REDIS_SENTINEL_MASTER
// and REDIS_SENTINEL_ADDRS for Sentinel, REDIS_CLUSTER_ADDRS for Cluster,
// and REDIS_KEY_PREFIX.
func Definition() sessionstore.Definition {
	return sessionstore.Definition{
		Name:       "redis",
		Persistent: true,
		Shared:     true,
		Configure:  configure,
	}
}

func configure(env *envconfig.Reader, p sessionstore.Params) sessionstore.Opener {
	opts, mode := clientOptions(env)
	prefix := env.Str("REDIS_KEY_PREFIX", "sess:")
	return func(context.Context) (sessionstore.Backend, error) {
		p.Logger.Info("Creating Redis session store", "mode", mode, "addrs", opts.Addrs, "masterName", opts.MasterName,
			"db", opts.DB, "tls", opts.TLSConfig != nil, "keyPrefix", prefix)
		redis.SetLogger(redisLogger{p.Logger}) // go-redis logs through a package-level hook
		client := redis.NewUniversalClient(opts)
		if p.Tracer != nil {
			// A span per command; never the command's text, which holds
			// the session's key and sealed record.
			if err := redisotel.InstrumentTracing(client, redisotel.WithTracerProvider(p.Tracer),
				redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
				return nil, fmt.Errorf("trace the Redis client: %w", err)
			}
		}
		o := Options{Client: client, KeyPrefix: prefix, Logger: p.Logger}
		if !p.Follow {
			return New(o)
		}
		o.Tracking = opts
		return NewTracked(o)
	}
}

// clientOptions reads the client's settings: credentials and TLS from
// REDIS_URL (or REDIS_HOST/PORT/PASSWORD/DB), addresses from the Sentinel
// or Cluster settings when those are set.
func clientOptions(env *envconfig.Reader) (*redis.UniversalOptions, string) {
	rawURL := env.Str("REDIS_URL", "")
	host := env.Str("REDIS_HOST", "localhost")
	port := env.Int("REDIS_PORT", 6379, 1, 65535)
	opts := &redis.UniversalOptions{
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		Username: env.Str("REDIS_USERNAME", ""), Password: env.Raw("REDIS_PASSWORD"), DB: env.Int("REDIS_DB", 0, 0, 15),
		Addrs: []string{net.JoinHostPort(host, strconv.Itoa(port))},
	}
	master, sentinels := env.Str("REDIS_SENTINEL_MASTER", ""), env.List("REDIS_SENTINEL_ADDRS")
	cluster := env.List("REDIS_CLUSTER_ADDRS")
	if rawURL != "" {
		if u, err := url.Parse(rawURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			env.Fail("REDIS_URL", "must be a redis:// or rediss:// URL")
		} else if u, err := redis.ParseURL(rawURL); err != nil {
			env.Fail("REDIS_URL", "%v", err)
		} else {
			opts.Addrs = []string{u.Addr}
			opts.Username, opts.Password, opts.DB, opts.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
		}
	}
	if (master == "") != (len(sentinels) == 0) {
		env.Fail("REDIS_SENTINEL_ADDRS", "REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS go together; set both or neither")
	}
	switch {
	case len(cluster) > 0 && master != "":
		env.Fail("REDIS_CLUSTER_ADDRS", "set either Redis Cluster or Sentinel, not both")
	case len(cluster) > 0:
		opts.Addrs, opts.IsClusterMode, opts.DB = cluster, true, 0
		return opts, "cluster"
	case master != "":
		opts.Addrs, opts.MasterName = sentinels, master
		return opts, "sentinel"
	}
	return opts, "single"
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Log(ctx, slog.LevelDebug, "redis client", "message", fmt.Sprintf(format, v...))
}

// Options configures a Store.
type Options struct {
	// Client is any go-redis client: *redis.Client, a failover (Sentinel)
	// client or *redis.ClusterClient. The store closes it.
	Client redis.UniversalClient
	// KeyPrefix keeps the app's keys apart from others in the same database.
	KeyPrefix string
	// Tracking, for NewTracked, are the options Client was made with: the
	// store opens one more connection with them to receive Redis's
	// invalidation messages.
	Tracking *redis.UniversalOptions
	// Now is the clock that decides expiry on read (time.Now when nil);
	// Redis's own expiry runs on the server's clock.
	Now    func() time.Time
	Logger *slog.Logger
}

// Store is a Redis sessionstore.Backend. Each record is one string key whose
// value is a small header (expiry and last-seen as Unix ms, the owners one
// per line) and then the data, and whose native TTL is the same expiry:
// Redis evicts it, and a read checks it too. Each owner has a set of its
// session keys; the set is a hint (a cluster cannot update two slots
// atomically), so ByOwner checks every member and prunes the dead ones.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	now       func() time.Time
	followers sessionstore.Followers // its own writes are reported here
}

// New returns a store over opts.Client. It does not contact Redis: an
// unreachable server shows in Ping and in errors, and go-redis reconnects.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redis store: nil client")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if cc, ok := opts.Client.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnNetworkError{cc})
	}
	return &Store{rdb: opts.Client, prefix: opts.KeyPrefix, now: opts.Now}, nil
}

// reloadOnNetworkError makes a cluster client read the topology again when
// a node does not answer. go-redis reloads it by itself on MOVED, and
// otherwise only every 60 s: after a master dies and its replica takes
// over, the client would keep dialling the dead master for up to a minute
// (the shard's sessions answering 503). LazyReload runs at most once per
// 200 ms, however many requests fail.
type reloadOnNetworkError struct{ cc *redis.ClusterClient }

func (h reloadOnNetworkError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnNetworkError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h reloadOnNetworkError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

func (h reloadOnNetworkError) check(err error) {
	var ne net.Error
	if err != nil && (errors.As(err, &ne) || errors.Is(err, io.EOF) || strings.HasPrefix(err.Error(), "CLUSTERDOWN")) {
		h.cc.ReloadState(context.Background())
	}
}

// Tracked is a Store that follows Redis's invalidation messages for its
// key prefix, from every writer: a sessionstore.ChangeFeed, over which the
// app caches sessions in memory.
type Tracked struct {
	*Store
	feed feed
}

// feed is what follows the invalidations: one tracker (a single server or
// Sentinel's master), or one per master of a cluster.
type feed interface {
	Synced() bool
	close() error
}

// NewTracked returns a store that follows invalidations on connections of
// its own made with opts.Tracking: one for a single server or Sentinel's
// master, one per master for a cluster.
func NewTracked(opts Options) (*Tracked, error) {
	if opts.Tracking == nil || (!opts.Tracking.IsClusterMode && len(opts.Tracking.Addrs) > 1 && opts.Tracking.MasterName == "") {
		return nil, errors.New("redis store: tracking needs the options of a single server, Sentinel or Cluster client")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	if opts.Tracking.IsClusterMode {
		reload := func() {}
		if cc, ok := opts.Client.(*redis.ClusterClient); ok {
			reload = func() { cc.ReloadState(context.Background()) }
		}
		return &Tracked{Store: s, feed: startClusterTracker(opts.Tracking, s.prefix, &s.followers, opts.Logger, reload)}, nil
	}
	return &Tracked{Store: s, feed: startTracker(opts.Tracking, s.prefix, &s.followers, opts.Logger, false)}, nil
}

// Follow implements sessionstore.ChangeFeed.
func (t *Tracked) Follow(inv sessionstore.Invalidator) { t.followers.Add(inv) }

// Synced implements sessionstore.ChangeFeed: true while the invalidation
// connection of every master is subscribed (on a current master) and has
// been heard from within the last 300 ms (and, for a cluster, the topology
// was read within the last second and its followed masters own every
// slot). Redis sends each invalidation at the end of the event-loop
// iteration that ran the write.
func (t *Tracked) Synced(context.Context) bool { return t.feed.Synced() }

// Close stops following and closes the store.
func (t *Tracked) Close() error {
	return errors.Join(t.feed.close(), t.Store.Close())
}

const header = 18 // expiry (8), seen (8), owner length (2)

func encode(e sessionstore.Entry) []byte {
	owners := strings.Join(e.Owners, "\n")
	out := make([]byte, header+len(owners)+len(e.Data))
	binary.BigEndian.PutUint64(out, uint64(e.ExpiresAt.UnixMilli()))
	binary.BigEndian.PutUint64(out[8:], uint64(e.SeenAt.UnixMilli()))
	binary.BigEndian.PutUint16(out[16:], uint16(len(owners)))
	copy(out[header:], owners)
	copy(out[header+len(owners):], e.Data)
	return out
}

func splitOwners(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func decode(key string, v []byte, now time.Time) (sessionstore.Entry, bool) {
	if len(v) < header {
		return sessionstore.Entry{}, false
	}
	n := int(binary.BigEndian.Uint16(v[16:]))
	if len(v) < header+n {
		return sessionstore.Entry{}, false
	}
	e := sessionstore.Entry{
		Key:       key,
		ExpiresAt: time.UnixMilli(int64(binary.BigEndian.Uint64(v))),
		SeenAt:    time.UnixMilli(int64(binary.BigEndian.Uint64(v[8:]))),
		Owners:    splitOwners(string(v[header : header+n])),
		Data:      v[header+n:],
	}
	return e, now.Before(e.ExpiresAt)
}

// KeyPrefix returns the prefix of the store's keys.
func (s *Store) KeyPrefix() string { return s.prefix }

func (s *Store) ownerKey(owner string) string { return s.prefix + "u:" + owner }

// Find implements sessionstore.Store.
func (s *Store) Find(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	v, err := s.rdb.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return sessionstore.Entry{}, false, nil
	}
	if err != nil {
		return sessionstore.Entry{}, false, fmt.Errorf("redis get: %w", err)
	}
	e, live := decode(key, v, s.now())
	return e, live, nil
}

// Take implements sessionstore.Store with GETDEL: Redis runs each
// command alone, so exactly one of concurrent Takes gets the value.
func (s *Store) Take(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	defer s.followers.Invalidate(key)
	v, err := s.rdb.GetDel(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return sessionstore.Entry{}, false, nil
	}
	if err != nil {
		return sessionstore.Entry{}, false, fmt.Errorf("redis getdel: %w", full(err))
	}
	e, live := decode(key, v, s.now())
	return e, live, nil
}

// full marks Redis's refusal to write at maxmemory (with noeviction) as
// sessionstore.ErrFull.
func full(err error) error {
	var re redis.Error
	if errors.As(err, &re) && strings.HasPrefix(re.Error(), "OOM ") {
		return fmt.Errorf("%w: %w", sessionstore.ErrFull, err)
	}
	return err
}

// allowScript is a token bucket (GCRA) on the server's clock, so every app
// instance shares it and their clocks need not agree: KEYS[1] holds the
// key's theoretical arrival time in µs; ARGV are the interval and the
// tolerance (interval × (burst-1)) in µs. It returns {1, 0} to allow, or
// {0, µs to wait}.
var allowScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local every, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return {0, tat - tolerance - now} end
tat = tat + every
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {1, 0}`)

// Allow implements sessionstore.RateCounter. Its keys live under the
// store's prefix ("rl:"), each only as long as its bucket is not full.
func (s *Store) Allow(ctx context.Context, key string, every time.Duration, burst int) (bool, time.Duration, error) {
	res, err := allowScript.Run(ctx, s.rdb, []string{s.prefix + "rl:" + key},
		every.Microseconds(), (every * time.Duration(burst-1)).Microseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("redis rate limit: %w", full(err))
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("redis rate limit: unexpected answer %v", res)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Microsecond, nil
}

// addOwnerScript adds a key to an owner's set and makes the set live at
// least as long as that session (it never shortens it).
var addOwnerScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`)

// Save implements sessionstore.Store: value and expiry in one SET ... PXAT.
func (s *Store) Save(ctx context.Context, e sessionstore.Entry) error {
	ttl := e.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return s.Delete(ctx, e.Key)
	}
	defer s.followers.Invalidate(e.Key)
	err := s.rdb.SetArgs(ctx, s.prefix+e.Key, encode(e), redis.SetArgs{ExpireAt: e.ExpiresAt}).Err()
	if err != nil {
		return fmt.Errorf("redis set: %w", full(err))
	}
	for _, o := range e.Owners { // one call each: in a cluster the sets live in other slots
		if err := addOwnerScript.Run(ctx, s.rdb, []string{s.ownerKey(o)}, e.Key, ttl.Milliseconds()+1000).Err(); err != nil {
			return fmt.Errorf("redis index owner: %w", full(err))
		}
	}
	return nil
}

// insertScript sets KEYS[1] to ARGV[1], expiring at ARGV[3] (Unix ms),
// unless it holds a record still live at ARGV[2] (the caller's clock, as
// Find judges it): the record's expiry is its first 8 bytes. It returns 1
// if it set the key.
var insertScript = redis.NewScript(`
local hdr = redis.call('GETRANGE', KEYS[1], 0, 7)
if string.len(hdr) == 8 then
  local exp = 0
  for i = 1, 8 do exp = exp * 256 + string.byte(hdr, i) end
  if exp > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
`)

// Insert implements sessionstore.Store with one script, atomic on the
// server and so for every instance (SET NX would do but for a record
// the server keeps a moment past its expiry by the app's clock).
func (s *Store) Insert(ctx context.Context, e sessionstore.Entry) (bool, error) {
	ttl := e.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return false, nil
	}
	n, err := insertScript.Run(ctx, s.rdb, []string{s.prefix + e.Key}, encode(e), s.now().UnixMilli(), e.ExpiresAt.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("redis insert: %w", full(err))
	}
	if n == 0 {
		return false, nil
	}
	s.followers.Invalidate(e.Key)
	for _, o := range e.Owners {
		if err := addOwnerScript.Run(ctx, s.rdb, []string{s.ownerKey(o)}, e.Key, ttl.Milliseconds()+1000).Err(); err != nil {
			return true, fmt.Errorf("redis index owner: %w", full(err))
		}
	}
	return true, nil
}

// touchScript moves the times kept in the value and the native TTL
// together, only for a record that is still live by the caller's clock
// (ARGV[3], Unix ms: the key may outlive it by the server's), and returns
// the key's owner (the owner's set is another key, in another slot of a
// cluster, so the caller extends it).
var touchScript = redis.NewScript(`
local hdr = redis.call('GETRANGE', KEYS[1], 0, 17)
if string.len(hdr) < 18 then return '' end
local exp = 0
for i = 1, 8 do exp = exp * 256 + string.byte(hdr, i) end
if exp <= tonumber(ARGV[3]) then return '' end
redis.call('SETRANGE', KEYS[1], 0, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
local n = string.byte(hdr, 17) * 256 + string.byte(hdr, 18)
if n == 0 then return '' end
return redis.call('GETRANGE', KEYS[1], 18, 17 + n)`)

// extendOwnerScript makes an owner's set live at least ARGV[1] ms more.
var extendOwnerScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl ~= -2 and ttl < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1`)

// Touch implements sessionstore.Store.
func (s *Store) Touch(ctx context.Context, key string, seenAt, expiresAt time.Time) error {
	defer s.followers.Invalidate(key)
	hdr := make([]byte, 16)
	binary.BigEndian.PutUint64(hdr, uint64(expiresAt.UnixMilli()))
	binary.BigEndian.PutUint64(hdr[8:], uint64(seenAt.UnixMilli()))
	owner, err := touchScript.Run(ctx, s.rdb, []string{s.prefix + key}, hdr, expiresAt.UnixMilli(), s.now().UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("redis touch: %w", full(err))
	}
	// With an idle timeout a session outlives the expiry it was saved
	// with; its owners' sets must too.
	ms := expiresAt.Sub(s.now()).Milliseconds() + 1000
	for _, o := range splitOwners(owner) {
		if err := extendOwnerScript.Run(ctx, s.rdb, []string{s.ownerKey(o)}, ms).Err(); err != nil {
			return fmt.Errorf("redis touch owner index: %w", err)
		}
	}
	return nil
}

// getMany reads keys (full Redis keys) in one pipeline and returns the live
// entries and the keys that are gone.
func (s *Store) getMany(ctx context.Context, node redis.Cmdable, keys []string) ([]sessionstore.Entry, []string, error) {
	// GETs in one pipeline rather than MGET: in a cluster the keys of one
	// shard still span many slots.
	cmds := make([]*redis.StringCmd, len(keys))
	pipe := node.Pipeline()
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	_, _ = pipe.Exec(ctx) // Exec reports only the first error: each command is checked below
	var live []sessionstore.Entry
	var gone []string
	for i, cmd := range cmds {
		v, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			gone = append(gone, keys[i])
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("redis get: %w", err)
		}
		if e, ok := decode(keys[i][len(s.prefix):], v, s.now()); ok {
			live = append(live, e)
		} else {
			gone = append(gone, keys[i])
		}
	}
	return live, gone, nil
}

// ByOwner implements sessionstore.Store from the owner's set.
func (s *Store) ByOwner(ctx context.Context, owner string) ([]sessionstore.Entry, error) {
	members, err := s.rdb.SMembers(ctx, s.ownerKey(owner)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis smembers: %w", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = s.prefix + m
	}
	found, gone, err := s.getMany(ctx, s.rdb, keys)
	if err != nil {
		return nil, err
	}
	live := found[:0]
	for _, e := range found {
		if slices.Contains(e.Owners, owner) {
			live = append(live, e)
		} else { // saved since under another owner
			gone = append(gone, s.prefix+e.Key)
		}
	}
	if len(gone) > 0 {
		stale := make([]any, len(gone))
		for i, k := range gone {
			stale[i] = k[len(s.prefix):]
		}
		_ = s.rdb.SRem(ctx, s.ownerKey(owner), stale...).Err() // a hint; the next call prunes again
	}
	return live, nil
}

// Delete implements sessionstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	defer s.followers.Invalidate(key)
	if err := s.rdb.Del(ctx, s.prefix+key).Err(); err != nil {
		return fmt.Errorf("redis del: %w", err)
	}
	return nil
}

// All implements sessionstore.Store with SCAN over every master (one for a
// single server or Sentinel, each shard for a cluster).
func (s *Store) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	return func(yield func(sessionstore.Entry, error) bool) {
		stop := errors.New("stopped")
		scan := func(ctx context.Context, node redis.Cmdable) error {
			var cursor uint64
			for {
				// TYPE string skips the owner sets.
				keys, next, err := node.ScanType(ctx, cursor, s.prefix+"*", 500, "string").Result()
				if err != nil {
					return fmt.Errorf("redis scan: %w", err)
				}
				if len(keys) > 0 {
					live, _, err := s.getMany(ctx, node, keys)
					if err != nil {
						return err
					}
					for _, e := range live {
						if !yield(e, nil) {
							return stop
						}
					}
				}
				if next == 0 {
					return nil
				}
				cursor = next
			}
		}
		var err error
		if cc, ok := s.rdb.(*redis.ClusterClient); ok {
			// Shards are scanned one after another: yield must not be called
			// concurrently.
			var mu sync.Mutex
			var shards []*redis.Client
			err = cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
				mu.Lock()
				shards = append(shards, c)
				mu.Unlock()
				return nil
			})
			for _, c := range shards {
				if err != nil {
					break
				}
				err = scan(ctx, c)
			}
		} else {
			err = scan(ctx, s.rdb)
		}
		if err != nil && !errors.Is(err, stop) {
			yield(sessionstore.Entry{}, err)
		}
	}
}

// Ping implements sessionstore.Backend.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Close implements sessionstore.Backend.
func (s *Store) Close() error { return s.rdb.Close() }
