// Package sqlitestore keeps sessions in an embedded SQLite file through the
// pure-Go modernc.org/sqlite driver: no server, no cgo, and sessions survive
// restarts. It suits one server; several servers want a shared store.
package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/sessionstore"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var (
	_ sessionstore.Backend       = (*Store)(nil)
	_ sessionstore.ChangeFeed    = (*Store)(nil)
	_ sessionstore.Counter       = (*Store)(nil)
	_ sessionstore.ExpirySweeper = (*Store)(nil)
	_ sessionstore.Backuper      = (*Store)(nil)
)

// Definition introduces the SQLite store: SESSION_STORE=sqlite, with
// SESSION_SQLITE_PATH (default DATA_DIR/sessions.db) and
// SESSION_SQLITE_TABLE (default sessions).
func Definition() sessionstore.Definition {
	return sessionstore.Definition{
		Name:       "sqlite",
		Persistent: true,
		Configure: func(env *envconfig.Reader, p sessionstore.Params) sessionstore.Opener {
			opts := Options{
				Path:   env.Str("SESSION_SQLITE_PATH", filepath.Join(p.DataDir, "sessions.db")),
				Table:  env.Str("SESSION_SQLITE_TABLE", "sessions"),
				Logger: p.Logger,
			}
			if !identRe.MatchString(opts.Table) {
				env.Fail("SESSION_SQLITE_TABLE", "%q is not a plain table name (letters, digits, underscore; not starting with a digit)", opts.Table)
			}
			return func(ctx context.Context) (sessionstore.Backend, error) {
				p.Logger.Info("Creating SQLite session store", "dbPath", opts.Path, "table", opts.Table)
				s, err := New(ctx, opts)
				if err != nil {
					return nil, &envconfig.Error{Var: "SESSION_SQLITE_PATH", Problem: err.Error()}
				}
				return s, nil
			}
		},
	}
}

