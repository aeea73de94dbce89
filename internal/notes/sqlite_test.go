package notes_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/fakeclock"
	"example.com/oauth-sessions/internal/notes"
)

// open opens the database at path on clock, closed when the test ends.
func open(t *testing.T, path string, clock *fakeclock.Clock) *notes.SQLite {
	t.Helper()
	s, err := notes.OpenSQLite(t.Context(), path, clock.Now)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newStore is a store in a fresh file, and the clock it stamps notes with.
func newStore(t *testing.T) (*notes.SQLite, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	return open(t, filepath.Join(t.TempDir(), "app.db"), clock), clock
}

func add(t *testing.T, s notes.Store, owner, text string) notes.Note {
	t.Helper()
	n, err := s.Add(t.Context(), owner, text)
	if err != nil {
		t.Fatalf("add %q for %s: %v", text, owner, err)
	}
	return n
}

func same(a, b notes.Note) bool {
	return a.ID == b.ID && a.Owner == b.Owner && a.Text == b.Text && a.CreatedAt.Equal(b.CreatedAt)
}

// texts lists owner's notes' texts, in List's order.
func texts(t *testing.T, s notes.Store, owner string) []string {
	t.Helper()
	list, err := s.List(t.Context(), owner)
	if err != nil {
		t.Fatalf("list %s: %v", owner, err)
	}
	out := []string{}
	for _, n := range list {
		if n.Owner != owner {
			t.Fatalf("list %s returned a note of %s", owner, n.Owner)
		}
		out = append(out, n.Text)
	}
	return out
}

func TestAddAndListNewestFirst(t *testing.T) {
	s, clock := newStore(t)
	if list, err := s.List(t.Context(), "demo|ada"); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("list of a new owner = %#v, %v; want an empty, non-nil list", list, err)
	}
	first := add(t, s, "demo|ada", "  first\r\nline two \n")
	if first.Text != "first\nline two" || first.Owner != "demo|ada" || !first.CreatedAt.Equal(clock.Now()) || len(first.ID) != 32 {
		t.Fatalf("added %#v; want the text trimmed with \\n line breaks, stamped %v, a 32-digit id", first, clock.Now())
	}
	clock.Advance(time.Minute)
	// Several at the same instant: the one added last comes first.
	for _, text := range []string{"2", "3", "4", "5", "6", "7"} {
		add(t, s, "demo|ada", text)
	}

	list, err := s.List(t.Context(), "demo|ada")
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(t, s, "demo|ada"); strings.Join(got, "|") != "7|6|5|4|3|2|first\nline two" {
		t.Fatalf("list = %q; want newest first, ties last-added first", got)
	}
	if last := list[len(list)-1]; !same(last, first) {
		t.Fatalf("listed %#v; Add returned %#v", last, first)
	}
	ids := map[string]bool{}
	for _, n := range list {
		ids[n.ID] = true
	}
	if len(ids) != len(list) {
		t.Fatalf("%d notes have only %d different ids", len(list), len(ids))
	}
}

func TestOwnersAreIsolated(t *testing.T) {
	s, _ := newStore(t)
	ada := add(t, s, "demo|ada", "Ada's")
	add(t, s, "google|bob", "Bob's")

	if got := texts(t, s, "google|bob"); len(got) != 1 || got[0] != "Bob's" {
		t.Fatalf("Bob lists %q, want only his own note", got)
	}
	if found, err := s.Delete(t.Context(), "google|bob", ada.ID); found || err != nil {
		t.Fatalf("Bob deleting Ada's note = %v, %v; want not found, no error", found, err)
	}
	if got := texts(t, s, "demo|ada"); len(got) != 1 {
		t.Fatalf("after Bob's attempt Ada lists %q, want her note still there", got)
	}
	if found, err := s.Delete(t.Context(), "demo|ada", ada.ID); !found || err != nil {
		t.Fatalf("Ada deleting her note = %v, %v", found, err)
	}
	if found, err := s.Delete(t.Context(), "demo|ada", ada.ID); found || err != nil {
		t.Fatalf("deleting it again = %v, %v; want not found, no error", found, err)
	}
	if got := texts(t, s, "demo|ada"); len(got) != 0 {
		t.Fatalf("after the delete Ada lists %q", got)
	}
}

