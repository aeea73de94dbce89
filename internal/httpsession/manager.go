// Package httpsession is the HTTP session layer over any session store
// backend: the cookie holds a signed opaque token, the backend holds a
// sealed Record under the token's hash. Manager makes it a gorilla/sessions
// store, so handlers get their sessions from echo-contrib's session
// middleware (session.Get(name, c)); Cache keeps validated sessions in
// memory where the backend's change feed makes that safe.
//
// Backends (package sessionstore and its sub-packages) know bytes, keys,
// expiry and owners; cookies, records and gorilla live here.
package httpsession

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/sessions"

	"example.com/oauth-sessions/internal/sessionstore"
)

// ErrUnavailable marks errors caused by the backend not answering. Handlers
// turn it into 503; every other session problem means "no session".
var ErrUnavailable = errors.New("session store unavailable")

// Kind is one kind of session, chosen by its cookie's name. A record is only
// ever read as the kind that wrote it, so a login-flow cookie can never act
// as a login.
type Kind struct {
	// Name is written into every record: KindLogin, KindFlow.
	Name string
	// Cookie is the cookie name of this kind's sessions, or with Prefix
	// the start of their names (one cookie per started login). A
	// "__Host-" in front is ignored.
	Cookie string
	Prefix bool
	// TTL is the absolute lifetime of a session, from its creation.
	TTL time.Duration
	// IdleTimeout, when positive, ends a session not seen for that long.
	IdleTimeout time.Duration
	// TouchAfter bounds how often a read records "last seen" and pushes the
	// idle deadline forward: a read-only request writes to the store at most
	// once per interval. Zero turns touching off (unless IdleTimeout is set,
	// which then touches on every read).
	TouchAfter time.Duration
	// Cache, when set, keeps validated sessions of this kind in memory.
	Cache *Cache
}

// Options configures a Manager.
type Options struct {
	Kinds []Kind
	// Cookie returns the attributes of cookies for this request. MaxAge is
	// ignored: it is always derived from the session's expiry.
	Cookie func(r *http.Request) sessions.Options
	// Now is the clock (time.Now when nil); tests move it instead of
	// sleeping.
	Now func() time.Time
	// Rejected, when set, is told of each cookie refused before any store
	// read (a bad signature, a malformed value): for a metric, not a log
	// line per cookie.
	Rejected func(reason string)
	Logger   *slog.Logger
}

// Manager adapts a sessionstore.Store to gorilla/sessions. It is the one
// sessions.Store of the app, for every kind of session.
type Manager struct {
	backend sessionstore.Store
	codec   *Codec
	opts    Options
}

