package notes

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var _ Store = (*SQLite)(nil)

// SQLite is a Store in an SQLite file, through the pure-Go
// modernc.org/sqlite driver.
type SQLite struct {
	// SQLite allows one writer at a time: a pool of one connection queues
	// writes in Go rather than have them fight over the lock; reads have
	// their own pool and, with WAL, never wait for writes.
	reader, writer *sql.DB
	now            func() time.Time
}

// migrations[i] brings the database from schema version i (PRAGMA
// user_version; 0 is a new file) to i+1. Append; never edit one that has
// shipped.
var migrations = [][]string{
	// 1: the notes. seq, the rowid, orders notes of the same instant by
	// when they were added; the index serves List, MaxPerOwner's count and
	// (with seq, which every index carries) the order.
	{
		`CREATE TABLE notes (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, text TEXT NOT NULL, created_at INTEGER NOT NULL)`,
		`CREATE INDEX notes_owner_created_at ON notes (owner, created_at)`,
	},
}

// OpenSQLite opens the database at path, creating it (its folder with mode
// 0700, the file with 0600, which SQLite also gives its -wal and -shm
// files) and bringing its schema up to date. now is the clock that stamps
// new notes (time.Now in the program).
func OpenSQLite(ctx context.Context, path string, now func() time.Time) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("open notes database: empty path")
	}
	if err := createFile(path); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	reader, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open notes database %q: %w", path, err)
	}
	writer, err := sql.Open("sqlite", dsn)
	if err != nil {
		reader.Close()
		return nil, fmt.Errorf("open notes database %q: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	reader.SetMaxOpenConns(8)
	reader.SetMaxIdleConns(8)
	s := &SQLite{reader: reader, writer: writer, now: now}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open notes database %q: %w", path, err)
	}
	return s, nil
}

// createFile makes the folder and an empty database file with owner-only
// permissions before SQLite touches it; SQLite would otherwise create it
// with the process umask (usually world-readable). It repeats the session
// store's on purpose: this package must not depend on a session backend
// that a copy of the template may delete.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create folder for notes database %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create notes database %q: %w", path, err)
	}
	return f.Close()
}

// migrate applies the migrations the file lacks, in one transaction: a
// second process opening the same file waits, then finds nothing to do.
func (s *SQLite) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this program knows (%d): was it written by a newer version?", version, len(migrations))
		}
		for v := version; v < len(migrations); v++ {
			for _, stmt := range migrations[v] {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
				}
			}
			// PRAGMA takes no parameters; v+1 is a number of ours.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
		}
		return nil
	})
}

// inTx runs fn in a transaction on the writer connection (BEGIN IMMEDIATE:
// it holds the write lock from the start, so a read-then-write such as
// Add's count cannot race another writer).
func (s *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
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

// List implements Store.
func (s *SQLite) List(ctx context.Context, owner string) ([]Note, error) {
	rows, err := s.reader.QueryContext(ctx,
		`SELECT id, text, created_at FROM notes WHERE owner = ? ORDER BY created_at DESC, seq DESC`, owner)
	if err != nil {
		return nil, fmt.Errorf("list notes: %w", err)
	}
	defer rows.Close()
	list := []Note{}
	for rows.Next() {
		n := Note{Owner: owner}
		var created int64
		if err := rows.Scan(&n.ID, &n.Text, &created); err != nil {
			return nil, fmt.Errorf("list notes: %w", err)
		}
		n.CreatedAt = time.UnixMilli(created).UTC()
		list = append(list, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list notes: %w", err)
	}
	return list, nil
}

// Add implements Store. The count and the insert are one transaction, so
// concurrent Adds cannot take an owner past MaxPerOwner.
func (s *SQLite) Add(ctx context.Context, owner, text string) (Note, error) {
	if owner == "" {
		return Note{}, errors.New("add note: empty owner")
	}
	text, err := Clean(text)
	if err != nil {
		return Note{}, err
	}
	// Milliseconds, as stored: the note Add returns equals the one List reads.
	n := Note{ID: newID(), Owner: owner, Text: text, CreatedAt: time.UnixMilli(s.now().UnixMilli()).UTC()}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var count int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM notes WHERE owner = ?`, owner).Scan(&count); err != nil {
			return err
		}
		if count >= MaxPerOwner {
			return ErrTooMany
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO notes (id, owner, text, created_at) VALUES (?, ?, ?, ?)`,
			n.ID, n.Owner, n.Text, n.CreatedAt.UnixMilli())
		return err
	})
	if errors.Is(err, ErrTooMany) {
		return Note{}, ErrTooMany
	}
	if err != nil {
		return Note{}, fmt.Errorf("add note: %w", err)
	}
	return n, nil
}

// Delete implements Store.
func (s *SQLite) Delete(ctx context.Context, owner, id string) (bool, error) {
	res, err := s.writer.ExecContext(ctx, `DELETE FROM notes WHERE id = ? AND owner = ?`, id, owner)
	if err != nil {
		return false, fmt.Errorf("delete note: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("delete note: %w", err)
	}
	return n > 0, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	return errors.Join(s.reader.Close(), s.writer.Close())
}