func TestDeleteUnknown(t *testing.T) {
	s, _ := newStore(t)
	for _, id := range []string{"", "0123456789abcdef0123456789abcdef", "' OR 1=1 --"} {
		if found, err := s.Delete(t.Context(), "demo|ada", id); found || err != nil {
			t.Errorf("delete %q = %v, %v; want not found, no error", id, found, err)
		}
	}
}

func TestValidation(t *testing.T) {
	s, _ := newStore(t)
	for _, tc := range []struct {
		name, text string
		want       error // nil: accepted
	}{
		{"empty", "", notes.ErrEmpty},
		{"white space only", " \t\r\n\u00a0\u3000 ", notes.ErrEmpty},
		{"longest, ASCII", strings.Repeat("a", notes.MaxTextLen), nil},
		{"longest, multi-byte runes", strings.Repeat("é日😀", notes.MaxTextLen/3) + "x", nil},
		{"longest, CRLF line breaks count once", strings.Repeat("a\r\n", notes.MaxTextLen/2-1) + "ab", nil},
		{"longest, with white space around", "  " + strings.Repeat("😀", notes.MaxTextLen) + "\n", nil},
		{"one too long, ASCII", strings.Repeat("a", notes.MaxTextLen+1), notes.ErrTooLong},
		{"one too long, multi-byte runes", strings.Repeat("😀", notes.MaxTextLen+1), notes.ErrTooLong},
		{"invalid UTF-8", "caf\xe9", notes.ErrNotText},
		{"a lone continuation byte", "ok \x80", notes.ErrNotText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.Add(t.Context(), "demo|ada", tc.text)
			if !errors.Is(err, tc.want) { // errors.Is(err, nil): err == nil
				t.Fatalf("add = %v; want %v", err, tc.want)
			}
			if err == nil && n.Text != strings.TrimSpace(strings.ReplaceAll(tc.text, "\r\n", "\n")) {
				t.Fatalf("stored %d bytes, want the text trimmed", len(n.Text))
			}
		})
	}
	if got := texts(t, s, "demo|ada"); len(got) != 4 {
		t.Fatalf("%d notes stored, want the 4 accepted", len(got))
	}
}

func TestMaxPerOwner(t *testing.T) {
	s, _ := newStore(t)
	var last notes.Note
	for i := range notes.MaxPerOwner {
		last = add(t, s, "demo|ada", "note "+string(rune('a'+i%26)))
	}
	if _, err := s.Add(t.Context(), "demo|ada", "one more"); !errors.Is(err, notes.ErrTooMany) {
		t.Fatalf("note %d: %v, want ErrTooMany", notes.MaxPerOwner+1, err)
	}
	add(t, s, "demo|bob", "the limit is per owner")
	if found, err := s.Delete(t.Context(), "demo|ada", last.ID); !found || err != nil {
		t.Fatalf("delete = %v, %v", found, err)
	}
	add(t, s, "demo|ada", "room again after a delete")
}

// TestSurvivesRestart: a closed and reopened file has every note, and the
// reopening (migrations already applied) changes nothing.
func TestSurvivesRestart(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "data", "app.db")
	s, err := notes.OpenSQLite(t.Context(), path, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	kept := add(t, s, "demo|ada", "kept")
	clock.Advance(time.Second)
	add(t, s, "demo|ada", "also kept")
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, path, clock)
	list, err := s.List(t.Context(), "demo|ada")
	if err != nil || len(list) != 2 || list[0].Text != "also kept" || !same(list[1], kept) {
		t.Fatalf("after the restart: %#v, %v; want both notes, newest first", list, err)
	}
	add(t, s, "demo|ada", "written after the restart")
}

func TestFileModeIsOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "app.db")
	s := open(t, path, fakeclock.New(time.Now()))
	add(t, s, "demo|ada", "private")
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(p), fi.Mode().Perm(), want)
		}
	}
}

func TestConcurrentAdds(t *testing.T) {
	s, _ := newStore(t)
	const writers = 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			if _, err := s.Add(t.Context(), "demo|ada", "from writer "+string(rune('A'+i))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent add: %v", err)
	}
	if got := texts(t, s, "demo|ada"); len(got) != writers {
		t.Fatalf("%d notes after %d concurrent adds", len(got), writers)
	}
}
