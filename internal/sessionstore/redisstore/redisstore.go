// Package redisstore keeps sessions in Redis through go-redis's
// UniversalClient, so one code path serves a single server, Sentinel and
// Cluster. Several app instances share sessions through it.
package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/example/oauth-sessions/internal/sessionstore"
)

// Options configures a Store.
type Options struct {
	// Client is any go-redis client: *redis.Client, a failover (Sentinel)
	// client or *redis.ClusterClient. The store closes it.
	Client redis.UniversalClient
	// KeyPrefix keeps the app's keys apart from others in the same database.
	KeyPrefix string
	// Tracking, when set, are the options Client was made with: the store
	// opens one more connection with them to receive Redis's invalidation
	// messages, which makes it a sessionstore.ChangeFeed (and so lets the
	// app cache sessions in memory). Not supported with Cluster, whose
	// invalidations come per shard; the store then never reports synced.
	Tracking *redis.UniversalOptions
	Logger   *slog.Logger
}

// Store is a Redis sessionstore.Backend. Each record is one string key whose
// value is a small header (expiry and last-seen as Unix ms, the owner) and
// then the data, and whose native TTL is the same expiry: Redis evicts it,
// and a read checks it too. Each owner has a set of its session keys; the
// set is a hint (a cluster cannot update two slots atomically), so ByOwner
// checks every member and prunes the dead ones.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	followers sessionstore.Followers
	tracker   *tracker // nil without Options.Tracking
}

// New returns a store over opts.Client. It does not contact Redis: an
// unreachable server shows in Ping and in errors, and go-redis reconnects.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redis store: nil client")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{rdb: opts.Client, prefix: opts.KeyPrefix}
	if t := opts.Tracking; t != nil {
		if t.IsClusterMode || (len(t.Addrs) > 1 && t.MasterName == "") {
			opts.Logger.Info("Session cache off: Redis Cluster sends invalidations per shard, which this store does not follow")
		} else {
			s.tracker = startTracker(t, s.prefix, &s.followers, opts.Logger)
		}
	}
	return s, nil
}

// Follow implements sessionstore.ChangeFeed.
func (s *Store) Follow(inv sessionstore.Invalidator) { s.followers.Add(inv) }

// Synced implements sessionstore.ChangeFeed: true while the invalidation
// connection is subscribed (on the current master) and has been heard from
// within the last 300 ms. Redis sends each invalidation at the end of the
// event-loop iteration that ran the write.
func (s *Store) Synced(context.Context) bool { return s.tracker != nil && s.tracker.Synced() }

const header = 18 // expiry (8), seen (8), owner length (2)

func encode(e sessionstore.Entry) []byte {
	out := make([]byte, header+len(e.Owner)+len(e.Data))
	binary.BigEndian.PutUint64(out, uint64(e.ExpiresAt.UnixMilli()))
	binary.BigEndian.PutUint64(out[8:], uint64(e.SeenAt.UnixMilli()))
	binary.BigEndian.PutUint16(out[16:], uint16(len(e.Owner)))
	copy(out[header:], e.Owner)
	copy(out[header+len(e.Owner):], e.Data)
	return out
}

func decode(key string, v []byte) (sessionstore.Entry, bool) {
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
		Owner:     string(v[header : header+n]),
		Data:      v[header+n:],
	}
	return e, time.Now().Before(e.ExpiresAt)
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
	e, live := decode(key, v)
	return e, live, nil
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
	ttl := time.Until(e.ExpiresAt)
	if ttl <= 0 {
		return s.Delete(ctx, e.Key)
	}
	defer s.followers.Invalidate(e.Key)
	err := s.rdb.SetArgs(ctx, s.prefix+e.Key, encode(e), redis.SetArgs{ExpireAt: e.ExpiresAt}).Err()
	if err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	if e.Owner != "" {
		if err := addOwnerScript.Run(ctx, s.rdb, []string{s.ownerKey(e.Owner)}, e.Key, ttl.Milliseconds()+1000).Err(); err != nil {
			return fmt.Errorf("redis index owner: %w", err)
		}
	}
	return nil
}

// touchScript moves the times kept in the value and the native TTL
// together, only for a key that still exists, and returns the key's owner
// (the owner's set is another key, in another slot of a cluster, so the
// caller extends it).
var touchScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SETRANGE', KEYS[1], 0, ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  local len = redis.call('GETRANGE', KEYS[1], 16, 17)
  local n = string.byte(len, 1) * 256 + string.byte(len, 2)
  if n == 0 then return '' end
  return redis.call('GETRANGE', KEYS[1], 18, 17 + n)
end
return ''`)

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
	owner, err := touchScript.Run(ctx, s.rdb, []string{s.prefix + key}, hdr, expiresAt.UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("redis touch: %w", err)
	}
	if owner != "" {
		// With an idle timeout a session outlives the expiry it was saved
		// with; its owner's set must too.
		ms := time.Until(expiresAt).Milliseconds() + 1000
		if err := extendOwnerScript.Run(ctx, s.rdb, []string{s.ownerKey(owner)}, ms).Err(); err != nil {
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
		if e, ok := decode(keys[i][len(s.prefix):], v); ok {
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
		if e.Owner == owner {
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
func (s *Store) Close() error {
	var err error
	if s.tracker != nil {
		err = s.tracker.close()
	}
	return errors.Join(err, s.rdb.Close())
}