// NewManager returns the session layer over backend.
func NewManager(backend sessionstore.Store, codec *Codec, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Cookie == nil {
		opts.Cookie = func(*http.Request) sessions.Options {
			return sessions.Options{Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
		}
	}
	return &Manager{backend: backend, codec: codec, opts: opts}
}

// kindOf returns the kind of the cookie called name.
func (m *Manager) kindOf(name string) (*Kind, error) {
	base := strings.TrimPrefix(name, "__Host-")
	for i := range m.opts.Kinds {
		k := &m.opts.Kinds[i]
		if base == k.Cookie || (k.Prefix && strings.HasPrefix(base, k.Cookie)) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("httpsession: no kind of session uses the cookie %q", name)
}

// state is what the manager remembers about a loaded session. It rides in
// Session.Values under an unexported key type, which no caller can collide
// with and which is never serialised.
type state struct {
	kind       *Kind
	token, key string // the store key of token, once known
	createdAt  time.Time
	seenAt     time.Time
	expiresAt  time.Time // absolute
	owners     []string
	loaded     []byte // the values as loaded, to skip unchanged saves
	hadCookie  bool   // a cookie came with the request ...
	notFound   bool   // ... but named no live session
}

type stateKey struct{}

func stateOf(s *sessions.Session) *state {
	if st, ok := s.Values[stateKey{}].(*state); ok {
		return st
	}
	st := &state{}
	s.Values[stateKey{}] = st
	return st
}

// Drop ends the session the request's cookie called name refers to, if
// that cookie is one this app signed: its record is deleted and the cookie
// cleared. A cookie that does not verify is left alone (and reported to
// Options.Rejected): it costs no store call and no response header.
func (m *Manager) Drop(w http.ResponseWriter, r *http.Request, name string) (bool, error) {
	kind, err := m.kindOf(name)
	if err != nil {
		return false, err
	}
	value, ok := Cookie(r, name)
	if !ok {
		return false, nil
	}
	token, err := m.codec.DecodeCookie(name, value)
	if err != nil {
		m.rejected("bad cookie")
		return false, nil
	}
	if err := m.backend.Delete(r.Context(), KeyFor(token)); err != nil {
		return false, fmt.Errorf("%w: delete session: %w", ErrUnavailable, err)
	}
	Forget(w, m.empty(r, name, kind))
	return true, nil
}

func (m *Manager) rejected(reason string) {
	if m.opts.Rejected != nil {
		m.opts.Rejected(reason)
	}
}

// Get returns the session called name for this request, loading it once per
// request through gorilla's registry.
func (m *Manager) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(m, name)
}

// New loads the session named by the request's cookie, or returns an empty
// one. It returns a session whenever the name is known: gorilla's registry
// dereferences it even when err is set. err wraps ErrUnavailable only when
// the backend failed.
func (m *Manager) New(r *http.Request, name string) (*sessions.Session, error) {
	kind, err := m.kindOf(name)
	if err != nil {
		s := sessions.NewSession(m, name)
		s.IsNew = true
		return s, err
	}
	s := m.empty(r, name, kind)
	value, ok := Cookie(r, name)
	if !ok {
		return s, nil
	}
	st := stateOf(s)
	st.hadCookie = true
	ctx := r.Context()
	now := m.opts.Now()
	ref := cookieRef{name, value}
	var tk ticket
	if kind.Cache != nil {
		var hit *cached
		hit, tk = kind.Cache.lookup(ctx, ref)
		if hit != nil {
			if now.Before(hit.rec.ExpiresAt) && now.Before(hit.storeExp) {
				m.fill(s, st, hit)
				m.touch(ctx, hit.key, st, now) // when due; its report drops the entry
				return s, nil
			}
			// Expired since it was cached: forget it and let the store say so.
			kind.Cache.Invalidate(hit.key)
		}
	}
	e, err := m.read(r, s, value, now, func(key string) (sessionstore.Entry, bool, error) {
		if kind.Cache != nil {
			tk = kind.Cache.stripeTicket(tk, key)
		}
		return m.backend.Find(ctx, key)
	})
	if e == nil || err != nil {
		return s, err
	}
	if !m.touch(ctx, e.key, st, now) && kind.Cache != nil {
		// (After a touch the entry's times are stale: the next request reads.)
		kind.Cache.store(ref, e, tk)
	}
	return s, nil
}

// read verifies the cookie value, reads its record with get and, when it is
// a live record of s's kind, fills s. It returns nil when there is no such
// session (s is then marked as not found), an error only when the backend
// failed.
func (m *Manager) read(r *http.Request, s *sessions.Session, value string, now time.Time, get func(key string) (sessionstore.Entry, bool, error)) (*cached, error) {
	st := stateOf(s)
	token, err := m.codec.DecodeCookie(s.Name(), value)
	if err != nil {
		st.notFound = true
		m.rejected("bad cookie")
		return nil, nil
	}
	key := KeyFor(token)
	entry, found, err := get(key)
	if err != nil {
		return nil, fmt.Errorf("%w: read session %s: %w", ErrUnavailable, ShortID(key), err)
	}
	if !found || !now.Before(entry.ExpiresAt) {
		st.notFound = true
		return nil, nil
	}
	rec, err := m.codec.OpenRecord(key, entry.Data)
	if err != nil || rec.Kind != st.kind.Name || !now.Before(rec.ExpiresAt) {
		// Unreadable, foreign or stale: never a 500, just no session.
		st.notFound = true
		m.opts.Logger.Warn("session record rejected", "session", ShortID(key), "kind", st.kind.Name, "error", err)
		return nil, nil
	}
	e := newCached(token, key, rec, entry)
	m.fill(s, st, e)
	return e, nil
}

// Take loads the session the request's cookie called name refers to and
// removes it from the store in the same step: of concurrent requests
// carrying the cookie, exactly one gets the session. It is for one-time
// sessions (a login in progress). The response is not touched: Forget
// clears the cookie.
func (m *Manager) Take(r *http.Request, name string) (*sessions.Session, error) {
	kind, err := m.kindOf(name)
	if err != nil {
		return nil, err
	}
	s := m.empty(r, name, kind)
	value, ok := Cookie(r, name)
	if !ok {
		return s, nil
	}
	stateOf(s).hadCookie = true
	_, err = m.read(r, s, value, m.opts.Now(), func(key string) (sessionstore.Entry, bool, error) {
		return m.backend.Take(r.Context(), key)
	})
	if err == nil {
		s.ID = "" // gone from the store: nothing of it is saved again
	}
	return s, err
}

// Forget clears the cookie of s in the browser, without touching the store.
func Forget(w http.ResponseWriter, s *sessions.Session) {
	opts := *s.Options
	opts.MaxAge = -1
	http.SetCookie(w, sessions.NewCookie(s.Name(), "", &opts))
}

// fill loads a validated session into s.
func (m *Manager) fill(s *sessions.Session, st *state, e *cached) {
	for _, v := range e.values {
		s.Values[v.name] = v.value
	}
	st.token, st.key = e.token, e.key
	st.createdAt, st.expiresAt, st.seenAt, st.owners = e.rec.CreatedAt, e.rec.ExpiresAt, e.seenAt, e.owners
	st.loaded = e.loaded
	s.ID = e.token
	s.IsNew = false
}

// touch records the visit and pushes the idle deadline forward, lazily: at
// most once per TouchAfter. It reports whether it wrote.
func (m *Manager) touch(ctx context.Context, key string, st *state, now time.Time) bool {
	k := st.kind
	if k.TouchAfter <= 0 && k.IdleTimeout <= 0 {
		return false
	}
	if now.Sub(st.seenAt) < k.TouchAfter {
		return false
	}
	if err := m.backend.Touch(ctx, key, now, storeExpiry(k, st.expiresAt, now)); err != nil {
		// The read succeeded; a failed touch only shortens the idle window.
		m.opts.Logger.Warn("session touch failed", "session", ShortID(key), "error", err)
		return false
	}
	st.seenAt = now
	return true
}

// storeExpiry is when the store should drop the record: the absolute expiry,
// or sooner when an idle timeout is set.
func storeExpiry(k *Kind, absolute, now time.Time) time.Time {
	if k.IdleTimeout > 0 {
		if idle := now.Add(k.IdleTimeout); idle.Before(absolute) {
			return idle
		}
	}
	return absolute
}

func (m *Manager) empty(r *http.Request, name string, kind *Kind) *sessions.Session {
	s := sessions.NewSession(m, name)
	opts := m.opts.Cookie(r)
	s.Options = &opts
	s.IsNew = true
	stateOf(s).kind = kind
	return s
}

// Fresh returns an empty session called name that ignores any cookie the
// request carries; saving it creates a new token.
func (m *Manager) Fresh(r *http.Request, name string) (*sessions.Session, error) {
	kind, err := m.kindOf(name)
	if err != nil {
		return nil, err
	}
	return m.empty(r, name, kind), nil
}

// Regenerate deletes s from the store and empties it, so that the next Save
// issues a new token: the fix for session fixation at login.
func (m *Manager) Regenerate(ctx context.Context, s *sessions.Session) error {
	if s.ID != "" {
		if err := m.backend.Delete(ctx, KeyFor(s.ID)); err != nil {
			return fmt.Errorf("%w: delete session: %w", ErrUnavailable, err)
		}
	}
	kind := stateOf(s).kind
	s.ID = ""
	s.IsNew = true
	clear(s.Values)
	stateOf(s).kind = kind
	return nil
}

// SetOwners files s under these labels in the store's index from its next
// Save on (its user, its subject at the provider, its provider session).
func SetOwners(s *sessions.Session, owners ...string) {
	stateOf(s).owners = owners
}

// Save writes s when it changed. A session with MaxAge < 0 is deleted from
// the store and its cookie cleared. An empty new session writes nothing, so
// visitors who never start a login leave no rows.
func (m *Manager) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	st := stateOf(s)
	if st.kind == nil {
		return fmt.Errorf("httpsession: session %q was not made by this manager", s.Name())
	}
	if s.Options.MaxAge < 0 {
		if s.ID != "" {
			if err := m.backend.Delete(r.Context(), KeyFor(s.ID)); err != nil {
				return fmt.Errorf("%w: delete session: %w", ErrUnavailable, err)
			}
		}
		http.SetCookie(w, sessions.NewCookie(s.Name(), "", s.Options))
		s.ID = ""
		return nil
	}
	values := make(map[string]json.RawMessage, len(s.Values))
	for k, v := range s.Values {
		name, ok := k.(string)
		if !ok {
			if _, internal := k.(stateKey); internal {
				continue
			}
			return fmt.Errorf("session %q: value key %v is not a string", s.Name(), k)
		}
		if sv, ok := v.(*storedValue); ok { // unchanged since loaded
			values[name] = sv.raw
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("session %q: encode value %q: %w", s.Name(), name, err)
		}
		values[name] = b
	}
	encoded, _ := json.Marshal(values)
	now := m.opts.Now()
	if s.ID == "" {
		if len(values) == 0 {
			return nil
		}
		s.ID = NewToken()
		s.IsNew = true
		st.createdAt, st.expiresAt = now, now.Add(st.kind.TTL)
	} else if bytes.Equal(encoded, st.loaded) {
		return nil
	}
	key := KeyFor(s.ID)
	plain, err := encodeRecord(Record{Kind: st.kind.Name, CreatedAt: st.createdAt, ExpiresAt: st.expiresAt, Values: values})
	if err != nil {
		return err
	}
	st.seenAt = now
	entry := sessionstore.Entry{Key: key, Owners: st.owners, Data: m.codec.Seal(key, plain), SeenAt: now, ExpiresAt: storeExpiry(st.kind, st.expiresAt, now)}
	if err := m.backend.Save(r.Context(), entry); err != nil {
		return fmt.Errorf("%w: save session %s: %w", ErrUnavailable, ShortID(key), err)
	}
	st.loaded = encoded
	cookieValue, err := m.codec.EncodeCookie(s.Name(), s.ID)
	if err != nil {
		return fmt.Errorf("encode session cookie: %w", err)
	}
	opts := *s.Options
	opts.MaxAge = int(math.Ceil(st.expiresAt.Sub(now).Seconds()))
	http.SetCookie(w, sessions.NewCookie(s.Name(), cookieValue, &opts))
	return nil
}

