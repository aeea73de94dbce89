// Command devidp runs the development OpenID Connect provider on its own:
// a login form where anyone signs in as anyone. The browser tests use it as
// the provider the app signs in against, and it lets you try the app with
// GOOGLE_ISSUER_URL pointing at a provider you control. Never expose it.
//
//	devidp -addr 127.0.0.1:9000 -client-id demo -client-secret demo-secret
//
// (-addr 127.0.0.1:0 picks a free port; the "Server listening" line names it.
// -access-token-ttl and -refresh-token-ttl set the token lifetimes, short
// ones to try refreshing: -access-token-ttl 30s -refresh-token-ttl 10m.
// A login gets a refresh token when it asks for scope offline_access with
// prompt=consent; the rotation state is this process's alone.)
//
// then run the app with GOOGLE_ISSUER_URL=http://127.0.0.1:9000,
// GOOGLE_CLIENT_ID=demo and GOOGLE_CLIENT_SECRET=demo-secret.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.com/oauth-sessions/internal/devprovider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devidp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devidp", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "address to listen on")
	issuer := fs.String("issuer", "", "public issuer URL (default http://ADDR)")
	clientID := fs.String("client-id", "demo-client", "the one registered client's id")
	clientSecret := fs.String("client-secret", "demo-secret", "the client's secret")
	accessTTL := fs.Duration("access-token-ttl", 5*time.Minute, "how long an access token is good for")
	refreshTTL := fs.Duration("refresh-token-ttl", 24*time.Hour, "how long a refresh token is good for (each refresh issues a new one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *accessTTL <= 0 || *refreshTTL <= 0 {
		return errors.New("-access-token-ttl and -refresh-token-ttl must be positive")
	}
	// Listen first: with port 0 (-addr 127.0.0.1:0) the issuer names the
	// port the system picked, and the log line says where.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	if *issuer == "" {
		*issuer = "http://" + ln.Addr().String()
	}
	p, err := devprovider.New(devprovider.Config{Issuer: *issuer, ClientID: *clientID, ClientSecret: *clientSecret,
		AccessTokenTTL: *accessTTL, RefreshTokenTTL: *refreshTTL})
	if err != nil {
		return fmt.Errorf("start provider: %w", err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	slog.New(slog.NewTextHandler(stdout, nil)).Info("Server listening", "addr", ln.Addr().String(), "issuer", *issuer,
		"access_token_ttl", *accessTTL, "refresh_token_ttl", *refreshTTL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
