// Package memstore keeps sessions in the process's memory. It is for
// development only: everything is lost when the process stops, and nothing
// is shared between instances.
package memstore

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/example/oauth-sessions/internal/sessionstore"
)

type item struct {
	data      []byte
	expiresAt time.Time
}

// Store is an in-memory sessionstore.Backend.
type Store struct {
	mu    sync.RWMutex
	items map[string]item
	stop  chan struct{}
	done  chan struct{}
}

// New returns an empty store that sweeps expired items every cleanupInterval
// (no sweeping when it is zero or less).
func New(cleanupInterval time.Duration) *Store {
	s := &Store{items: make(map[string]item), stop: make(chan struct{}), done: make(chan struct{})}
	go s.sweep(cleanupInterval)
	return s
}

func (s *Store) sweep(every time.Duration) {
	defer close(s.done)
	if every <= 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			for k, it := range s.items {
				if !now.Before(it.expiresAt) {
					delete(s.items, k)
				}
			}
			s.mu.Unlock()
		}
	}
}

// Find implements sessionstore.Store.
func (s *Store) Find(ctx context.Context, key string) ([]byte, time.Time, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, false, err
	}
	s.mu.RLock()
	it, ok := s.items[key]
	s.mu.RUnlock()
	if !ok || !time.Now().Before(it.expiresAt) {
		return nil, time.Time{}, false, nil
	}
	// Copy out so a caller cannot change what is stored.
	return append([]byte(nil), it.data...), it.expiresAt, true, nil
}

// Save implements sessionstore.Store.
func (s *Store) Save(ctx context.Context, key string, data []byte, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.items[key] = item{data: append([]byte(nil), data...), expiresAt: expiresAt}
	s.mu.Unlock()
	return nil
}

// Touch implements sessionstore.Store.
func (s *Store) Touch(ctx context.Context, key string, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if it, ok := s.items[key]; ok && time.Now().Before(it.expiresAt) {
		it.expiresAt = expiresAt
		s.items[key] = it
	}
	return nil
}

// Delete implements sessionstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.items, key)
	s.mu.Unlock()
	return nil
}

// All implements sessionstore.Store. It works on a snapshot, so callers may
// write to the store while iterating.
func (s *Store) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	return func(yield func(sessionstore.Entry, error) bool) {
		now := time.Now()
		s.mu.RLock()
		snap := make([]sessionstore.Entry, 0, len(s.items))
		for k, it := range s.items {
			if now.Before(it.expiresAt) {
				snap = append(snap, sessionstore.Entry{Key: k, Data: append([]byte(nil), it.data...), ExpiresAt: it.expiresAt})
			}
		}
		s.mu.RUnlock()
		for _, e := range snap {
			if err := ctx.Err(); err != nil {
				yield(sessionstore.Entry{}, err)
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// Ping implements sessionstore.Backend; memory always answers.
func (s *Store) Ping(context.Context) error { return nil }

// Close implements sessionstore.Backend.
func (s *Store) Close() error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return nil
}
