package memstore_test

import (
	"testing"
	"time"

	"github.com/example/oauth-sessions/internal/sessionstore"
	"github.com/example/oauth-sessions/internal/sessionstore/memstore"
	"github.com/example/oauth-sessions/internal/sessionstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) sessionstore.Backend {
			s := memstore.New(time.Second)
			t.Cleanup(func() { s.Close() })
			return s
		},
		Feed: true, // every write goes through the one process
	})
}

func BenchmarkStore(b *testing.B) {
	s := memstore.New(0)
	defer s.Close()
	storetest.Bench(b, s)
}
