package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/example/oauth-sessions/internal/config"
	"github.com/example/oauth-sessions/internal/sessionstore"
	"github.com/example/oauth-sessions/internal/sessionstore/memstore"
	"github.com/example/oauth-sessions/internal/sessionstore/sqlitestore"
)

// openStore turns configuration into the selected backend. The store
// packages know nothing of config: this is where the two meet.
func openStore(ctx context.Context, cfg *config.Config, logger *slog.Logger) (sessionstore.Backend, error) {
	switch cfg.SessionStore {
	case config.StoreSQLite:
		logger.Info("Creating SQLite session store", "dbPath", cfg.SQLitePath, "table", cfg.SQLiteTable)
		s, err := sqlitestore.New(ctx, sqlitestore.Options{Path: cfg.SQLitePath, Table: cfg.SQLiteTable, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("config: SESSION_SQLITE_PATH: %w", err)
		}
		return s, nil
	case config.StoreMemory:
		logger.Warn("Creating memory session store: development only, every session is lost when the server stops")
		return memstore.New(time.Minute), nil
	}
	return nil, fmt.Errorf("config: SESSION_STORE: %q is not built in", cfg.SessionStore)
}
