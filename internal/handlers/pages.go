package handlers

import (
	"time"

	"example.com/oauth-sessions/internal/auth"
)

// The data of each page template (web/templates): one type per page, so a
// template and its handler agree on what the page shows.

// page is what every page has.
type page struct {
	Title string
}

type homePage struct {
	page
	Store         string
	SignIns       []signInButton
	Demo          bool // the built-in demo login is offered
	Production    bool
	StoreDown     bool           // the session store is not answering
	User          *auth.Identity // nil: signed out
	ProviderLabel string         // how the user signed in: "Google"
	CreatedAt     time.Time
	ExpiresAt     time.Time
	Lost          bool // the browser's session is gone (expired, signed out, restart of a memory store)
}

// signInButton is one provider's button on the home page.
type signInButton struct {
	Provider string // "google"
	Label    string // "Google"
	Href     string // its start route, with the page to come back to
}

type sessionsPage struct {
	page
	User     auth.Identity
	Store    string
	Sessions []sessionView
}

type appPage struct {
	page
	User auth.Identity
}

type errorPage struct {
	page
	Status    int
	Detail    string
	RequestID string
}
