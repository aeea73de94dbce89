package handlers

import (
	"bytes"
	"html/template"
	"strings"
	"testing"

	oauthsessions "example.com/oauth-sessions"
	"example.com/oauth-sessions/internal/auth"
)

// pageExamples is the data every page template is executed with in
// TestEveryTemplateRenders: the zero value and filled examples that take
// each branch, so a misspelled field ({{.Notez}}) fails go test instead of
// a request. A new page template needs its line here.
func pageExamples() map[string][]any {
	p := page{App: "Test app", Title: "Title", Notice: "Notice."}
	at := when{Datetime: "2026-03-01T09:00:00Z", Exact: "2026-03-01 09:00:00 UTC", Relative: "just now"}
	ada := auth.Identity{ID: "demo|1", Email: "ada@example.com", Name: "Ada", Picture: "https://example.com/a.png", Provider: "demo"}
	bySubject := auth.Identity{ID: "demo|2", Provider: "demo"}
	buttons := []signInButton{{Provider: "demo", Text: "Sign in", Href: "/api/auth/demo"}, {Provider: "other", Text: "Sign in with Other", Href: "/api/auth/other"}}
	home := homePage{page: p, Store: "sqlite", Persistent: true, PersistentStores: "sqlite", SignIns: buttons, Demo: true,
		Provider: "Demo", Created: at, Expires: at, Started: at}
	signedIn, survived, bySub, down, lost, memory := home, home, home, home, home, home
	signedIn.User = &ada
	survived.User, survived.Survived = &ada, true
	bySub.User = &bySubject
	down.StoreDown = true
	lost.Lost = true
	memory.Persistent, memory.Lost = false, true
	memorySignedIn := memory
	memorySignedIn.User = &ada
	rows := []sessionRow{{ID: "a", Current: true, Device: "Firefox on Linux", Network: "203.0.113.0/24", Created: at, LastSeen: at, Expires: at},
		{ID: "b", Device: "Chrome on Android", Created: at, LastSeen: at, Expires: at}}
	return map[string][]any{
		"home.html": {homePage{}, home, signedIn, survived, bySub, down, lost, memory, memorySignedIn},
		"sessions.html": {sessionsPage{},
			sessionsPage{page: p, User: ada, Store: "sqlite", Sessions: rows, Others: 1},
			sessionsPage{page: p, User: bySubject, Store: "sqlite", Sessions: rows[:1]}},
		"app.html":   appExamples(p, ada),
		"error.html": {errorPage{}, errorPage{page: p, Status: 503, Detail: "Detail.", RequestID: "r1", Retry: "/"}},
	}
}

func TestEveryTemplateRenders(t *testing.T) {
	tmpl, err := template.ParseFS(oauthsessions.Files, "web/templates/*.html")
	if err != nil {
		t.Fatal(err)
	}
	examples := pageExamples()
	for _, tt := range tmpl.Templates() {
		// A page is a template that starts with the layout's head.
		page := tt.Tree != nil && strings.Contains(tt.Tree.Root.String(), `{{template "head"`)
		if page && examples[tt.Name()] == nil {
			t.Errorf("page template %s has no examples in pageExamples", tt.Name())
		}
	}
	for name, datas := range examples {
		for i, data := range datas {
			var b bytes.Buffer
			if err := tmpl.ExecuteTemplate(&b, name, data); err != nil {
				t.Errorf("%s with example %d (%T): %v", name, i, data, err)
				continue
			}
			if i > 0 && !strings.Contains(b.String(), "<title>Title · Test app</title>") {
				t.Errorf("%s with example %d: no title with the app's name:\n%s", name, i, b.String())
			}
		}
	}
}

// appExamples are app.html's: empty, and with the example's data.
func appExamples(p page, u auth.Identity) []any {
	full := appPage{page: p, User: u, API: &apiCall{Provider: "Google", Profile: `{"sub": "1"}`, Expires: &when{Relative: "in 59 minutes"}}}
	reconnect := appPage{page: p, User: u, API: &apiCall{Provider: "Google", Reconnect: "/api/auth/google?returnTo=%2Fapp"}}
	problem := appPage{page: p, User: u, API: &apiCall{Provider: "Google", Problem: "Google could not be reached."}}
	// BEGIN remove:notes
	full.Notes = []noteRow{{ID: "n1", Text: "A note <b>with markup</b>", Created: when{Relative: "just now"}}}
	// END remove:notes
	return []any{appPage{}, full, reconnect, problem}
}
