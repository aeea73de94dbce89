// Package sessionstore is the contract every session backend meets: Store
// (bytes under opaque keys, with an expiry and an owner), the optional
// capabilities a backend may add (ChangeFeed, BatchSaver, Counter,
// ExpirySweeper, Backuper), and Definition, which is how a backend
// introduces itself to the program. It knows nothing of HTTP, cookies or
// records: that is package httpsession.
//
// The backends live in sub-packages (memstore, sqlitestore, ...), one small
// package each importing only this contract, so a project that needs only
// one of them deletes the others' folders and their lines in
// cmd/web/backends.go and internal/testbackends, and drops their drivers
// with go mod tidy.
package sessionstore

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"example.com/oauth-sessions/internal/envconfig"
)

// Store is a key/value backend for session records, with an index of the
// records by owner.
//
// Keys are opaque strings (the app stores a hash of the cookie's token, never
// the token itself). Data is opaque bytes (the app stores sealed records).
// Owners are opaque labels the record is filed under (the app files a login
// under hashes of its user, of its subject at the provider and of its
// provider session), or none for records that belong to no one (a login in
// progress).
//
// The contract, checked by storetest.Run against every backend:
//   - Find on a missing or expired key returns found == false and err == nil;
//     err is for system failures only (store unreachable, context done).
//   - Save replaces any existing record, its owners and its expiry. A record
//     whose expiry has passed is never returned, even if the backend has not
//     yet evicted it.
//   - Insert saves e only if no live record has its key, and reports
//     whether it did: the check and the write are one atomic step, so of
//     any number of concurrent Inserts of one key, on any number of app
//     instances, exactly one inserts (an expired record counts as absent).
//     It is how a one-time token (a logout token's jti) is accepted once.
//   - Touch records that the session was seen at seenAt and moves its expiry,
//     without rewriting the data; touching a missing key is not an error and
//     creates nothing.
//   - Delete on a missing key is not an error.
//   - Take reads and deletes a record in one atomic step: of any number of
//     concurrent Takes of one key, exactly one finds it. A record that has
//     expired is deleted too and not returned. It is how a one-time record
//     (a login in progress) is used exactly once.
//   - All yields every live record once, in no particular order, and stops at
//     the first error, which it yields.
//   - ByOwner returns the live records filed under one owner label without
//     scanning the others.
//
// All methods must be safe for concurrent use.
type Store interface {
	Find(ctx context.Context, key string) (e Entry, found bool, err error)
	Save(ctx context.Context, e Entry) error
	Insert(ctx context.Context, e Entry) (inserted bool, err error)
	Touch(ctx context.Context, key string, seenAt, expiresAt time.Time) error
	Delete(ctx context.Context, key string) error
	Take(ctx context.Context, key string) (e Entry, found bool, err error)
	All(ctx context.Context) iter.Seq2[Entry, error]
	ByOwner(ctx context.Context, owner string) ([]Entry, error)
}

// Entry is one record.
type Entry struct {
	Key    string
	Owners []string // at most a few, each at most 255 bytes
	Data   []byte
	// SeenAt is when the session was last used (as of the last Save or
	// Touch); ExpiresAt is when the store forgets it.
	SeenAt    time.Time
	ExpiresAt time.Time
}

// Backend is a Store with a lifecycle: the program pings it for /readyz and
// closes it at shutdown.
type Backend interface {
	Store
	// Ping reports whether the backend answers right now.
	Ping(ctx context.Context) error
	// Close releases connections and stops background cleanup.
	Close() error
}

// Definition introduces a backend to the program: the name SESSION_STORE
// gives it, what kind of store it is, and how to open it from its own
// environment variables. Each backend package exports one.
type Definition struct {
	// Name is the SESSION_STORE value ("sqlite"); Aliases are accepted too.
	Name    string
	Aliases []string
	// Persistent: sessions survive a restart of the app.
	Persistent bool
	// Shared: several app instances can use it at once.
	Shared bool
	// DevelopmentOnly backends are refused in production unless the
	// operator explicitly allows them.
	DevelopmentOnly bool
	// Configure reads the backend's variables through env (problems are
	// recorded there, each naming its variable) and returns how to open
	// it. It does not connect or touch files.
	Configure func(env *envconfig.Reader, p Params) Opener
}

// Params are the program-wide settings a backend may need.
type Params struct {
	// DataDir is where embedded stores keep their files by default.
	DataDir string
	// Follow asks for a change feed: the app caches sessions when the
	// backend can report writes made elsewhere.
	Follow bool
	Logger *slog.Logger
	// Tracer, when set, traces the backend's calls to its server with the
	// instrumentation its client library has (spans never carry keys or
	// data); nil when tracing is off.
	Tracer trace.TracerProvider
}

// Opener opens a configured backend. A server that does not answer yet is
// not an error: the backend reconnects, and Ping says when it is back.
type Opener func(ctx context.Context) (Backend, error)

// Lookup returns the definition called name (or aliased so).
func Lookup(defs []Definition, name string) (Definition, bool) {
	for _, d := range defs {
		if d.Name == name || slices.Contains(d.Aliases, name) {
			return d, true
		}
	}
	return Definition{}, false
}

