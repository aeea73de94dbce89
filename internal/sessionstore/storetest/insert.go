package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/sessionstore"
)

// testInsert: Insert writes only where no live record has the key, with
// its owners; an expired record counts as absent.
func testInsert(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.s
	first := sessionstore.Entry{Key: "ins", Data: []byte("first"), SeenAt: e.now(), ExpiresAt: e.now().Add(time.Minute), Owners: []string{"ins-owner"}}
	if ok, err := s.Insert(ctx(t), first); err != nil || !ok {
		t.Fatalf("Insert of a new key = %v, %v; want inserted", ok, err)
	}
	expectData(t, s, "ins", []byte("first"))
	if got := owned(t, s, "ins-owner"); got != "ins" {
		t.Fatalf("ByOwner after Insert = %q, want the inserted record", got)
	}
	second := first
	second.Data = []byte("second")
	if ok, err := s.Insert(ctx(t), second); err != nil || ok {
		t.Fatalf("Insert over a live record = %v, %v; want refused", ok, err)
	}
	expectData(t, s, "ins", []byte("first"))

	// Expired by the store's clock, whatever the server still keeps.
	e.clock.Advance(2 * time.Minute)
	third := sessionstore.Entry{Key: "ins", Data: []byte("third"), SeenAt: e.now(), ExpiresAt: e.now().Add(time.Minute)}
	if ok, err := s.Insert(ctx(t), third); err != nil || !ok {
		t.Fatalf("Insert over an expired record = %v, %v; want inserted", ok, err)
	}
	expectData(t, s, "ins", []byte("third"))
}

// testInsertOnce: of many concurrent Inserts of one key, through every
// handle the backend has (another app instance's), exactly one inserts:
// a one-time token is accepted once.
func testInsertOnce(t *testing.T, h Harness) {
	e := newEnv(t, h)
	handles := []sessionstore.Store{e.s}
	if h.Other != nil {
		handles = append(handles, h.Other(t, e.s))
	}
	const inserters, rounds = 20, 10
	for round := range rounds {
		key := fmt.Sprint("insert-once-", round)
		var won atomic.Int64
		var winner atomic.Value
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range inserters {
			wg.Go(func() {
				<-start
				data := []byte(fmt.Sprint("inserter-", i))
				ok, err := handles[i%len(handles)].Insert(ctx(t), sessionstore.Entry{Key: key, Data: data, SeenAt: e.now(), ExpiresAt: e.now().Add(time.Hour)})
				if err != nil {
					t.Errorf("Insert: %v", err)
					return
				}
				if ok {
					won.Add(1)
					winner.Store(data)
				}
			})
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("round %d: %d of %d concurrent Inserts (over %d handles) inserted, want exactly 1", round, won.Load(), inserters, len(handles))
		}
		if got, _, _ := find(t, e.s, key); !bytes.Equal(got, winner.Load().([]byte)) {
			t.Fatalf("round %d: the record holds %q, not the winner's %q", round, got, winner.Load())
		}
	}
}