// storedValue is a session value as loaded from a record: its JSON, and
// what Value has decoded from it, per type. A cached session shares its
// storedValues between requests, so each is decoded once, not per request.
type storedValue struct {
	raw     json.RawMessage
	decoded sync.Map // reflect.Type → a value of that type
}

// MarshalJSON returns the value's JSON as loaded.
func (v *storedValue) MarshalJSON() ([]byte, error) { return v.raw, nil }

// Value returns the value stored under key as a T: the value itself when it
// was set in this request, or decoded from the record's JSON. A decoded T
// may be shared with other requests of the same session: treat maps and
// slices in it as read-only.
func Value[T any](s *sessions.Session, key string) (T, bool) {
	var zero T
	switch v := s.Values[key].(type) {
	case nil:
		return zero, false
	case T:
		return v, true
	case *storedValue:
		typ := reflect.TypeFor[T]()
		if d, ok := v.decoded.Load(typ); ok {
			return d.(T), true
		}
		var out T
		if err := json.Unmarshal(v.raw, &out); err != nil {
			return zero, false
		}
		v.decoded.Store(typ, out)
		return out, true
	default:
		return zero, false
	}
}

// Info describes a loaded session for pages and the API.
type Info struct {
	CreatedAt time.Time
	SeenAt    time.Time
	ExpiresAt time.Time
	// Key is the store key's short label; never the token.
	Key string
	// Lost is true when the request carried a cookie that names no live
	// session (expired, signed out, tampered, or a store that forgot it).
	Lost bool
}

