package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/example/oauth-sessions/internal/config"
	"github.com/example/oauth-sessions/internal/sessionstore"
	"github.com/example/oauth-sessions/internal/sessionstore/memstore"
	"github.com/example/oauth-sessions/internal/sessionstore/mongostore"
	"github.com/example/oauth-sessions/internal/sessionstore/redisstore"
	"github.com/example/oauth-sessions/internal/sessionstore/sqlitestore"
)

// openStore turns configuration into the selected backend. The store
// packages know nothing of config: this is where the two meet. A server
// store (redis, mongo) that is down at start-up is not an error: the app
// serves 503 on session routes until it answers.
func openStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (sessionstore.Backend, error) {
	switch cfg.SessionStore {
	case config.StoreSQLite:
		logger.Info("Creating SQLite session store", "dbPath", cfg.SQLitePath, "table", cfg.SQLiteTable)
		s, err := sqlitestore.New(ctx, sqlitestore.Options{Path: cfg.SQLitePath, Table: cfg.SQLiteTable, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("config: SESSION_SQLITE_PATH: %w", err)
		}
		return s, nil
	case config.StoreRedis:
		opts, mode, err := redisOptions(cfg.Redis)
		if err != nil {
			return nil, err
		}
		logger.Info("Creating Redis session store", "mode", mode, "addrs", opts.Addrs, "masterName", opts.MasterName,
			"db", opts.DB, "tls", opts.TLSConfig != nil, "keyPrefix", cfg.Redis.KeyPrefix)
		redis.SetLogger(redisLogger{logger}) // go-redis logs through a package-level hook
		var tracking *redis.UniversalOptions
		if cfg.SessionCacheSize > 0 && mode != "cluster" { // see openCache
			tracking = opts
		}
		return redisstore.New(redisstore.Options{Client: redis.NewUniversalClient(opts), KeyPrefix: cfg.Redis.KeyPrefix,
			Tracking: tracking, Logger: logger})
	case config.StoreMongo:
		client, db, err := mongostore.Connect(cfg.Mongo.URL)
		if err != nil {
			return nil, fmt.Errorf("config: MONGODB_SESSION_URL: %w", err)
		}
		logger.Info("Creating MongoDB session store", "url", redactURL(cfg.Mongo.URL), "database", db,
			"collection", cfg.Mongo.Collection, "autoRemove", cfg.Mongo.AutoRemove)
		return mongostore.New(mongostore.Options{
			Client: client, Database: db, Collection: cfg.Mongo.Collection,
			AutoRemove: cfg.Mongo.AutoRemove, Interval: cfg.Mongo.AutoRemoveInterval, Logger: logger,
		})
	case config.StoreMemory:
		logger.Warn("Creating memory session store: development only, every session is lost when the server stops")
		return memstore.New(time.Minute), nil
	}
	return nil, fmt.Errorf("config: SESSION_STORE: %q is not built in", cfg.SessionStore)
}

// openCache returns the in-process session cache for backend, or nil when
// it is turned off or the backend cannot report others' writes (MongoDB).
func openCache(cfg *config.Config, backend sessionstore.Backend, logger *slog.Logger) *sessionstore.Cache {
	feed, ok := backend.(sessionstore.ChangeFeed)
	switch {
	case cfg.SessionCacheSize == 0:
		logger.Info("Session cache off", "reason", "SESSION_CACHE_SIZE=0")
		return nil
	case !ok:
		logger.Info("Session cache off", "reason", "the "+cfg.SessionStore+" store does not report writes made elsewhere")
		return nil
	case cfg.SessionStore == config.StoreRedis && len(cfg.Redis.ClusterAddrs) > 0:
		logger.Info("Session cache off", "reason", "Redis Cluster sends invalidations per shard, which the store does not follow")
		return nil
	}
	logger.Info("Session cache on", "size", cfg.SessionCacheSize, "storeType", cfg.SessionStore)
	return sessionstore.NewCache(feed, cfg.SessionCacheSize)
}

// redisOptions builds client options: credentials and TLS from REDIS_URL
// (or REDIS_HOST/PORT/PASSWORD/DB), addresses from the Sentinel or Cluster
// settings when those are set.
func redisOptions(r config.Redis) (*redis.UniversalOptions, string, error) {
	opts := &redis.UniversalOptions{
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		Username: r.Username, Password: r.Password, DB: r.DB,
		Addrs: []string{net.JoinHostPort(r.Host, strconv.Itoa(r.Port))},
	}
	if r.URL != "" {
		u, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, "", fmt.Errorf("config: REDIS_URL: %w", err)
		}
		opts.Addrs = []string{u.Addr}
		opts.Username, opts.Password, opts.DB, opts.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
	}
	switch {
	case len(r.ClusterAddrs) > 0:
		opts.Addrs, opts.IsClusterMode, opts.DB = r.ClusterAddrs, true, 0
		return opts, "cluster", nil
	case r.SentinelMaster != "":
		opts.Addrs, opts.MasterName = r.SentinelAddrs, r.SentinelMaster
		return opts, "sentinel", nil
	}
	return opts, "single", nil
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Log(ctx, slog.LevelDebug, "redis client", "message", fmt.Sprintf(format, v...))
}

// redactURL drops the password from a URL for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
