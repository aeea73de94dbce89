// Package testbackends lists, one line each, how the program's own tests
// (cmd/web, e2e, bench) run each built-in backend; cmd/web/backends.go
// lists the backends themselves. To drop a backend, delete its line here
// too.
package testbackends

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	// BEGIN remove:mongo
	"example.com/oauth-sessions/internal/sessionstore/mongostore/mongotest"
	// END remove:mongo
	// BEGIN remove:redis
	"example.com/oauth-sessions/internal/sessionstore/redisstore/redistest"
	// END remove:redis
	"example.com/oauth-sessions/internal/sessionstore/storetest"
)

// All returns every built-in backend's test servers, in the order of
// cmd/web/backends.go.
func All() []storetest.Server {
	return []storetest.Server{
		sqlite(),
		// BEGIN remove:redis
		redistest.Server(),
		// END remove:redis
		// BEGIN remove:mongo
		mongotest.Server(),
		// END remove:mongo
		{Name: "memory", Env: func(testing.TB) map[string]string { return map[string]string{"SESSION_STORE": "memory"} }},
	}
}

// sqlite needs no server: a file of its own per call.
func sqlite() storetest.Server {
	return storetest.Server{
		Name: "sqlite",
		Env: func(t testing.TB) map[string]string {
			return map[string]string{"SESSION_STORE": "sqlite", "SESSION_SQLITE_PATH": filepath.Join(t.TempDir(), "sessions.db")}
		},
		Dump: func(t testing.TB, env map[string]string) []byte {
			var out []byte
			for _, suffix := range []string{"", "-wal"} { // the file as a copy of it has it
				b, err := os.ReadFile(env["SESSION_SQLITE_PATH"] + suffix)
				if err != nil && suffix == "" {
					t.Fatal(fmt.Errorf("read the SQLite file: %w", err))
				}
				out = append(out, b...)
			}
			return out
		},
	}
}

// Named returns the test servers of the backend called name.
func Named(t testing.TB, name string) storetest.Server {
	t.Helper()
	for _, s := range All() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no test backend %q", name)
	return storetest.Server{}
}
