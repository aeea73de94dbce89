// Command web is the app: an Echo server with sign-in through the OAuth
// and OpenID Connect providers it is configured for (providers.go), whose
// sessions live in the store SESSION_STORE names.
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
	// BEGIN remove:notes
	"path/filepath"
	// END remove:notes
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/joho/godotenv"
	"go.opentelemetry.io/otel/trace"

	oauthsessions "example.com/oauth-sessions"
	"example.com/oauth-sessions/internal/apiproxy"
	"example.com/oauth-sessions/internal/config"
	"example.com/oauth-sessions/internal/handlers"
	"example.com/oauth-sessions/internal/metrics"
	"example.com/oauth-sessions/internal/telemetry"
	// BEGIN remove:notes
	"example.com/oauth-sessions/internal/notes"
	// END remove:notes
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal a second one ends the process at once (an
	// impatient Ctrl-C during the drain).
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run is the whole program; everything it takes from the OS comes in as a
// parameter so tests can start it in-process with their own environment.
// ln, when not nil, is the listener to serve on instead of the one
// LISTEN_ADDR or PORT describe: a test opens 127.0.0.1:0 and knows the
// address before the program starts, with no free port to guess.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ln net.Listener) error {
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
		return serve(ctx, getenv, stdout, ln)
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
	return newLoggerAt(cfg, cfg.LogLevel, w)
}

// newLoggerAt is newLogger at another level.
func newLoggerAt(cfg *config.Config, levelName string, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(levelName))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: clipAttr}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// maxLogValue bounds every value in a log line: errors can carry what a
// provider sent (an error page of megabytes), and a line must stay a line.
const maxLogValue = 1024

// clipAttr shortens string and error values longer than maxLogValue,
// saying how long they were.
func clipAttr(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch v := a.Value.Resolve(); {
	case v.Kind() == slog.KindString:
		s = v.String()
	case v.Kind() == slog.KindAny:
		err, ok := v.Any().(error)
		if !ok {
			return a
		}
		s = err.Error()
	default:
		return a
	}
	if len(s) <= maxLogValue {
		return a
	}
	cut := maxLogValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return slog.String(a.Key, fmt.Sprintf("%s… (%d bytes in all)", s[:cut], len(s)))
}

// clockKey carries, in the context run is given, the clock the handlers
// read (session times, token expiry) instead of time.Now: tests move it
// rather than sleep. The program itself never sets it.
type clockKey struct{}

func clockOf(ctx context.Context) func() time.Time {
	if now, ok := ctx.Value(clockKey{}).(func() time.Time); ok {
		return now
	}
	return time.Now
}

