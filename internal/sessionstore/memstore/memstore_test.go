package memstore_test

import (
	"testing"
	"time"

	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/memstore"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T, now func() time.Time) sessionstore.Backend {
			s := memstore.New(memstore.Options{Cleanup: time.Second, Now: now})
			t.Cleanup(func() { s.Close() })
			return s
		},
		// Every write goes through the one process: the feed sees them all.
		Capabilities: []storetest.Capability{storetest.ChangeFeed, storetest.Count},
	})
}

func BenchmarkStore(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	storetest.Bench(b, s)
}
