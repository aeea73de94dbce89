package apiproxy

import (
	"strings"
	"unicode/utf8"
)

// maxDecodings is how many rounds of percent-decoding a segment is checked
// through. Some servers and frameworks decode a path more than once, so a
// segment is judged by what every round would make of it; past this many
// rounds a path is refused rather than decoded without end.
const maxDecodings = 3

// checkPath reports why p, a percent-encoded path that is appended to an
// upstream's base path, is refused, or "" when it is not. The rules exist
// so that no server between here and the remote (nor the remote itself)
// can read the path as reaching outside the base path or to another
// origin, however it normalises or decodes it.
func checkPath(p string) string {
	if p == "" {
		return ""
	}
	if p[0] != '/' {
		// Without a leading slash the path would run on from the base
		// path's last segment ("/v1" + "x" = "/v1x").
		return "the path must start with a slash"
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			// Browsers and some servers read a backslash as a slash,
			// which reopens every rule below (and "/\host" is
			// protocol-relative to a browser).
			return "the path must not contain a backslash"
		case c < 0x20 || c == 0x7f:
			// Control characters split or truncate requests and log
			// lines in the servers that let them through.
			return "the path must not contain control characters"
		case !pathByte(c):
			// Anything else must arrive percent-encoded: a raw "?" or "#"
			// would move the end of the path, a space or quote would
			// corrupt the request line.
			return "the path contains a character that must be percent-encoded"
		}
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "" && i < len(segs)-1 {
			// "//" is collapsed by some servers (changing which segment is
			// which), and "//host/x" or "/https://host/x" is read as an
			// absolute URL by others. A trailing slash is harmless.
			return "the path must not contain empty segments (//)"
		}
		if reason := checkSegment(seg); reason != "" {
			return reason
		}
	}
	return ""
}

// checkSegment checks one segment as sent and after each round of
// decoding. Percent-encoding must be valid as sent: servers differ on what
// an invalid escape means, and differences are what attacks are made of.
func checkSegment(seg string) string {
	if !validEscapes(seg) {
		return "the path has invalid percent-encoding"
	}
	s := seg
	for round := 0; ; round++ {
		if reason := checkDecoded(s, round); reason != "" {
			return reason
		}
		d := decodeLenient(s)
		if d == s {
			return ""
		}
		if round == maxDecodings {
			return "the path is percent-encoded too many times"
		}
		s = d
	}
}

// checkDecoded checks a segment after the given number of decoding rounds.
func checkDecoded(s string, round int) string {
	// Fullwidth dots and slashes become ASCII ones under Unicode
	// normalisation (NFKC), which some frameworks apply to paths.
	folded := s
	if strings.ContainsAny(s, "\uff0e\uff0f\uff3c") {
		folded = strings.NewReplacer("\uff0e", ".", "\uff0f", "/", "\uff3c", "\\").Replace(s)
	}
	// A path parameter does not hide a dot segment from servers that
	// strip it after normalising ("..;x" is ".." to Tomcat).
	name, _, _ := strings.Cut(folded, ";")
	switch {
	case name == "." || name == "..":
		// Dot segments climb out of the base path once anything
		// resolves them, encoded ("%2e%2e") or not.
		return "the path must not contain . or .. segments"
	case strings.ContainsAny(folded, "/\\"):
		// Only possible after decoding: an encoded slash (%2F) or
		// backslash (%5C) becomes a real one to a server that decodes
		// before routing, adding segments (and dot segments) unseen here.
		return "the path must not contain encoded slashes or backslashes"
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		// An encoded NUL (%00) truncates the path in C-based servers;
		// encoded CR/LF split headers and log lines.
		return "the path must not contain control characters"
	case round > 0 && !utf8.ValidString(s):
		// Overlong UTF-8 (%C0%AE for ".", %C0%AF for "/") is decoded as
		// the ASCII character by lenient decoders.
		return "the path must be valid UTF-8 once decoded"
	}
	return ""
}

// pathByte reports whether c may appear unencoded in a path segment
// (RFC 3986 pchar, plus "/" and the "%" of an escape).
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// decodeLenient decodes every valid escape and leaves the rest as it is,
// the way the most forgiving server would.
func decodeLenient(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