// Names returns every name the definitions answer to, aliases included,
// in order; the first is the default.
func Names(defs []Definition) []string {
	var out []string
	for _, d := range defs {
		out = append(append(out, d.Name), d.Aliases...)
	}
	return out
}

// ErrFull marks a write the store refused for lack of room (a server at
// its memory ceiling with eviction off, a full disk). Reads still work; the
// app refuses new sign-ins until the store has room again.
var ErrFull = errors.New("session store is full")

// Wrapper is implemented by backends that wrap another (metrics): the
// optional capabilities of the wrapped one stay reachable through As.
type Wrapper interface {
	Unwrap() Backend
}

// As returns the first backend in b's chain of wrappers that implements T
// (a capability such as ChangeFeed), and whether there is one.
func As[T any](b Backend) (T, bool) {
	for b != nil {
		if t, ok := b.(T); ok {
			return t, true
		}
		w, ok := b.(Wrapper)
		if !ok {
			break
		}
		b = w.Unwrap()
	}
	var zero T
	return zero, false
}

// RateCounter is implemented by shared backends that can keep rate-limit
// state for every app instance at once, so a limit per client holds across
// instances behind a load balancer. Allow applies a token bucket to key: at
// most burst at once, then one every every; it answers whether this
// request may go on and, if not, how long until it may.
type RateCounter interface {
	Allow(ctx context.Context, key string, every time.Duration, burst int) (ok bool, retryAfter time.Duration, err error)
}

// ExpirySweeper is implemented by backends whose server does not expire
// records by itself (SQLite, a server without a TTL index): expired
// records are deleted by a periodic sweep, or on demand.
type ExpirySweeper interface {
	DeleteExpired(ctx context.Context) (int64, error)
}

// Backuper is implemented by embedded backends that can write a
// consistent copy of themselves while serving.
type Backuper interface {
	Backup(ctx context.Context, path string) error
}

// BatchSaver is implemented by backends that write many entries much faster
// in one call than one by one. Bulk copies (migrations) use it when present;
// it has Save's semantics for each entry.
type BatchSaver interface {
	SaveMany(ctx context.Context, entries []Entry) error
}

// Sweep calls deleteExpired every interval until stop is closed. Backends
// whose server does not expire records by itself run it in a goroutine;
// reads never depend on it (expiry is checked on read), it only frees space.
func Sweep(stop <-chan struct{}, every time.Duration, deleteExpired func(context.Context) (int64, error), logger *slog.Logger, store string) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			n, err := deleteExpired(ctx)
			cancel()
			if err != nil {
				logger.Warn("Session cleanup failed", "store", store, "error", err)
			} else if n > 0 {
				logger.Debug("Expired sessions removed", "store", store, "count", n)
			}
		}
	}
}

// Counter is implemented by backends that can count their live records
// cheaply (an indexed count, an in-memory length); metrics use it.
type Counter interface {
	CountLive(ctx context.Context) (int64, error)
}

// Invalidator is told which records changed, so that anything derived from
// them can be dropped. Implementations must be safe for concurrent use and
// must not block: backends call them from their read loops.
type Invalidator interface {
	// Invalidate reports that the record under key changed or is gone.
	Invalidate(key string)
	// InvalidateAll reports that any record may have changed (a reconnect,
	// a write whose keys are unknown).
	InvalidateAll()
}

// ChangeFeed is implemented by backends that can tell a process about every
// write to their records, including writes made elsewhere: another app
// instance, the `web sessions` command, the server expiring a key. It is
// what makes an in-process cache of sessions (Cache) safe; a backend
// without one gets no cache.
type ChangeFeed interface {
	// Follow makes the backend report changes to inv from now on: its own
	// writes after they are done and before they return, writes made
	// elsewhere as soon as it learns of them.
	Follow(inv Invalidator)
	// Synced reports whether every write finished before the call has been
	// reported to the followers, give or take the backend's documented
	// delay for writes made elsewhere (SQLite: 10 ms; a server: the time it
	// takes to push them). False means the backend cannot vouch for
	// that right now — disconnected, silent, or not set up — and nothing
	// cached may be trusted; when it comes back it has reported (or
	// flushed) whatever it missed.
	Synced(ctx context.Context) bool
}

// Followers is the list of Invalidators a ChangeFeed reports to; backends
// keep one and report through it.
type Followers struct {
	mu   sync.Mutex
	list []Invalidator
}

// Add registers inv.
func (f *Followers) Add(inv Invalidator) {
	f.mu.Lock()
	f.list = append(f.list, inv)
	f.mu.Unlock()
}

func (f *Followers) snapshot() []Invalidator {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.list
}

// Invalidate reports keys to every follower.
func (f *Followers) Invalidate(keys ...string) {
	for _, inv := range f.snapshot() {
		for _, k := range keys {
			inv.Invalidate(k)
		}
	}
}

// InvalidateAll reports to every follower that anything may have changed.
func (f *Followers) InvalidateAll() {
	for _, inv := range f.snapshot() {
		inv.InvalidateAll()
	}
}
