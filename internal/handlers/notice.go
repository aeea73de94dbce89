package handlers

import (
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"example.com/oauth-sessions/internal/httpsession"
)

// A notice is a one-time message for the next page a browser sees ("You
// have signed out", "You cancelled the sign-in"): a short cookie, signed so
// that no one can make the app show words of theirs, read and cleared by
// that page, so a reload does not show it again.
const noticeCookie = "notice"

// setNotice leaves text for the browser's next page.
func (s *server) setNotice(c echo.Context, text string) {
	r := c.Request()
	name := s.cookies.name(r, noticeCookie)
	v, err := s.Codec.EncodeValue(name, text)
	if err != nil {
		return // a notice is a courtesy; the redirect goes ahead without it
	}
	opts := s.cookies.attributes(r)
	http.SetCookie(c.Response(), &http.Cookie{Name: name, Value: v, Path: opts.Path, MaxAge: 120,
		HttpOnly: true, Secure: opts.Secure, SameSite: opts.SameSite})
}

// takeNotice returns the notice left for this page, if any, and clears it.
func (s *server) takeNotice(c echo.Context) string {
	r := c.Request()
	name := s.cookies.name(r, noticeCookie)
	value, ok := httpsession.Cookie(r, name)
	if !ok {
		return ""
	}
	opts := s.cookies.attributes(r)
	http.SetCookie(c.Response(), &http.Cookie{Name: name, Value: "", Path: opts.Path, MaxAge: -1,
		HttpOnly: true, Secure: opts.Secure, SameSite: opts.SameSite})
	text, err := s.Codec.DecodeValue(name, value)
	if err != nil || len(text) > 500 {
		return ""
	}
	return text
}

// when is a time as pages show it: machine-readable, exact, and relative
// to now ("in 9 minutes"), which static/page.js keeps current in the
// browser's own time zone; without JavaScript the server's words stand.
type when struct {
	Datetime string // RFC 3339, for <time datetime>
	Exact    string // "2026-11-29 09:40:12 UTC", on hover
	Relative string // "in 9 minutes", "2 minutes ago", "just now"
}

func (s *server) when(t time.Time) when {
	return when{Datetime: t.UTC().Format(time.RFC3339), Exact: t.UTC().Format("2006-01-02 15:04:05 UTC"), Relative: relative(t, s.now())}
}

// relative says how far t is from now in words.
func relative(t, now time.Time) string {
	d := t.Sub(now)
	future := d > 0
	if d < 0 {
		d = -d
	}
	if d < 45*time.Second {
		return "just now"
	}
	var n int
	var unit string
	switch {
	case d < 50*time.Minute:
		n, unit = int(math.Round(d.Minutes())), "minute"
	case d < 36*time.Hour:
		n, unit = int(math.Round(d.Hours())), "hour"
	default:
		n, unit = int(math.Round(d.Hours()/24)), "day"
	}
	if n != 1 {
		unit += "s"
	}
	if future {
		return fmt.Sprintf("in %d %s", n, unit)
	}
	return fmt.Sprintf("%d %s ago", n, unit)
}