func serve(ctx context.Context, getenv func(string) string, stdout io.Writer, ln net.Listener) error {
	started := time.Now()
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stdout)
	// Listen first: with port 0 the base URL (and so every provider's
	// callback) names the port the system picked.
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return fmt.Errorf("config: LISTEN_ADDR: cannot listen on %s: %w", cfg.ListenAddr, err)
		}
	}
	defer ln.Close() // the server closes it too; this covers the failures before it serves
	cfg.Listening(ln.Addr())

	secrets, err := sessionSecrets(cfg, logger)
	if err != nil {
		return err
	}
	codec, err := newCodec(cfg, secrets)
	if err != nil {
		return err
	}

	tracing, err := telemetry.New(ctx, telemetry.Config{Endpoint: cfg.OTELEndpoint, Protocol: cfg.OTELProtocol, Headers: cfg.OTELHeaders,
		Sampler: cfg.OTELSampler, SamplerArg: cfg.OTELSamplerArg, ServiceName: cfg.OTELServiceName, Resource: cfg.OTELResource})
	if err != nil {
		return err
	}
	defer func() {
		// Last: the spans of the shutdown itself go out too.
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(flushCtx); err != nil {
			logger.Warn("Flushing traces failed", "error", err)
		}
	}()
	var tracer trace.TracerProvider // nil: tracing off, nothing wrapped
	if tracing.Enabled() {
		tracer = tracing.Provider()
		logger.Info("Tracing on", "endpoint", cfg.OTELEndpoint, "protocol", cfg.OTELProtocol, "sampler", cfg.OTELSampler,
			"samplerArg", cfg.OTELSamplerArg, "serviceName", cfg.OTELServiceName)
	}

	logger.Info("Initializing session store", "storeType", cfg.SessionStore, "environment", cfg.Env)
	backend, def, err := openStore(ctx, cfg, getenv, cfg.SessionStore, logger, tracer)
	if err != nil {
		return err
	}
	m := metrics.New()
	// Traced outside the metrics, so that a scrape's ping makes no span.
	backend = telemetry.Store(m.Store(def.Name, backend), tracer, def.Name)
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
	// BEGIN remove:notes

	// The app's own data: a database of its own, whatever the session store.
	appDB := filepath.Join(cfg.DataDir, "app.db")
	noteStore, err := notes.OpenSQLite(ctx, appDB, time.Now)
	if err != nil {
		return fmt.Errorf("open app database: %w", err)
	}
	defer func() {
		if err := noteStore.Close(); err != nil {
			logger.Warn("Closing app database failed", "error", err)
		}
	}()
	logger.Info("Opened app database", "dbPath", appDB)
	// END remove:notes

	tmpl, err := template.ParseFS(oauthsessions.Files, "web/templates/*.html")
	if err != nil {
		return fmt.Errorf("parse templates: %w", err)
	}
	static, err := fs.Sub(oauthsessions.Files, "static")
	if err != nil {
		return fmt.Errorf("static files: %w", err)
	}

	loginLocal, loginFresh, loginCeiling, loginShared := loginLimits(cfg, backend, def, logger)
	logoutFailures, logoutVerifications := logoutLimits()
	deps := handlers.Deps{
		AppName:          cfg.AppName,
		PersistentStores: persistentStoreNames(),
		LoginLocal:       loginLocal, LoginFreshCeiling: loginFresh, LoginCeiling: loginCeiling, LoginShared: loginShared, LogoutFailures: logoutFailures, LogoutVerifications: logoutVerifications,
		Logger: logger, Backend: backend, Cache: cache, StoreName: def.Name, StorePersistent: def.Persistent, StartedAt: started,
		Codec: codec, Metrics: m,
		// BEGIN remove:notes
		Notes: noteStore,
		// END remove:notes
		Production: cfg.Production(), BaseURL: cfg.BaseURL, TrustProxy: cfg.TrustProxy,
		SessionTTL: cfg.SessionTTL, IdleTimeout: cfg.SessionIdleTimeout, TouchAfter: cfg.SessionTouchAfter,
		AllowedDomains: cfg.AllowedEmailDomains, Templates: tmpl, Static: static,
		Stopping: ctx.Done(), Now: clockOf(ctx), Traced: tracing.Enabled(),
	}
	if len(cfg.APIProxy) > 0 {
		deps.APIProxy = apiproxy.New(cfg.APIProxy, apiproxy.Options{Logger: logger, Transport: tracing.Transport(apiproxy.NewTransport(0))})
		for _, u := range cfg.APIProxy {
			logger.Info("Remote API", "name", u.Name, "path", apiproxy.Mount+u.Name+"/", "base", u.Base.String())
		}
	}
	deps.Providers, deps.DevProvider, err = signInProviders(cfg, secrets[0], tracing.Transport)
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
		Handler: tracing.Handler(handlers.New(deps), "/healthz", "/readyz", "/metrics"),
		// A client trickling its request holds its place this long at most:
		// 3s for the headers (they come in one packet from any real
		// client), 10s for the whole request (the largest body the app
		// takes, 64 KB, at 6.4 KB/s).
		ReadHeaderTimeout: 3 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		// Short enough that idle clients give their places back soon;
		// longer than a proxy's own upstream keep-alive should be (20s in
		// the compose file's nginx), so the proxy is the one that closes
		// them.
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: 32 << 10, // a larger header gets 431
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	perAddr := cfg.MaxConnectionsPerAddress
	if cfg.TrustProxy {
		perAddr = 0 // every connection comes from the proxy, which limits its clients
	}
	limited := limitConnections(srv, ln, cfg.MaxConnections, perAddr)
	m.ConnectionsRefused(func() uint64 { return uint64(limited.refused.Load()) })
	ln = limited
	// The line that says the server is ready, and where: tests and scripts
	// that start it with port 0 read the address from it, so it is written
	// whatever LOG_LEVEL says.
	newLoggerAt(cfg, "info", stdout).Info("Server listening", "addr", ln.Addr().String(), "baseURL", cfg.BaseURL.String(), "storeType", def.Name,
		"environment", cfg.Env, "maxConnections", cfg.MaxConnections, "maxConnectionsPerAddress", perAddr)

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
// shell tools, so the binary checks itself. It reads LISTEN_ADDR and PORT
// as the server does.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	host, port := "127.0.0.1", getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if addr := getenv("LISTEN_ADDR"); addr != "" {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("healthcheck: LISTEN_ADDR: %w", err)
		}
		port = p
		if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
			host = h
		}
	}
	if port == "0" {
		return errors.New("healthcheck: the server picks its port (port 0); check the address its log names")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
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
