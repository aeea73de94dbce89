package handlers_test

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/auth"
)

// noteJSON is a note as the API shows it.
type noteJSON struct {
	ID        string    `json:"id"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"createdAt"`
}

// send is do with a body of type contentType (none when ""), from this
// app's own pages (Sec-Fetch-Site: same-origin) unless header says
// otherwise.
func send(t *testing.T, c *http.Client, method, path, contentType, body string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return roundTrip(t, c, req, header...)
}

// postNote posts the /app page's form, multipart as the browser sends it.
func postNote(t *testing.T, c *http.Client, text string) reply {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.WriteField("text", text); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return send(t, c, "POST", "/app/notes", w.FormDataContentType(), b.String())
}

// listNotes is GET /api/app/notes, its shape checked.
func listNotes(t *testing.T, c *http.Client) []noteJSON {
	t.Helper()
	r := do(t, c, "GET", "/api/app/notes")
	var list struct {
		Notes []noteJSON `json:"notes"`
	}
	strictJSON(t, r.body, &list)
	if r.status != http.StatusOK || list.Notes == nil {
		t.Fatalf("GET /api/app/notes = %d %s; want 200 with a list", r.status, r.body)
	}
	return list.Notes
}

// addNote is POST /api/app/notes, expected to succeed.
func addNote(t *testing.T, c *http.Client, text string) noteJSON {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"text": text})
	r := send(t, c, "POST", "/api/app/notes", "application/json", string(body))
	var n noteJSON
	strictJSON(t, r.body, &n)
	if r.status != http.StatusCreated || n.Text != strings.TrimSpace(text) || len(n.ID) != 32 {
		t.Fatalf("POST /api/app/notes = %d %s; want 201 with the note", r.status, r.body)
	}
	return n
}

// wantError checks a JSON error answer.
func wantError(t *testing.T, r reply, status int, what string) {
	t.Helper()
	var e errorJSON
	strictJSON(t, r.body, &e)
	if r.status != status || e.Error == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("%s = %d %s (%s); want %d {\"error\": ...}", what, r.status, r.body, r.header.Get("Content-Type"), status)
	}
}

// asBob is a second user's browser, signed in with another identity.
func asBob(t *testing.T, a *testApp) *http.Client {
	t.Helper()
	c := a.browser()
	u, _ := url.Parse(base)
	c.Jar.SetCookies(u, []*http.Cookie{a.session(t, auth.Identity{ID: "demo|bob", Name: "Bob", Email: "bob@example.com", Provider: "demo"})})
	return c
}

func TestNotesAPI(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	signIn(t, c, "/")

	if r := do(t, c, "GET", "/api/app/notes"); r.status != 200 || strings.TrimSpace(r.body) != `{"notes":[]}` {
		t.Fatalf("no notes yet: %d %s; want 200 {\"notes\":[]}", r.status, r.body)
	}
	first := addNote(t, c, "first")
	if !first.CreatedAt.Equal(a.clock.Now()) {
		t.Fatalf("createdAt %v, want the clock's %v", first.CreatedAt, a.clock.Now())
	}
	a.clock.Advance(time.Minute)
	second := addNote(t, c, "  second\n")
	if list := listNotes(t, c); len(list) != 2 || list[0] != second || list[1] != first {
		t.Fatalf("list = %+v; want newest first", list)
	}

	r := do(t, c, "DELETE", "/api/app/notes/"+first.ID, "Sec-Fetch-Site", "same-origin")
	if r.status != http.StatusNoContent || r.body != "" {
		t.Fatalf("DELETE = %d %q; want 204 with no body", r.status, r.body)
	}
	if list := listNotes(t, c); len(list) != 1 || list[0] != second {
		t.Fatalf("after the delete: %+v", list)
	}
	wantError(t, do(t, c, "DELETE", "/api/app/notes/"+first.ID, "Sec-Fetch-Site", "same-origin"), 404, "deleting it again")
	wantError(t, do(t, c, "DELETE", "/api/app/notes/nonsense", "Sec-Fetch-Site", "same-origin"), 404, "deleting an unknown id")
}

