// Package memstore keeps sessions in the process's memory. It is for
// development only: everything is lost when the process stops, and nothing
// is shared between instances.
package memstore

import (
	"context"
	"iter"
	"sync"
	"time"

	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/sessionstore"
)

var (
	_ sessionstore.Backend    = (*Store)(nil)
	_ sessionstore.ChangeFeed = (*Store)(nil)
	_ sessionstore.Counter    = (*Store)(nil)
)

// Definition introduces the memory store: SESSION_STORE=memory. It reads no
// variables.
func Definition() sessionstore.Definition {
	return sessionstore.Definition{
		Name:            "memory",
		DevelopmentOnly: true,
		Configure: func(_ *envconfig.Reader, p sessionstore.Params) sessionstore.Opener {
			return func(context.Context) (sessionstore.Backend, error) {
				p.Logger.Warn("Creating memory session store: development only, every session is lost when the server stops")
				return New(Options{Cleanup: time.Minute}), nil
			}
		},
	}
}

// Options configures a Store.
type Options struct {
	// Cleanup is how often expired items are dropped (never when zero).
	Cleanup time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Store is an in-memory sessionstore.Backend.
type Store struct {
	mu      sync.RWMutex
	items   map[string]sessionstore.Entry
	byOwner map[string]map[string]struct{}
	stop    chan struct{}
	done    chan struct{}
	now     func() time.Time

	followers sessionstore.Followers
}

// New returns an empty store.
func New(opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{items: map[string]sessionstore.Entry{}, byOwner: map[string]map[string]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{}), now: opts.Now}
	go s.sweep(opts.Cleanup)
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
		case <-t.C:
			now := s.now()
			var gone []string
			s.mu.Lock()
			for k, e := range s.items {
				if !now.Before(e.ExpiresAt) {
					s.remove(k)
					gone = append(gone, k)
				}
			}
			s.mu.Unlock()
			s.changed(gone...)
		}
	}
}

// remove deletes key and its index entry; s.mu must be held.
func (s *Store) remove(key string) {
	e, ok := s.items[key]
	if !ok {
		return
	}
	delete(s.items, key)
	for _, o := range e.Owners {
		if set := s.byOwner[o]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(s.byOwner, o)
			}
		}
	}
}

// copyOf returns e with its own copies of the data and the owners, so
// callers and the store never share a slice.
func copyOf(e sessionstore.Entry) sessionstore.Entry {
	e.Data = append([]byte(nil), e.Data...)
	e.Owners = append([]string(nil), e.Owners...)
	return e
}

// Find implements sessionstore.Store.
func (s *Store) Find(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Entry{}, false, err
	}
	s.mu.RLock()
	e, ok := s.items[key]
	s.mu.RUnlock()
	if !ok || !s.now().Before(e.ExpiresAt) {
		return sessionstore.Entry{}, false, nil
	}
	return copyOf(e), true, nil
}

// Save implements sessionstore.Store.
func (s *Store) Save(ctx context.Context, e sessionstore.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.changed(e.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(e)
	return nil
}

// put replaces the record under e's key and its owners; s.mu is held.
func (s *Store) put(e sessionstore.Entry) {
	s.remove(e.Key)
	s.items[e.Key] = copyOf(e)
	for _, o := range e.Owners {
		if s.byOwner[o] == nil {
			s.byOwner[o] = map[string]struct{}{}
		}
		s.byOwner[o][e.Key] = struct{}{}
	}
}

// Insert implements sessionstore.Store: Save, unless a live record has
// e's key; the check and the write are one step under the store's lock.
func (s *Store) Insert(ctx context.Context, e sessionstore.Entry) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	if old, ok := s.items[e.Key]; ok && s.now().Before(old.ExpiresAt) {
		s.mu.Unlock()
		return false, nil
	}
	s.put(e)
	s.mu.Unlock()
	s.changed(e.Key)
	return true, nil
}

// Touch implements sessionstore.Store.
func (s *Store) Touch(ctx context.Context, key string, seenAt, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.changed(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[key]; ok && s.now().Before(e.ExpiresAt) {
		e.SeenAt, e.ExpiresAt = seenAt, expiresAt
		s.items[key] = e
	}
	return nil
}

// Delete implements sessionstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	s.remove(key)
	s.mu.Unlock()
	s.changed(key)
	return nil
}

// Take implements sessionstore.Store under the store's lock.
func (s *Store) Take(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Entry{}, false, err
	}
	s.mu.Lock()
	e, ok := s.items[key]
	s.remove(key)
	s.mu.Unlock()
	if ok {
		s.changed(key)
	}
	if !ok || !s.now().Before(e.ExpiresAt) {
		return sessionstore.Entry{}, false, nil
	}
	return e, true, nil
}

// Follow implements sessionstore.ChangeFeed. Every write to this store goes
// through this process, so reporting each one as it happens is complete.
func (s *Store) Follow(inv sessionstore.Invalidator) { s.followers.Add(inv) }

// Synced implements sessionstore.ChangeFeed: writes are reported before
// they return, so the followers are always up to date.
func (s *Store) Synced(context.Context) bool { return true }

// changed reports keys to the followers, after the store's lock is released.
func (s *Store) changed(keys ...string) { s.followers.Invalidate(keys...) }

// All implements sessionstore.Store. It works on a snapshot, so callers may
// write to the store while iterating.
func (s *Store) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	return func(yield func(sessionstore.Entry, error) bool) {
		now := s.now()
		s.mu.RLock()
		snap := make([]sessionstore.Entry, 0, len(s.items))
		for _, e := range s.items {
			if now.Before(e.ExpiresAt) {
				snap = append(snap, copyOf(e))
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

// ByOwner implements sessionstore.Store.
func (s *Store) ByOwner(ctx context.Context, owner string) ([]sessionstore.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []sessionstore.Entry
	for k := range s.byOwner[owner] {
		if e := s.items[k]; now.Before(e.ExpiresAt) {
			out = append(out, copyOf(e))
		}
	}
	return out, nil
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

// Len returns how many records the store holds, expired or not.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// CountLive implements sessionstore.Counter.
func (s *Store) CountLive(context.Context) (int64, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for _, e := range s.items {
		if now.Before(e.ExpiresAt) {
			n++
		}
	}
	return n, nil
}
