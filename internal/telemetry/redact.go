package telemetry

import (
	"context"
	"regexp"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// redactingExporter hands next a redacted view of every span, so that no
// span leaves the process with a secret in it, whoever recorded it
// (otelhttp, a library's instrumentation, the app). The rules, applied to
// span, event and link attributes alike:
//
//   - An attribute is dropped when its key is url.query, starts with
//     http.request.header. or http.response.header., or contains, in any
//     case, one of secretWords (cookie, authorization, token, secret,
//     password, passwd, credential, session, email, code, state, nonce,
//     apikey, api_key) — unless it is one of keptKeys, which are known to be
//     harmless (http.response.status_code, this package's session_store.*,
//     the code.* source location, ...).
//   - The values of url.full, http.url and http.target lose their query
//     string and fragment: scheme://host/path is kept.
//   - In every other string value (and the status description) a URL
//     loses its user:password@, query string and fragment, and anything
//     shaped like an email address becomes "[email]": an error message
//     ("Get https://h/cb?code=...") must not carry what the attribute
//     rules removed.
//
// It also reports res as every span's resource: sdktrace.WithResource
// merges OTEL_RESOURCE_ATTRIBUTES from the process environment into the
// provider's, and the app's configuration comes from its own getenv.
type redactingExporter struct {
	next sdktrace.SpanExporter
	res  *resource.Resource
}

func (e redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redact(s, e.res)
	}
	return e.next.ExportSpans(ctx, out)
}

func (e redactingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// redactedSpan is s with its attributes, events, links, status and
// resource replaced. Embedding the interface is what lets it be a
// ReadOnlySpan (which has an unexported method): the OTLP exporter reads
// spans only through the interface's methods.
type redactedSpan struct {
	sdktrace.ReadOnlySpan
	attrs  []attribute.KeyValue
	events []sdktrace.Event
	links  []sdktrace.Link
	status sdktrace.Status
	res    *resource.Resource
}

func redact(s sdktrace.ReadOnlySpan, res *resource.Resource) redactedSpan {
	r := redactedSpan{ReadOnlySpan: s, attrs: redactAttrs(s.Attributes()), status: s.Status(), res: res}
	r.status.Description = scrubText(r.status.Description)
	if ev := s.Events(); len(ev) > 0 {
		r.events = make([]sdktrace.Event, len(ev))
		for i, e := range ev {
			e.Attributes = redactAttrs(e.Attributes)
			r.events[i] = e
		}
	}
	if ls := s.Links(); len(ls) > 0 {
		r.links = make([]sdktrace.Link, len(ls))
		for i, l := range ls {
			l.Attributes = redactAttrs(l.Attributes)
			r.links[i] = l
		}
	}
	return r
}

func (s redactedSpan) Attributes() []attribute.KeyValue { return s.attrs }
func (s redactedSpan) Events() []sdktrace.Event         { return s.events }
func (s redactedSpan) Links() []sdktrace.Link           { return s.links }
func (s redactedSpan) Status() sdktrace.Status          { return s.status }
func (s redactedSpan) Resource() *resource.Resource     { return s.res }

// secretWords mark an attribute key as one that may hold a secret or
// personal data. Broad on purpose ("code" catches an OAuth code under any
// name, "state" the OAuth state): an attribute lost is cheaper than a
// token leaked. Read-only.
var secretWords = []string{
	"cookie", "authorization", "token", "secret", "password", "passwd", "credential",
	"session", "email", "code", "state", "nonce", "apikey", "api_key",
}

// keptKeys are keys that contain a secret word but hold nothing secret.
// Read-only.
var keptKeys = map[string]bool{
	"http.response.status_code": true, "http.status_code": true,
	"rpc.grpc.status_code": true, "rpc.response.status_code": true, "db.response.status_code": true,
	attrStoreName: true, attrStoreFound: true, attrStoreInserted: true, attrStoreCount: true,
}

// urlKeys hold URLs (or a path with a query) whose query and fragment go.
var urlKeys = map[string]bool{"url.full": true, "http.url": true, "http.target": true}

// secretKey reports whether attributes under k are dropped.
func secretKey(k string) bool {
	if keptKeys[k] || strings.HasPrefix(k, "code.") { // code.*: source locations
		return false
	}
	if k == "url.query" || strings.HasPrefix(k, "http.request.header.") || strings.HasPrefix(k, "http.response.header.") {
		return true
	}
	lk := strings.ToLower(k)
	for _, w := range secretWords {
		if strings.Contains(lk, w) {
			return true
		}
	}
	return false
}

// redactAttrs applies the rules to attrs, returning attrs itself when
// nothing changes (most spans) and a copy otherwise.
func redactAttrs(attrs []attribute.KeyValue) []attribute.KeyValue {
	var out []attribute.KeyValue // nil until something changes
	for i, kv := range attrs {
		nkv, keep, changed := redactAttr(kv)
		if out == nil {
			if keep && !changed {
				continue
			}
			out = append(make([]attribute.KeyValue, 0, len(attrs)), attrs[:i]...)
		}
		if keep {
			out = append(out, nkv)
		}
	}
	if out == nil {
		return attrs
	}
	return out
}

// redactAttr returns kv as exported, whether it is kept at all, and
// whether its value changed.
func redactAttr(kv attribute.KeyValue) (out attribute.KeyValue, keep, changed bool) {
	k := string(kv.Key)
	if secretKey(k) {
		return kv, false, true
	}
	switch kv.Value.Type() {
	case attribute.STRING:
		v := kv.Value.AsString()
		nv := scrubText(v)
		if urlKeys[k] {
			nv = stripQuery(nv)
		}
		if nv != v {
			return attribute.String(k, nv), true, true
		}
	case attribute.STRINGSLICE:
		vs := kv.Value.AsStringSlice() // a copy
		for i, v := range vs {
			if nv := scrubText(v); nv != v {
				vs[i], changed = nv, true
			}
		}
		if changed {
			return attribute.StringSlice(k, vs), true, true
		}
	}
	return kv, true, false
}

// stripQuery cuts s at its query string or fragment.
func stripQuery(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i]
	}
	return s
}

// emailLike matches what looks like an email address. Read-only (a Regexp
// is safe for concurrent use).
var emailLike = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+`)

// scrubText removes, from free text, the user:password@, query and
// fragment of every URL in it, and email addresses.
func scrubText(s string) string {
	if strings.Contains(s, "://") {
		s = scrubURLs(s)
	}
	if strings.IndexByte(s, '@') >= 0 {
		s = emailLike.ReplaceAllString(s, "[email]")
	}
	return s
}

func scrubURLs(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		// The URL runs to the first character that cannot be in one
		// unescaped.
		end := strings.IndexAny(s, " \t\r\n\"'<>`")
		if end < 0 {
			end = len(s)
		}
		u := s[:end]
		s = s[end:]
		if at := strings.LastIndexByte(authority(u), '@'); at >= 0 {
			u = u[at+1:]
		}
		b.WriteString(stripQuery(u))
	}
}

// authority is the part of u (a URL after its "scheme://") before its
// path, query or fragment.
func authority(u string) string {
	if i := strings.IndexAny(u, "/?#"); i >= 0 {
		return u[:i]
	}
	return u
}
