package sqlitestore_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/sqlitestore"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
)

func open(t *testing.T, opts sqlitestore.Options) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.New(t.Context(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T, now func() time.Time) sessionstore.Backend {
			return open(t, sqlitestore.Options{Path: filepath.Join(t.TempDir(), "s.db"), Table: "sessions", Now: now})
		},
		Capabilities: []storetest.Capability{storetest.ChangeFeed, storetest.Count, storetest.SweepExpired,
			storetest.Backup, storetest.Restart, storetest.OtherHandle},
		// An embedded store's "restart" is the process closing and
		// reopening the same file.
		Restart: func(t *testing.T, old sessionstore.Backend) sessionstore.Backend {
			s := old.(*sqlitestore.Store)
			path := s.Path()
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return open(t, sqlitestore.Options{Path: path, Table: "sessions"})
		},
		// Another process on the same file (the CLI, a second server).
		Other: func(t *testing.T, s sessionstore.Backend) sessionstore.Store {
			return open(t, sqlitestore.Options{Path: s.(*sqlitestore.Store).Path(), Table: "sessions"})
		},
	})
}

func TestFileModeIsOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "sessions.db")
	s := open(t, sqlitestore.Options{Path: path, Table: "sessions"})
	if err := s.Save(t.Context(), sessionstore.Entry{Key: "k", Data: []byte("v"), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s mode = %o, want 600", filepath.Base(p), m)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("data folder mode = %o, want 700", fi.Mode().Perm())
	}
}

func TestRejectsBadTableName(t *testing.T) {
	_, err := sqlitestore.New(t.Context(), sqlitestore.Options{Path: filepath.Join(t.TempDir(), "s.db"), Table: "x; DROP TABLE y"})
	if err == nil {
		t.Fatal("want an error for a table name that is not an identifier")
	}
	env := envconfig.New(func(k string) string { return map[string]string{"SESSION_SQLITE_TABLE": "drop table;"}[k] })
	sqlitestore.Definition().Configure(env, sessionstore.Params{DataDir: t.TempDir()})
	if err := env.Err(); err == nil || !strings.HasPrefix(err.Error(), "config: SESSION_SQLITE_TABLE: ") || !strings.Contains(err.Error(), "plain table name") {
		t.Fatalf("SESSION_SQLITE_TABLE=\"drop table;\": %v; want one line naming the variable", err)
	}
}

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	env := envconfig.New(func(string) string { return "" })
	open := sqlitestore.Definition().Configure(env, sessionstore.Params{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	s, err := open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.(*sqlitestore.Store).Path(); got != filepath.Join(dir, "sessions.db") {
		t.Fatalf("default path = %s, want DATA_DIR/sessions.db", got)
	}
}

func TestCleanupDeletesExpiredInBatches(t *testing.T) {
	s := open(t, sqlitestore.Options{Path: filepath.Join(t.TempDir(), "s.db"), Table: "custom_sessions", CleanupBatch: 7, CleanupInterval: time.Hour})
	ctx := context.Background()
	for i := range 50 {
		exp := time.Now().Add(-time.Minute)
		if i%5 == 0 {
			exp = time.Now().Add(time.Hour)
		}
		if err := s.Save(ctx, sessionstore.Entry{Key: string(rune('a'+i%26)) + string(rune('A'+i/26)), Data: []byte("v"), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 40 {
		t.Fatalf("DeleteExpired removed %d rows, want 40", n)
	}
	live := 0
	for _, err := range s.All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		live++
	}
	if live != 10 {
		t.Fatalf("%d live rows after cleanup, want 10", live)
	}
}

func BenchmarkStore(b *testing.B) {
	s, err := sqlitestore.New(context.Background(), sqlitestore.Options{Path: filepath.Join(b.TempDir(), "s.db"), Table: "sessions"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Bench(b, s)
}