// Options configures a Store.
type Options struct {
	// Path is the database file; its folder is created (mode 0700) and the
	// file is created with mode 0600, which SQLite also gives its -wal and
	// -shm files.
	Path string
	// Table holds the sessions; it must be a plain SQL identifier.
	Table string
	// CleanupInterval is how often expired rows are deleted (default 1m).
	CleanupInterval time.Duration
	// CleanupBatch bounds the rows one DELETE removes, so cleanup never
	// holds the write lock for long (default 1000).
	CleanupBatch int
	// Now is the clock that decides expiry (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Store is a SQLite sessionstore.Backend.
type Store struct {
	// SQLite allows one writer at a time. A pool of one connection for
	// writes queues them in Go instead of having them fight over the lock
	// ("database is locked"); reads use their own pool and, thanks to WAL,
	// never wait for writes.
	reader, writer *sql.DB
	q              queries
	opts           Options
	stop, done     chan struct{}

	// The change feed: writes by this process are reported as they happen;
	// writes by other connections (the CLI, another process on the file)
	// show as a new PRAGMA data_version on the writer connection, which
	// does not count its own commits. writerConns tells a reopened writer
	// connection (whose versions are not comparable) from the old one.
	followers   sessionstore.Followers
	writerConns atomic.Uint64
	epoch       time.Time    // monotonic base of the two below (the wall clock may step)
	lastAsked   atomic.Int64 // ns since epoch of the last Synced call
	lastCheck   atomic.Int64 // ns since epoch when the last successful check began
	polling     atomic.Bool
	wake        chan struct{}
	pollDone    chan struct{}
	version     int64 // as of the last check; only the poller touches these
	versionConn uint64
}

type queries struct {
	find, save, insert, touch, del, take, page, owner, cleanup string
	ownersOf, delOwners, addOwner, delOwnersIn                 string
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// New opens (creating if needed) the database and its table, and starts the
// periodic cleanup of expired rows.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("sqlite store: empty database path")
	}
	if !identRe.MatchString(opts.Table) {
		return nil, fmt.Errorf("sqlite store: table name %q is not a plain identifier (letters, digits, underscore)", opts.Table)
	}
	if opts.CleanupInterval <= 0 {
		opts.CleanupInterval = time.Minute
	}
	if opts.CleanupBatch <= 0 {
		opts.CleanupBatch = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := createFile(opts.Path); err != nil {
		return nil, err
	}
	dsn := "file:" + opts.Path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	reader, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", opts.Path, err)
	}
	s := &Store{opts: opts, stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1), pollDone: make(chan struct{}), epoch: time.Now()}
	writer := sql.OpenDB(countingConnector{dsn: dsn, driver: reader.Driver(), opened: &s.writerConns})
	writer.SetMaxOpenConns(1)
	reader.SetMaxOpenConns(8)
	reader.SetMaxIdleConns(8)
	reader.SetConnMaxIdleTime(0)
	t := opts.Table
	s.reader, s.writer = reader, writer
	// A record's owners are rows of a table of their own, indexed both
	// ways: by owner for ByOwner, by key to replace and delete them.
	owners := `(SELECT group_concat(owner, char(10)) FROM ` + t + `_owners o WHERE o.key = ` + t + `.key)`
	s.q = queries{
		find: `SELECT data, seen_at, expires_at, ` + owners + ` FROM ` + t + ` WHERE key = ? AND expires_at > ?`,
		save: `INSERT INTO ` + t + ` (key, owner, data, seen_at, expires_at) VALUES (?, '', ?, ?, ?) ON CONFLICT(key) DO UPDATE SET data = excluded.data, seen_at = excluded.seen_at, expires_at = excluded.expires_at`,
		// Save unless a live record has the key: an expired one not yet
		// swept counts as absent.
		insert:      `INSERT INTO ` + t + ` (key, owner, data, seen_at, expires_at) VALUES (?, '', ?, ?, ?) ON CONFLICT(key) DO UPDATE SET data = excluded.data, seen_at = excluded.seen_at, expires_at = excluded.expires_at WHERE ` + t + `.expires_at <= ?`,
		touch:       `UPDATE ` + t + ` SET seen_at = ?, expires_at = ? WHERE key = ? AND expires_at > ?`,
		del:         `DELETE FROM ` + t + ` WHERE key = ?`,
		take:        `DELETE FROM ` + t + ` WHERE key = ? RETURNING data, seen_at, expires_at`,
		page:        `SELECT key, data, seen_at, expires_at, ` + owners + ` FROM ` + t + ` WHERE key > ? AND expires_at > ? ORDER BY key LIMIT ?`,
		owner:       `SELECT ` + t + `.key, data, seen_at, expires_at, ` + owners + ` FROM ` + t + `_owners x JOIN ` + t + ` ON ` + t + `.key = x.key WHERE x.owner = ? AND expires_at > ?`,
		cleanup:     `DELETE FROM ` + t + ` WHERE key IN (SELECT key FROM ` + t + ` WHERE expires_at <= ? LIMIT ?) RETURNING key`,
		ownersOf:    `SELECT group_concat(owner, char(10)) FROM ` + t + `_owners WHERE key = ?`,
		delOwners:   `DELETE FROM ` + t + `_owners WHERE key = ?`,
		addOwner:    `INSERT OR IGNORE INTO ` + t + `_owners (owner, key) VALUES (?, ?)`,
		delOwnersIn: `DELETE FROM ` + t + `_owners WHERE key IN (SELECT value FROM json_each(?))`,
	}
	if err := s.migrate(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	go s.cleanupLoop()
	go s.pollChanges()
	return s, nil
}