func TestNotesAPIRefusals(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	signIn(t, c, "/")
	const js = "application/json"
	for _, tc := range []struct {
		name, contentType, body string
	}{
		{"empty text", js, `{"text": ""}`},
		{"white space only", js, `{"text": " \n\t "}`},
		{"no text", js, `{}`},
		{"null", js, `null`},
		{"10,001 characters", js, `{"text": "` + strings.Repeat("é", 10001) + `"}`},
		{"malformed", js, `{"text": "a"`},
		{"not an object", js, `["a"]`},
		{"text not a string", js, `{"text": 5}`},
		{"an unknown field", js, `{"txt": "a"}`},
		{"two objects", js, `{"text": "a"} {"text": "b"}`},
		{"no content type", "", `{"text": "a"}`},
		{"a form", "application/x-www-form-urlencoded", `text=a`},
		{"text/plain", "text/plain", `{"text": "a"}`},
	} {
		wantError(t, send(t, c, "POST", "/api/app/notes", tc.contentType, tc.body), http.StatusBadRequest, tc.name)
	}
	if list := listNotes(t, c); len(list) != 0 {
		t.Fatalf("refused notes were stored: %+v", list)
	}
	// The limit counts characters, not bytes.
	addNote(t, c, strings.Repeat("😀", 10000))
	addNote(t, c, "charset given")
	if r := send(t, c, "POST", "/api/app/notes", "application/json; charset=utf-8", `{"text": "ok"}`); r.status != http.StatusCreated {
		t.Fatalf("with a charset: %d %s", r.status, r.body)
	}
}

// TestNotesAreEachUsersOwn: a second user sees, and can delete, only
// their own notes; the first user's are "not found" to them.
func TestNotesAreEachUsersOwn(t *testing.T) {
	a := newApp(t, false)
	ada := a.browser()
	signIn(t, ada, "/")
	adas := addNote(t, ada, "Ada's secret")
	bob := asBob(t, a)

	if list := listNotes(t, bob); len(list) != 0 {
		t.Fatalf("Bob lists %+v; want none", list)
	}
	wantError(t, do(t, bob, "DELETE", "/api/app/notes/"+adas.ID, "Sec-Fetch-Site", "same-origin"), 404, "Bob deleting Ada's note")
	r := send(t, bob, "POST", "/app/notes/"+adas.ID+"/delete", "application/x-www-form-urlencoded", "")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/app" {
		t.Fatalf("Bob's delete form on Ada's note = %d %q", r.status, r.header.Get("Location"))
	}
	if page := do(t, bob, "GET", "/app"); !strings.Contains(page.body, `id="notice">That note was not found`) || strings.Contains(page.body, "Ada&#39;s secret") {
		t.Fatalf("Bob's page after the attempt:\n%s", page.body)
	}
	bobs := addNote(t, bob, "Bob's")
	if list := listNotes(t, bob); len(list) != 1 || list[0] != bobs {
		t.Fatalf("Bob lists %+v; want only his own", list)
	}
	if list := listNotes(t, ada); len(list) != 1 || list[0] != adas {
		t.Fatalf("Ada lists %+v; want only hers, still there", list)
	}
}

func TestNotesAnonymous(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/app/notes"}, {"POST", "/api/app/notes"}, {"DELETE", "/api/app/notes/x"},
	} {
		wantError(t, send(t, c, tc.method, tc.path, "application/json", `{"text": "a"}`), http.StatusUnauthorized, tc.method+" "+tc.path)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/app"}, {"POST", "/app/notes"}, {"POST", "/app/notes/x/delete"},
	} {
		r := send(t, c, tc.method, tc.path, "application/x-www-form-urlencoded", "text=a")
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/api/auth/demo?returnTo=") {
			t.Errorf("anonymous %s %s = %d %q; want 303 to the sign-in", tc.method, tc.path, r.status, r.header.Get("Location"))
		}
	}
}

