package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"example.com/oauth-sessions/internal/config"
	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/ratelimit"
	"example.com/oauth-sessions/internal/sessionstore"
)

// loadConfig reads the program's configuration, SESSION_STORE checked
// against the built-in backends.
func loadConfig(getenv func(string) string) (*config.Config, error) {
	return config.Load(getenv, sessionstore.Names(backends()))
}

// openStore turns configuration into the backend called name: the backend
// reads its own variables (each problem names its variable), and this is
// where the program's settings meet it. A store on a server of its own
// that is down at start-up is not an error: the app serves 503 on session
// routes until it answers.
// tracer, when set, traces the store's client (nil: tracing off).
func openStore(ctx context.Context, cfg *config.Config, getenv func(string) string, name string, logger *slog.Logger, tracer trace.TracerProvider) (sessionstore.Backend, sessionstore.Definition, error) {
	def, ok := sessionstore.Lookup(backends(), name)
	if !ok {
		return nil, def, &config.Error{Var: "SESSION_STORE", Problem: fmt.Sprintf("%q is not built in; use one of: %s", name, strings.Join(sessionstore.Names(backends()), ", "))}
	}
	if def.DevelopmentOnly && cfg.Production() && !cfg.AllowMemoryInProduction {
		return nil, def, &config.Error{Var: "SESSION_STORE", Problem: fmt.Sprintf("%s loses every session on restart and is refused in production; use a persistent store (or set ALLOW_MEMORY_STORE_IN_PRODUCTION=true)", def.Name)}
	}
	env := envconfig.New(getenv)
	open := def.Configure(env, sessionstore.Params{DataDir: cfg.DataDir, Follow: cfg.SessionCacheSize > 0, Logger: logger, Tracer: tracer})
	if err := env.Err(); err != nil {
		return nil, def, err
	}
	b, err := open(ctx)
	return b, def, err
}

// openCache returns the in-process session cache for backend, or nil when
// it is turned off or the backend cannot report others' writes.
func openCache(cfg *config.Config, backend sessionstore.Backend, name string, logger *slog.Logger) *httpsession.Cache {
	feed, ok := sessionstore.As[sessionstore.ChangeFeed](backend)
	switch {
	case cfg.SessionCacheSize == 0:
		logger.Info("Session cache off", "reason", "SESSION_CACHE_SIZE=0")
		return nil
	case !ok:
		logger.Info("Session cache off", "reason", "the "+name+" store does not report writes made elsewhere")
		return nil
	}
	logger.Info("Session cache on", "size", cfg.SessionCacheSize, "storeType", name)
	return httpsession.NewCache(feed, cfg.SessionCacheSize)
}

// loginLimits builds the limits on sign-in starts (handlers.Deps says how
// they are checked): each client address's budget, kept in this process
// and, when the store is shared and can count (a RateCounter), also in the
// store, so that it holds across instances; and the instance's ceilings,
// always in this process: LOGIN_START_MAX_PER_SECOND for the first start
// of an address whose budget is whole, as many again for the others.
func loginLimits(cfg *config.Config, backend sessionstore.Backend, def sessionstore.Definition, logger *slog.Logger) (local *ratelimit.Memory, fresh, repeat, shared ratelimit.Limiter) {
	limit := ratelimit.PerMinute(cfg.LoginRatePerMinute, cfg.LoginRateBurst)
	local = ratelimit.NewMemory(limit, maxLimitedClients, nil)
	where := "per instance"
	if rc, ok := sessionstore.As[sessionstore.RateCounter](backend); ok && def.Shared {
		shared = ratelimit.Func(func(ctx context.Context, key string) (bool, time.Duration, error) {
			return rc.Allow(ctx, "login:"+key, limit.Every, limit.Burst)
		})
		where = "in the " + def.Name + " store, for every instance"
	}
	logger.Info("Login start limits", "perClientPerMinute", cfg.LoginRatePerMinute, "burst", cfg.LoginRateBurst,
		"counted", where, "instancePerSecond", cfg.LoginStartMaxPerSecond, "newAddressesPerSecond", cfg.LoginStartMaxPerSecond)
	ceiling := ratelimit.PerSecond(cfg.LoginStartMaxPerSecond)
	return local, ratelimit.NewMemory(ceiling, 1, nil), ratelimit.NewMemory(ceiling, 1, nil), shared
}

// maxLimitedClients bounds the client addresses an instance keeps counts
// for (about 100 bytes each).
const maxLimitedClients = 100_000
