// Command web is the app: an Echo server with sign-in through Google,
// GitHub and any OpenID Connect provider, whose sessions live in the store
// SESSION_STORE names.
//
//	web                serve (the default)
//	web healthcheck    exit 0 if the server on PORT answers /healthz
//	web sessions ...   list, revoke, purge, stats, migrate (web sessions for help)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/joho/godotenv"

	oauthsessions "example.com/oauth-sessions"
	"example.com/oauth-sessions/internal/config"
	"example.com/oauth-sessions/internal/handlers"
	"example.com/oauth-sessions/internal/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal a second one ends the process at once (an
	// impatient Ctrl-C during the drain).
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run is the whole program; everything it takes from the OS comes in as a
// parameter so tests can start it in-process with their own environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("web", flag.ContinueOnError)
	fset.SetOutput(stderr)
	envFile := fset.String("env-file", ".env", "file of KEY=value lines read before the environment (the environment wins)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	getenv, err := withEnvFile(*envFile, getenv)
	if err != nil {
		return err
	}
	switch cmd := fset.Arg(0); cmd {
	case "", "serve":
		return serve(ctx, getenv, stdout)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "sessions":
		return sessionsCmd(ctx, fset.Args()[1:], getenv, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (commands: serve, healthcheck, sessions)", cmd)
	}
}

// withEnvFile layers a .env file under the real environment, if it exists.
func withEnvFile(path string, getenv func(string) string) (func(string) string, error) {
	vals, err := godotenv.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return getenv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vals[k]
	}, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	started := time.Now()
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stdout)

	secrets, err := sessionSecrets(cfg, logger)
	if err != nil {
		return err
	}
	codec, err := newCodec(cfg, secrets)
	if err != nil {
		return err
	}

	logger.Info("Initializing session store", "storeType", cfg.SessionStore, "environment", cfg.Env)
	backend, def, err := openStore(ctx, cfg, getenv, cfg.SessionStore, logger)
	if err != nil {
		return err
	}
	m := metrics.New()
	backend = m.Store(def.Name, backend)
	cache := openCache(cfg, backend, def.Name, logger)
	if cache != nil {
		m.Cache(cache)
	}
	defer func() {
		if err := backend.Close(); err != nil {
			logger.Warn("Closing session store failed", "error", err)
		}
	}()
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := backend.Ping(pingCtx); err != nil {
		logger.Error("Session store is not reachable yet; serving 503 on session routes until it answers",
			"storeType", def.Name, "error", err)
	}
	cancel()

	tmpl, err := template.ParseFS(oauthsessions.Files, "web/templates/*.html")
	if err != nil {
		return fmt.Errorf("parse templates: %w", err)
	}
	static, err := fs.Sub(oauthsessions.Files, "static")
	if err != nil {
		return fmt.Errorf("static files: %w", err)
	}

	loginLimit, ceiling := loginLimits(cfg, backend, def, logger)
	logoutLimit, logoutCeiling := logoutLimits()
	deps := handlers.Deps{
		LoginLimit: loginLimit, LoginCeiling: ceiling, LogoutLimit: logoutLimit, LogoutCeiling: logoutCeiling,
		Logger: logger, Backend: backend, Cache: cache, StoreName: def.Name, StorePersistent: def.Persistent, StartedAt: started,
		Codec: codec, Metrics: m,
		Production: cfg.Production(), BaseURL: cfg.BaseURL, TrustProxy: cfg.TrustProxy,
		SessionTTL: cfg.SessionTTL, IdleTimeout: cfg.SessionIdleTimeout, TouchAfter: cfg.SessionTouchAfter,
		AllowedDomains: cfg.AllowedEmailDomains, Templates: tmpl, Static: static,
		Stopping: ctx.Done(),
	}
	deps.Providers, deps.DevProvider, err = signInProviders(cfg, secrets[0])
	if err != nil {
		return err
	}
	if deps.DevProvider != nil {
		deps.DevProviderPath = devProviderPath
		logger.Warn("No sign-in provider configured: the home page offers the built-in development login (never available in production)")
	}
	for _, p := range deps.Providers {
		logger.Info("Sign-in provider", "provider", p.Name(), "label", p.Label(), "issuer", p.Issuer(),
			"callback", cfg.BaseURL.String()+"/api/auth/"+p.Name()+"/callback")
	}

	srv := &http.Server{
		Addr:              net.JoinHostPort("", strconv.Itoa(cfg.Port)),
		Handler:           handlers.New(deps),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		// Short enough that idle clients give their places back soon;
		// longer than a proxy's own upstream keep-alive (deploy/nginx.conf:
		// 20s), so the proxy is the one that closes them.
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: 32 << 10, // a larger header gets 431
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("config: PORT: cannot listen on %s: %w", srv.Addr, err)
	}
	ln = limitConnections(srv, ln, cfg.MaxConnections)
	logger.Info("Server listening", "addr", ln.Addr().String(), "baseURL", cfg.BaseURL.String(), "storeType", def.Name,
		"environment", cfg.Env, "maxConnections", cfg.MaxConnections)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if cfg.ShutdownDrain > 0 {
		// Still serving, but /readyz says 503 and responses close their
		// connections, so load balancers move away before the listener
		// closes and nothing they send is refused.
		logger.Info("Shutting down: draining (not ready, still serving)", "drain", cfg.ShutdownDrain)
		select {
		case <-time.After(cfg.ShutdownDrain):
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	logger.Info("Shutting down: finishing in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("Server stopped")
	return nil
}

// healthcheck asks the local server's /healthz; the container image has no
// shell tools, so the binary checks itself.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	port := getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", res.StatusCode)
	}
	return nil
}