// TestNotesPage: the /app page's plain forms add and delete notes, each
// time back to the page with a one-time notice; text is shown escaped.
func TestNotesPage(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	signIn(t, c, "/app")
	page := do(t, c, "GET", "/app")
	if page.status != 200 || !strings.Contains(page.body, `<h1 id="app-greeting">Hello, Ada Lovelace</h1>`) ||
		!strings.Contains(page.body, `id="no-notes"`) || !strings.Contains(page.body, `<label for="note-text">`) ||
		!strings.Contains(page.body, `maxlength="10000"`) {
		t.Fatalf("/app = %d\n%s", page.status, page.body)
	}

	const hostile = `<script>alert("hi")</script>`
	r := postNote(t, c, hostile)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/app" {
		t.Fatalf("add form = %d %q; want 303 to /app", r.status, r.header.Get("Location"))
	}
	page = do(t, c, "GET", "/app")
	if !strings.Contains(page.body, `id="notice">Note added.<`) || strings.Contains(page.body, hostile) ||
		!strings.Contains(page.body, `&lt;script&gt;alert(&#34;hi&#34;)&lt;/script&gt;`) || !strings.Contains(page.body, ">just now</time>") {
		t.Fatalf("after adding, /app shows\n%s", page.body)
	}
	if again := do(t, c, "GET", "/app"); strings.Contains(again.body, `id="notice"`) {
		t.Fatal("the notice came back on reload")
	}

	// Refusals come back as the notice; 10,000 characters of four bytes
	// each fit the body limit, as the form sends them (multipart).
	for _, tc := range []struct{ text, notice string }{
		{" \r\n ", "The note is empty"},
		{strings.Repeat("😀", 10000), "Note added."},
		{strings.Repeat("😀", 10001), "The note is too long"},
		{"line one\r\nline two", "Note added."},
	} {
		if r := postNote(t, c, tc.text); r.status != http.StatusSeeOther {
			t.Fatalf("add form with %d bytes = %d", len(tc.text), r.status)
		}
		if page := do(t, c, "GET", "/app"); !strings.Contains(page.body, `id="notice">`+tc.notice) {
			t.Fatalf("after adding %d bytes the notice is not %q", len(tc.text), tc.notice)
		}
	}
	r = send(t, c, "POST", "/app/notes", "application/x-www-form-urlencoded", "text=caf%E9")
	if page := do(t, c, "GET", "/app"); r.status != http.StatusSeeOther || !strings.Contains(page.body, `id="notice">The note is not valid text`) {
		t.Fatalf("invalid UTF-8 = %d; page:\n%s", r.status, page.body)
	}
	if list := listNotes(t, c); len(list) != 3 || list[0].Text != "line one\nline two" {
		t.Fatalf("stored %d notes; want 3, line breaks as \\n", len(list))
	}

	// Delete the oldest (the script) through its button's form.
	page = do(t, c, "GET", "/app")
	m := regexp.MustCompile(`<form method="post" action="(/app/notes/([0-9a-f]{32})/delete)">`).FindAllStringSubmatch(page.body, -1)
	if len(m) != 3 {
		t.Fatalf("%d delete forms on the page, want 3", len(m))
	}
	oldest := m[2]
	if r := send(t, c, "POST", oldest[1], "application/x-www-form-urlencoded", ""); r.status != http.StatusSeeOther || r.header.Get("Location") != "/app" {
		t.Fatalf("delete form = %d %q; want 303 to /app", r.status, r.header.Get("Location"))
	}
	page = do(t, c, "GET", "/app")
	if !strings.Contains(page.body, `id="notice">Note deleted.<`) || strings.Contains(page.body, oldest[2]) || strings.Contains(page.body, "&lt;script") {
		t.Fatalf("after deleting, /app shows\n%s", page.body)
	}
	send(t, c, "POST", oldest[1], "application/x-www-form-urlencoded", "")
	if page := do(t, c, "GET", "/app"); !strings.Contains(page.body, `id="notice">That note was not found`) {
		t.Fatalf("deleting it again: the page says\n%s", page.body)
	}
}

// TestNotesCrossOrigin: another site cannot add or delete a signed-in
// user's notes through their browser.
func TestNotesCrossOrigin(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	signIn(t, c, "/")
	n := addNote(t, c, "keep me")
	for _, tc := range []struct{ method, path, contentType, body string }{
		{"POST", "/api/app/notes", "application/json", `{"text": "evil"}`},
		{"DELETE", "/api/app/notes/" + n.ID, "", ""},
		{"POST", "/app/notes", "application/x-www-form-urlencoded", "text=evil"},
		{"POST", "/app/notes/" + n.ID + "/delete", "application/x-www-form-urlencoded", ""},
	} {
		r := send(t, c, tc.method, tc.path, tc.contentType, tc.body, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		var e errorJSON
		strictJSON(t, r.body, &e)
		if r.status != http.StatusForbidden || !strings.Contains(e.Error, "cross-origin") {
			t.Errorf("cross-origin %s %s = %d %s, want 403", tc.method, tc.path, r.status, r.body)
		}
	}
	if list := listNotes(t, c); len(list) != 1 || list[0] != n {
		t.Fatalf("after the cross-origin requests: %+v", list)
	}
}

// TestNotesStoreDown: a failing store is a 503 in words, its cause only
// in the log.
func TestNotesStoreDown(t *testing.T) {
	a := newApp(t, false)
	c := a.browser()
	signIn(t, c, "/")
	a.notes.Close() // every query now fails: "sql: database is closed"

	for _, r := range []reply{
		do(t, c, "GET", "/api/app/notes"),
		send(t, c, "POST", "/api/app/notes", "application/json", `{"text": "a"}`),
		send(t, c, "DELETE", "/api/app/notes/x", "", ""),
	} {
		wantError(t, r, http.StatusServiceUnavailable, "with the store down")
		if strings.Contains(r.body, "sql") {
			t.Errorf("the answer shows the cause: %s", r.body)
		}
	}
	for _, r := range []reply{do(t, c, "GET", "/app"), postNote(t, c, "a")} {
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Your notes cannot be reached") || strings.Contains(r.body, "sql") {
			t.Errorf("page with the store down = %d\n%s", r.status, r.body)
		}
	}
	if !strings.Contains(a.logs.String(), "database is closed") {
		t.Errorf("the log does not say why:\n%s", a.logs)
	}
}