// InfoOf returns what the manager knows about s.
func InfoOf(s *sessions.Session) Info {
	st := stateOf(s)
	info := Info{CreatedAt: st.createdAt, SeenAt: st.seenAt, ExpiresAt: st.expiresAt, Lost: st.hadCookie && st.notFound}
	if s.ID != "" {
		info.Key = ShortID(KeyOf(s))
	}
	return info
}

// Summary is one session of a user, as a listing shows it.
type Summary struct {
	Key       string // the full store key; show ShortID(Key)
	CreatedAt time.Time
	SeenAt    time.Time
	ExpiresAt time.Time
	Values    map[string]json.RawMessage
}

// SummaryValue decodes the value stored under key in a listed session.
func SummaryValue[T any](s Summary, key string) (T, bool) {
	return RecordValue[T](Record{Values: s.Values}, key)
}

// Sessions returns the live sessions of the given kind filed under owner,
// from the per-user index. Records that cannot be opened (another secret,
// another kind) are left out.
func (m *Manager) Sessions(ctx context.Context, kind, owner string) ([]Summary, error) {
	entries, err := m.backend.ByOwner(ctx, owner)
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: %w", ErrUnavailable, err)
	}
	out := make([]Summary, 0, len(entries))
	for _, e := range entries {
		rec, err := m.codec.OpenRecord(e.Key, e.Data)
		if err != nil || rec.Kind != kind {
			continue
		}
		out = append(out, Summary{Key: e.Key, CreatedAt: rec.CreatedAt, SeenAt: e.SeenAt, ExpiresAt: e.ExpiresAt, Values: rec.Values})
	}
	return out, nil
}

