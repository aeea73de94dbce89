// Package sessionstore defines the contract every session backend meets and
// the pieces shared by all of them: opaque session tokens, sealed records and
// an adapter that turns any backend into a gorilla/sessions store.
//
// The backends themselves live in sub-packages (memstore, sqlitestore,
// redisstore, mongostore), one small package each, so a project that needs
// only one of them can delete the others and drop their drivers.
package sessionstore

import (
	"context"
	"iter"
	"time"
)

// Store is a key/value backend for session records.
//
// Keys are opaque strings (the app stores a hash of the cookie's token, never
// the token itself). Values are opaque bytes (the app stores sealed records).
//
// The contract, checked by storetest.Run against every backend:
//   - Find on a missing or expired key returns found == false and err == nil;
//     err is for system failures only (store unreachable, context done).
//   - Save replaces any existing record and its expiry. A record whose expiry
//     has passed must never be returned, even if the backend has not yet
//     evicted it.
//   - Touch moves a record's expiry without rewriting the data; touching a
//     missing key is not an error and creates nothing.
//   - Delete on a missing key is not an error.
//   - All yields every live record once; the order is unspecified. It stops
//     at the first error, which it yields.
//
// All methods must be safe for concurrent use.
type Store interface {
	Find(ctx context.Context, key string) (data []byte, expiresAt time.Time, found bool, err error)
	Save(ctx context.Context, key string, data []byte, expiresAt time.Time) error
	Touch(ctx context.Context, key string, expiresAt time.Time) error
	Delete(ctx context.Context, key string) error
	All(ctx context.Context) iter.Seq2[Entry, error]
}

// Entry is one live record, as yielded by Store.All.
type Entry struct {
	Key       string
	Data      []byte
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
