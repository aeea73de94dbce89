// Package notes is the example of your app's own data: each signed-in user's
// short text notes, behind a small Store interface, kept by SQLite in a
// database file of the app's own (DATA_DIR/app.db). Copy it for your first
// feature, or delete it (the folder, internal/handlers/notes.go and the
// lines between "remove:notes" markers).
//
// Why a file of its own, not the sessions database: the session store is
// swappable (SQLite, memory, a server store), and the app's data must
// neither depend on which one is chosen nor go away when a copy of the
// template deletes the SQLite session backend. Sessions are disposable;
// notes are not.
//
// The SQLite implementation suits one app server. With several (the scale
// profile), each would keep its own file: replace it by an implementation
// on a shared database (Postgres, say) that calls Clean and keeps the
// Store contract. The interface is the seam; the handlers do not change.
package notes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Note is one note of one owner.
type Note struct {
	ID        string // opaque, random: 32 hex digits (128 bits)
	Owner     string // who may list and delete it (a user's provider|subject)
	Text      string // as Clean left it
	CreatedAt time.Time
}

// Store keeps each owner's notes. Every method is safe for concurrent use;
// an owner sees and deletes only their own notes.
type Store interface {
	// List returns owner's notes, newest first; notes created at the same
	// instant come last-added first. No notes: an empty list, nil error.
	List(ctx context.Context, owner string) ([]Note, error)
	// Add stores text, as Clean returns it, as a new note of owner. When
	// Clean refuses the text, err is ErrEmpty, ErrTooLong or ErrNotText;
	// when owner already has MaxPerOwner notes, ErrTooMany. Any other
	// error is a system failure.
	Add(ctx context.Context, owner, text string) (Note, error)
	// Delete removes owner's note id. A note that does not exist and a
	// note of another owner are both found == false, err == nil: the two
	// cannot be told apart. err is for system failures only.
	Delete(ctx context.Context, owner, id string) (found bool, err error)
}

// Limits of a note and of one owner's notes.
const (
	MaxTextLen  = 10000 // characters (runes) in a note's text
	MaxPerOwner = 1000  // notes one owner can keep
)

// The refusals of Add. Their texts are for logs; what a person reads is
// the handler's choice.
var (
	ErrEmpty   = errors.New("notes: the text is empty")
	ErrTooLong = fmt.Errorf("notes: the text is longer than %d characters", MaxTextLen)
	ErrNotText = errors.New("notes: the text is not valid UTF-8")
	ErrTooMany = fmt.Errorf("notes: the owner already has %d notes", MaxPerOwner)
)

// Clean returns text as a note keeps it, or why it cannot be one: it must
// be valid UTF-8; line breaks become "\n" (browsers send a textarea's as
// "\r\n" but count them as one character against its maxlength);
// surrounding white space goes; what is left must be 1 to MaxTextLen
// characters.
func Clean(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", ErrNotText
	}
	text = strings.TrimSpace(strings.ReplaceAll(text, "\r\n", "\n"))
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		return "", ErrEmpty
	case n > MaxTextLen:
		return "", ErrTooLong
	}
	return text, nil
}

// newID returns a fresh note ID: 128 random bits, so IDs say nothing about
// how many notes there are and cannot be guessed.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
