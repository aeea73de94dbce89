package httpsession

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// A request's Cookie header can carry thousands of made-up cookies (a 32 KB
// header holds 2,500 of them), on routes anyone may call unthrottled
// (/api/auth/me, every page). net/http's r.Cookies() makes a *http.Cookie
// of each, and r.Cookie(name) trims and splits every one of them per
// lookup: hundreds of microseconds and most of a megabyte of garbage for
// such a request. The lookups below search the header for the name itself
// (a vectorised byte search), then check only the cookie found there, by
// net/http's rules (readCookies): they answer what r.Cookie would, allocate
// nothing, and look at each cookie of the header at most once.

// maxCookies is net/http's default limit on the cookies of one request
// (GODEBUG httpcookiemaxnum): above it, r.Cookie finds none, and neither
// do these.
const maxCookies = 3000

func tooManyCookies(lines []string) bool {
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	return n > maxCookies
}

// splitCookie reads one ';'-separated part of a Cookie header as
// net/http does.
func splitCookie(part string) (name, raw string) {
	name, raw, _ = strings.Cut(textproto.TrimString(part), "=")
	return textproto.TrimString(name), raw
}

// cookieValue checks a raw cookie value as net/http does: quotes around
// it are dropped, every byte must be allowed.
func cookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}

// Cookie returns the value of the request's first well-formed cookie
// called name, as r.Cookie would.
func Cookie(r *http.Request, name string) (string, bool) {
	lines := r.Header["Cookie"]
	if !httpguts.ValidHeaderFieldName(name) || tooManyCookies(lines) {
		return "", false
	}
	for _, line := range lines {
		// pos is always the start of a part: each part is looked at once.
		for pos := 0; pos <= len(line); {
			k := strings.Index(line[pos:], name)
			if k < 0 {
				break
			}
			i := pos + k
			start, end := pos, len(line) // the part that holds i
			if b := strings.LastIndexByte(line[pos:i], ';'); b >= 0 {
				start = pos + b + 1
			}
			if e := strings.IndexByte(line[i:], ';'); e >= 0 {
				end = i + e
			}
			if n, raw := splitCookie(line[start:end]); n == name {
				if v, ok := cookieValue(raw); ok {
					return v, true
				}
			}
			pos = end + 1
		}
	}
	return "", false
}

// CookieNames returns the names of the newest limit cookies (each name once,
// well-formed ones only) whose names start with prefix, in the order the
// browser sent them (browsers send older cookies first). It searches from
// the end of the header, so a request stuffed with thousands of such
// cookies costs a handful.
func CookieNames(r *http.Request, prefix string, limit int) []string {
	lines := r.Header["Cookie"]
	if tooManyCookies(lines) {
		return nil
	}
	out := make([]string, 0, limit)
	for l := len(lines) - 1; l >= 0 && len(out) < limit; l-- {
		line := lines[l]
		// Parts before end are still to be looked at, newest first.
		for end := len(line); end >= 0 && len(out) < limit; {
			k := strings.LastIndex(line[:end], prefix)
			if k < 0 {
				break
			}
			start, stop := strings.LastIndexByte(line[:k], ';')+1, end // the part that holds k
			if e := strings.IndexByte(line[k:end], ';'); e >= 0 {
				stop = k + e
			}
			name, raw := splitCookie(line[start:stop])
			if strings.HasPrefix(name, prefix) && !slices.Contains(out, name) && httpguts.ValidHeaderFieldName(name) {
				if _, ok := cookieValue(raw); ok {
					out = append(out, name)
				}
			}
			end = start - 1
		}
	}
	slices.Reverse(out)
	return out
}
