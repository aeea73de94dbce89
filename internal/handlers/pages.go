package handlers

import (
	"strings"

	"example.com/oauth-sessions/internal/auth"
)

// The data of each page template (web/templates): one type per page, so a
// template and its handler agree on what the page shows.

// page is what every page has; handlers start it with s.newPage.
type page struct {
	App    string // the app's name (APP_NAME): the brand and the title's end
	Title  string
	Notice string // a one-time message: "You have signed out."
}

type homePage struct {
	page
	Store      string
	Persistent bool // the store keeps sessions across restarts
	// PersistentStores names the built-in stores that keep sessions
	// across restarts, for people (orList): "a, b or c".
	PersistentStores string
	SignIns          []signInButton
	Demo             bool // the built-in demo login is offered
	Production       bool
	StoreDown        bool           // the session store is not answering
	User             *auth.Identity // nil: signed out
	Provider         string         // how the user signed in, for people: "Google"
	Created          when
	Expires          when
	Started          when // when this server process started
	// Survived: the session is older than this server process, so it
	// outlived a restart.
	Survived bool
	Lost     bool // the browser's session is gone (expired, signed out, restart of a memory store)
}

// signInButton is one provider's button on the home page.
type signInButton struct {
	Provider string // "google"
	Text     string // "Sign in with Google"
	Href     string // its start route, with the page to come back to
}

type sessionsPage struct {
	page
	User     auth.Identity
	Store    string
	Sessions []sessionRow
	Others   int // sessions besides this browser's
}

// sessionRow is one session on the "your sessions" page.
type sessionRow struct {
	ID       string
	Current  bool
	Device   string
	Network  string // "203.0.113.0/24": which network it signed in from, coarsely
	Created  when
	LastSeen when
	Expires  when
}

type appPage struct {
	page
	User auth.Identity
	// API is the provider's answer to a call made as the user (nil: the
	// session keeps no API access).
	API *apiCall
	// BEGIN remove:notes
	Notes []noteRow // newest first
	// END remove:notes
}

type errorPage struct {
	page
	Status    int
	Detail    string
	RequestID string
	Retry     string // a link that tries again, when there is one
}

// orList joins names for people: "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// apiCall is the example call to the provider's API on the app's page.
type apiCall struct {
	Provider  string // for people: "Google"
	Profile   string // the provider's answer, indented JSON
	Expires   *when  // when the access token used expires (nil: no expiry)
	Reconnect string // set when access ended: where to grant it again
	Problem   string // set when the call failed: what to tell the user
}
