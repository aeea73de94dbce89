package apiproxy

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Upstream is one remote API the proxy may reach: requests to
// /api/remote/{Name}/rest go to Base + rest.
type Upstream struct {
	Name string
	// Base is absolute (http or https, with a host), has no userinfo,
	// query or fragment, and its path has no trailing slash ("" for the
	// host's root).
	Base *url.URL
}

// Loopback reports whether the upstream's host is localhost or a loopback
// address: the one case where plain http does not cross a network, so the
// caller may allow it in production.
func (u Upstream) Loopback() bool {
	if u.Base == nil {
		return false
	}
	h := u.Base.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// Parse reads a list of upstreams written "name=URL[,name2=URL2…]" (the
// API_PROXY variable); spaces around items, names and URLs are ignored, and
// an empty spec is no upstream at all. An error is one line naming the item
// at fault; the caller prefixes the variable's name.
//
// Names match ^[a-z0-9][a-z0-9_-]{0,31}$ so that they are one path segment
// that needs no escaping; a comma cannot appear in a URL here.
func Parse(spec string) ([]Upstream, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	var ups []Upstream
	seen := map[string]int{}
	for i, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		n := i + 1
		u, err := parseItem(item)
		if err != nil {
			return nil, fmt.Errorf("item %d (%q): %w", n, shown(item), err)
		}
		if first, dup := seen[u.Name]; dup {
			return nil, fmt.Errorf("item %d (%q): the name %q is already used by item %d", n, shown(item), u.Name, first)
		}
		seen[u.Name] = n
		ups = append(ups, u)
	}
	return ups, nil
}

func parseItem(item string) (Upstream, error) {
	if item == "" {
		return Upstream{}, fmt.Errorf("empty item (a stray comma?)")
	}
	name, raw, ok := strings.Cut(item, "=")
	if !ok {
		return Upstream{}, fmt.Errorf("want name=URL")
	}
	name, raw = strings.TrimSpace(name), strings.TrimSpace(raw)
	if !validName(name) {
		return Upstream{}, fmt.Errorf("the name must be 1 to 32 of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	// The parser's own error is not wrapped: it quotes the whole URL,
	// password included.
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return Upstream{}, fmt.Errorf("the URL does not parse")
	case u.Scheme == "":
		return Upstream{}, fmt.Errorf("the URL must be absolute (http:// or https://)")
	case u.Scheme != "http" && u.Scheme != "https":
		return Upstream{}, fmt.Errorf("the URL must be http or https")
	case u.User != nil:
		// Credentials belong in the token the proxy sends, not in
		// configuration that ends up in logs and process listings.
		return Upstream{}, fmt.Errorf("the URL must not contain userinfo")
	case u.Opaque != "" || u.Hostname() == "":
		return Upstream{}, fmt.Errorf("the URL must have a host")
	case u.RawQuery != "" || u.ForceQuery:
		// The browser's query is what the remote receives; a fixed one
		// would have to be merged with it, and may hold a secret.
		return Upstream{}, fmt.Errorf("the URL must not have a query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return Upstream{}, fmt.Errorf("the URL must not have a fragment")
	}
	// The base path is held to the same rules as the browser's part, so
	// that "under the base path" means what it says.
	esc := strings.TrimRight(u.EscapedPath(), "/")
	if reason := checkPath(esc); reason != "" {
		return Upstream{}, fmt.Errorf("the URL's path: %s", reason)
	}
	base, err := url.Parse(u.Scheme + "://" + u.Host + esc)
	if err != nil {
		return Upstream{}, fmt.Errorf("the URL does not parse")
	}
	return Upstream{Name: name, Base: base}, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// shown is an item as an error quotes it: without userinfo or query,
// which may hold secrets that the error would carry into a log.
func shown(item string) string {
	if i := strings.IndexByte(item, '?'); i >= 0 {
		item = item[:i+1] + "…"
	}
	if i := strings.Index(item, "://"); i >= 0 {
		host := item[i+3:]
		end := strings.IndexAny(host, "/?#")
		if end < 0 {
			end = len(host)
		}
		if at := strings.LastIndexByte(host[:end], '@'); at >= 0 {
			item = item[:i+3] + "…" + host[at:]
		}
	}
	return item
}