// migrate creates the table, or brings one made by an earlier version up to
// date, without losing its rows.
func (s *Store) migrate(ctx context.Context) error {
	t := s.opts.Table
	create := `CREATE TABLE IF NOT EXISTS ` + t + ` (key TEXT PRIMARY KEY, owner TEXT NOT NULL DEFAULT '', data BLOB NOT NULL, seen_at INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL) WITHOUT ROWID`
	if _, err := s.writer.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("create sqlite table %q in %q: %w", t, s.opts.Path, err)
	}
	cols := map[string]bool{}
	rows, err := s.writer.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, t)
	if err != nil {
		return fmt.Errorf("inspect sqlite table %q: %w", t, err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		cols[name] = true
	}
	rows.Close()
	for col, def := range map[string]string{"owner": "TEXT NOT NULL DEFAULT ''", "seen_at": "INTEGER NOT NULL DEFAULT 0"} {
		if !cols[col] {
			if _, err := s.writer.ExecContext(ctx, `ALTER TABLE `+t+` ADD COLUMN `+col+` `+def); err != nil {
				return fmt.Errorf("add column %s to sqlite table %q: %w", col, t, err)
			}
		}
	}
	for _, stmt := range []string{
		`CREATE INDEX IF NOT EXISTS ` + t + `_expires_at ON ` + t + ` (expires_at)`,
		`CREATE TABLE IF NOT EXISTS ` + t + `_owners (owner TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (owner, key)) WITHOUT ROWID`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_owners_key ON ` + t + `_owners (key)`,
		// Tables of earlier versions kept one owner in a column: move it
		// (once: the column is emptied) and drop its index.
		`INSERT OR IGNORE INTO ` + t + `_owners (owner, key) SELECT owner, key FROM ` + t + ` WHERE owner != ''`,
		`UPDATE ` + t + ` SET owner = '' WHERE owner != ''`,
		`DROP INDEX IF EXISTS ` + t + `_owner`,
		`DROP INDEX IF EXISTS ` + t + `_owner_idx`,
	} {
		if _, err := s.writer.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("migrate sqlite table %q: %w", t, err)
		}
	}
	return nil
}

// createFile makes the folder and an empty database file with owner-only
// permissions before SQLite touches it; SQLite would otherwise create it
// with the process umask (usually world-readable).
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create folder for sqlite store %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create sqlite store %q: %w", path, err)
	}
	return f.Close()
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// Find implements sessionstore.Store.
func (s *Store) Find(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	e := sessionstore.Entry{Key: key}
	var seen, exp int64
	var owners sql.NullString
	err := s.reader.QueryRowContext(ctx, s.q.find, key, ms(s.opts.Now())).Scan(&e.Data, &seen, &exp, &owners)
	if errors.Is(err, sql.ErrNoRows) {
		return sessionstore.Entry{}, false, nil
	}
	if err != nil {
		return sessionstore.Entry{}, false, fmt.Errorf("sqlite find: %w", err)
	}
	e.SeenAt, e.ExpiresAt, e.Owners = time.UnixMilli(seen), time.UnixMilli(exp), splitOwners(owners)
	return e, true, nil
}

// splitOwners reads the owners group_concat joined with newlines.
func splitOwners(s sql.NullString) []string {
	if !s.Valid || s.String == "" {
		return nil
	}
	return strings.Split(s.String, "\n")
}

// inTx runs fn in a transaction on the writer connection.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Save implements sessionstore.Store.
func (s *Store) Save(ctx context.Context, e sessionstore.Entry) error {
	defer s.followers.Invalidate(e.Key)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q.save, e.Key, e.Data, ms(e.SeenAt), ms(e.ExpiresAt)); err != nil {
			return err
		}
		return s.setOwners(ctx, tx, e)
	})
	if err != nil {
		return fmt.Errorf("sqlite save: %w", s.full(err))
	}
	return nil
}

// setOwners files e under its owners, and under no others.
func (s *Store) setOwners(ctx context.Context, tx *sql.Tx, e sessionstore.Entry) error {
	if _, err := tx.ExecContext(ctx, s.q.delOwners, e.Key); err != nil {
		return err
	}
	for _, o := range e.Owners {
		if _, err := tx.ExecContext(ctx, s.q.addOwner, o, e.Key); err != nil {
			return err
		}
	}
	return nil
}

// Insert implements sessionstore.Store with one conditional upsert in a
// transaction on the single writer connection: atomic.
func (s *Store) Insert(ctx context.Context, e sessionstore.Entry) (bool, error) {
	inserted := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q.insert, e.Key, e.Data, ms(e.SeenAt), ms(e.ExpiresAt), ms(s.opts.Now()))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		inserted = true
		return s.setOwners(ctx, tx, e)
	})
	if err != nil {
		return false, fmt.Errorf("sqlite insert: %w", s.full(err))
	}
	if inserted {
		s.followers.Invalidate(e.Key)
	}
	return inserted, nil
}

// Touch implements sessionstore.Store.
func (s *Store) Touch(ctx context.Context, key string, seenAt, expiresAt time.Time) error {
	defer s.followers.Invalidate(key)
	if _, err := s.writer.ExecContext(ctx, s.q.touch, ms(seenAt), ms(expiresAt), key, ms(s.opts.Now())); err != nil {
		return fmt.Errorf("sqlite touch: %w", s.full(err))
	}
	return nil
}

// Delete implements sessionstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	defer s.followers.Invalidate(key)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q.del, key); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q.delOwners, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite delete: %w", err)
	}
	return nil
}

// Take implements sessionstore.Store with DELETE … RETURNING in a
// transaction on the single writer connection: atomic.
func (s *Store) Take(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	defer s.followers.Invalidate(key)
	e := sessionstore.Entry{Key: key}
	var seen, exp int64
	found := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var owners sql.NullString
		if err := tx.QueryRowContext(ctx, s.q.ownersOf, key).Scan(&owners); err != nil {
			return err
		}
		e.Owners = splitOwners(owners)
		err := tx.QueryRowContext(ctx, s.q.take, key).Scan(&e.Data, &seen, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		_, err = tx.ExecContext(ctx, s.q.delOwners, key)
		return err
	})
	if err != nil {
		return sessionstore.Entry{}, false, fmt.Errorf("sqlite take: %w", s.full(err))
	}
	if !found {
		return sessionstore.Entry{}, false, nil
	}
	e.SeenAt, e.ExpiresAt = time.UnixMilli(seen), time.UnixMilli(exp)
	if !s.opts.Now().Before(e.ExpiresAt) {
		return sessionstore.Entry{}, false, nil
	}
	return e, true, nil
}

// full marks SQLite's "database or disk is full" as sessionstore.ErrFull.
func (s *Store) full(err error) error {
	var se interface{ Code() int }
	if errors.As(err, &se) && se.Code()&0xff == sqliteFull {
		return fmt.Errorf("%w: %w", sessionstore.ErrFull, err)
	}
	return err
}

// sqliteFull is SQLITE_FULL, the primary result code of a full disk or a
// database at its max_page_count.
const sqliteFull = 13

// All implements sessionstore.Store. It reads in pages ordered by key, so it
// holds no read transaction open while the caller works on an entry.
func (s *Store) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	const pageSize = 500
	return func(yield func(sessionstore.Entry, error) bool) {
		after := ""
		for {
			page, err := s.page(ctx, after, pageSize)
			if err != nil {
				yield(sessionstore.Entry{}, err)
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
			}
			if len(page) < pageSize {
				return
			}
			after = page[len(page)-1].Key
		}
	}
}

func (s *Store) page(ctx context.Context, after string, n int) ([]sessionstore.Entry, error) {
	return s.query(ctx, s.q.page, after, ms(s.opts.Now()), n)
}

// ByOwner implements sessionstore.Store through the owner index.
func (s *Store) ByOwner(ctx context.Context, owner string) ([]sessionstore.Entry, error) {
	return s.query(ctx, s.q.owner, owner, ms(s.opts.Now()))
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]sessionstore.Entry, error) {
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite list: %w", err)
	}
	defer rows.Close()
	var out []sessionstore.Entry
	for rows.Next() {
		var e sessionstore.Entry
		var seen, exp int64
		var owners sql.NullString
		if err := rows.Scan(&e.Key, &e.Data, &seen, &exp, &owners); err != nil {
			return nil, fmt.Errorf("sqlite list: %w", err)
		}
		e.SeenAt, e.ExpiresAt, e.Owners = time.UnixMilli(seen), time.UnixMilli(exp), splitOwners(owners)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite list: %w", err)
	}
	return out, nil
}

// Follow implements sessionstore.ChangeFeed. The periodic cleanup is not
// reported: it only deletes rows that had expired, which no reader accepts.
func (s *Store) Follow(inv sessionstore.Invalidator) { s.followers.Add(inv) }

// How the change feed polls: while requests ask, the writer connection's
// PRAGMA data_version is read every pollEvery; a cache may trust the feed
// only if a check began less than staleAfter ago, which bounds how late a
// write made elsewhere (the CLI, another process on the file) is seen. A
// check is a microsecond-scale query; asking it on every request instead
// would serialise all requests on the single writer connection and halve
// throughput (measured: docs/benchmarks.md).
const (
	pollEvery  = time.Millisecond
	staleAfter = 10 * time.Millisecond
	idleAfter  = time.Second // no request asked for this long: stop polling
)

// Synced implements sessionstore.ChangeFeed: true when a check that began
// at most staleAfter ago found nothing new (or flushed what it found).
func (s *Store) Synced(context.Context) bool {
	now := int64(time.Since(s.epoch))
	s.lastAsked.Store(now)
	if s.polling.CompareAndSwap(false, true) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return now-s.lastCheck.Load() <= int64(staleAfter)
}

// pollChanges runs the checks while requests ask, and sleeps otherwise.
func (s *Store) pollChanges() {
	defer close(s.pollDone)
	for {
		if time.Since(s.epoch)-time.Duration(s.lastAsked.Load()) > idleAfter {
			s.polling.Store(false)
			select {
			case <-s.stop:
				return
			case <-s.wake:
			}
		}
		start := int64(time.Since(s.epoch))
		if s.checkVersion() {
			s.lastCheck.Store(start)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(pollEvery):
		}
	}
}

// checkVersion reads data_version and, if it moved, reports everything as
// changed before returning (so before the check counts as done).
func (s *Store) checkVersion() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var v int64
	conn := s.writerConns.Load()
	if err := s.writer.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return false
	}
	// A connection opened around the query may be the one it ran on, and
	// versions of different connections are not comparable: flush now, and
	// record no connection so that the next check flushes again.
	if s.writerConns.Load() != conn {
		conn = 0
	}
	if v != s.version || conn != s.versionConn || conn == 0 {
		s.version, s.versionConn = v, conn
		s.followers.InvalidateAll()
	}
	return true
}

// countingConnector opens writer connections and counts them.
type countingConnector struct {
	dsn    string
	driver driver.Driver
	opened *atomic.Uint64
}

func (c countingConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.driver.Open(c.dsn)
	if err == nil {
		c.opened.Add(1)
	}
	return conn, err
}

func (c countingConnector) Driver() driver.Driver { return c.driver }

// DeleteExpired removes expired rows in batches and returns how many went.
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, s.q.cleanup, ms(s.opts.Now()), s.opts.CleanupBatch)
			if err != nil {
				return err
			}
			var keys []string
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				keys = append(keys, k)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			n = int64(len(keys))
			if n == 0 {
				return nil
			}
			list, _ := json.Marshal(keys)
			_, err = tx.ExecContext(ctx, s.q.delOwnersIn, string(list))
			return err
		})
		if err != nil {
			return total, fmt.Errorf("sqlite cleanup: %w", err)
		}
		total += n
		if n < int64(s.opts.CleanupBatch) {
			return total, nil
		}
	}
}

func (s *Store) cleanupLoop() {
	defer close(s.done)
	sessionstore.Sweep(s.stop, s.opts.CleanupInterval, s.DeleteExpired, s.opts.Logger, "sqlite")
}

// Ping implements sessionstore.Backend.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite ping: %w", err)
	}
	return nil
}

// Close stops the cleanup and closes the database.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
		close(s.stop)
	}
	<-s.done
	<-s.pollDone
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	return errors.Join(s.reader.Close(), s.writer.Close())
}

// Backup writes a consistent copy of the database to path (VACUUM INTO),
// while the store keeps serving. path must not exist yet; the copy is
// created owner-only, like the database.
func (s *Store) Backup(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite backup: %w", err)
	}
	f.Close()
	if _, err := s.reader.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("sqlite backup to %q: %w", path, err)
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.opts.Path }

// CountLive implements sessionstore.Counter with a count over the expiry
// index.
func (s *Store) CountLive(ctx context.Context) (int64, error) {
	var n int64
	if err := s.reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.opts.Table+` WHERE expires_at > ?`, ms(s.opts.Now())).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite count: %w", err)
	}
	return n, nil
}