// Revoke deletes the session stored under key.
func (m *Manager) Revoke(ctx context.Context, key string) error {
	if err := m.backend.Delete(ctx, key); err != nil {
		return fmt.Errorf("%w: revoke session: %w", ErrUnavailable, err)
	}
	return nil
}

// MarkUsed records in the store that the one-time token id (a logout
// token's jti) has been used, until expiresAt, and reports whether this was
// its first use: exactly once across every instance sharing the store
// (Store.Insert).
func (m *Manager) MarkUsed(ctx context.Context, id string, expiresAt time.Time) (bool, error) {
	key := KeyFor("used:" + id)
	now := m.opts.Now()
	plain, err := encodeRecord(Record{Kind: KindUsed, CreatedAt: now, ExpiresAt: expiresAt, Values: map[string]json.RawMessage{}})
	if err != nil {
		return false, err
	}
	e := sessionstore.Entry{Key: key, Data: m.codec.Seal(key, plain), SeenAt: now, ExpiresAt: expiresAt}
	first, err := m.backend.Insert(ctx, e)
	if err != nil {
		return false, fmt.Errorf("%w: record used token: %w", ErrUnavailable, err)
	}
	return first, nil
}

// KeyOf returns the store key of a loaded session ("" for a new one).
func KeyOf(s *sessions.Session) string {
	if s.ID == "" {
		return ""
	}
	if st := stateOf(s); st.token == s.ID {
		return st.key
	}
	return KeyFor(s.ID)
}

// Lock takes the lock called name for ttl, for every instance sharing the
// store: a record put only if absent (Store.Insert), so of any number of
// concurrent takers exactly one gets it. ok is false while someone else
// holds it. A holder that dies leaves a record that expires after ttl; a
// holder must therefore finish (or give up) well within ttl, because
// unlock deletes whatever record then has the lock's key.
func (m *Manager) Lock(ctx context.Context, name string, ttl time.Duration) (ok bool, unlock func(context.Context) error, err error) {
	key := KeyFor("lock:" + name)
	now := m.opts.Now()
	plain, err := encodeRecord(Record{Kind: KindLock, CreatedAt: now, ExpiresAt: now.Add(ttl), Values: map[string]json.RawMessage{}})
	if err != nil {
		return false, nil, err
	}
	ok, err = m.backend.Insert(ctx, sessionstore.Entry{Key: key, Data: m.codec.Seal(key, plain), SeenAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return false, nil, fmt.Errorf("%w: take lock: %w", ErrUnavailable, err)
	}
	if !ok {
		return false, nil, nil
	}
	return true, func(ctx context.Context) error {
		if err := m.backend.Delete(ctx, key); err != nil {
			return fmt.Errorf("%w: release lock: %w", ErrUnavailable, err)
		}
		return nil
	}, nil
}

// Reload reads s again from the store, past any cache: what other requests
// or instances wrote since s was loaded replaces its values. It reports
// false when the session is gone (signed out, expired).
func (m *Manager) Reload(ctx context.Context, s *sessions.Session) (bool, error) {
	st := stateOf(s)
	if s.ID == "" || st.kind == nil {
		return false, nil
	}
	key := KeyOf(s)
	entry, found, err := m.backend.Find(ctx, key)
	if err != nil {
		return false, fmt.Errorf("%w: read session %s: %w", ErrUnavailable, ShortID(key), err)
	}
	now := m.opts.Now()
	if !found || !now.Before(entry.ExpiresAt) {
		return false, nil
	}
	rec, err := m.codec.OpenRecord(key, entry.Data)
	if err != nil || rec.Kind != st.kind.Name || !now.Before(rec.ExpiresAt) {
		return false, nil
	}
	for k := range s.Values {
		if _, internal := k.(stateKey); !internal {
			delete(s.Values, k)
		}
	}
	m.fill(s, st, newCached(s.ID, key, rec, entry))
	return true, nil
}
