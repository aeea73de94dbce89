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
}

// Store is a Redis sessionstore.Backend. Each record is one string key whose
// value is the expiry (8 bytes, Unix ms) followed by the data, and whose
// native TTL is the same expiry: Redis evicts it, and a read checks it too.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// New returns a store over opts.Client. It does not contact Redis: an
// unreachable server shows in Ping and in errors, and go-redis reconnects.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redis store: nil client")
	}
	return &Store{rdb: opts.Client, prefix: opts.KeyPrefix}, nil
}

const header = 8

func encode(data []byte, exp time.Time) []byte {
	out := make([]byte, header+len(data))
	binary.BigEndian.PutUint64(out, uint64(exp.UnixMilli()))
	copy(out[header:], data)
	return out
}

func decode(v []byte) ([]byte, time.Time, bool) {
	if len(v) < header {
		return nil, time.Time{}, false
	}
	return v[header:], time.UnixMilli(int64(binary.BigEndian.Uint64(v))), true
}

// Find implements sessionstore.Store.
func (s *Store) Find(ctx context.Context, key string) ([]byte, time.Time, bool, error) {
	v, err := s.rdb.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("redis get: %w", err)
	}
	data, exp, ok := decode(v)
	if !ok || !time.Now().Before(exp) {
		return nil, time.Time{}, false, nil
	}
	return data, exp, true, nil
}

// Save implements sessionstore.Store: value and expiry in one SET ... PXAT.
func (s *Store) Save(ctx context.Context, key string, data []byte, expiresAt time.Time) error {
	if !time.Now().Before(expiresAt) {
		return s.Delete(ctx, key)
	}
	err := s.rdb.SetArgs(ctx, s.prefix+key, encode(data, expiresAt), redis.SetArgs{ExpireAt: expiresAt}).Err()
	if err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// touchScript moves the expiry kept in the value and the native TTL
// together, and only for a key that still exists.
var touchScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SETRANGE', KEYS[1], 0, ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// Touch implements sessionstore.Store.
func (s *Store) Touch(ctx context.Context, key string, expiresAt time.Time) error {
	hdr := make([]byte, header)
	binary.BigEndian.PutUint64(hdr, uint64(expiresAt.UnixMilli()))
	if err := touchScript.Run(ctx, s.rdb, []string{s.prefix + key}, hdr, expiresAt.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("redis touch: %w", err)
	}
	return nil
}

// Delete implements sessionstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
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
				keys, next, err := node.Scan(ctx, cursor, s.prefix+"*", 500).Result()
				if err != nil {
					return fmt.Errorf("redis scan: %w", err)
				}
				if len(keys) > 0 {
					// GETs in one pipeline rather than MGET: in a cluster the
					// keys of one shard still span many slots.
					cmds := make([]*redis.StringCmd, len(keys))
					pipe := node.Pipeline()
					for i, k := range keys {
						cmds[i] = pipe.Get(ctx, k)
					}
					if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
						return fmt.Errorf("redis get: %w", err)
					}
					for i, cmd := range cmds {
						v, err := cmd.Bytes()
						if err != nil {
							continue // expired or deleted since the scan
						}
						data, exp, ok := decode(v)
						if !ok || !time.Now().Before(exp) {
							continue
						}
						if !yield(sessionstore.Entry{Key: keys[i][len(s.prefix):], Data: data, ExpiresAt: exp}, nil) {
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
