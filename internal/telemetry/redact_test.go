package telemetry

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"example.com/oauth-sessions/internal/telemetry/otlptest"
)

// secretAttrs are what instrumentation might record during an OAuth
// callback; none of secretValues may be exported.
var (
	secretAttrs = []attribute.KeyValue{
		attribute.String("url.full", "https://user:pw@h/cb?code=abc&state=xyz#frag"),
		attribute.String("http.target", "/cb?code=abc&state=xyz"),
		attribute.String("url.query", "code=abc"),
		attribute.String("http.request.header.cookie", "sid=1"),
		attribute.StringSlice("http.response.header.set-cookie", []string{"sid=1"}),
		attribute.String("enduser.email", "a@b.c"),
		attribute.String("oauth.state", "xyz"),
		attribute.String("auth_code", "abc"),
		attribute.String("app.SessionID", "sid=1"),
		attribute.String("note", "signed in as a@b.c"),
		attribute.StringSlice("app.links", []string{"see https://h/cb?code=abc"}),
	}
	safeAttrs = []attribute.KeyValue{
		attribute.Int("http.response.status_code", 302),
		attribute.String("url.path", "/cb"),
		attribute.String("session_store.name", "sqlite"),
		attribute.Bool("session_store.found", true),
		attribute.String("code.function.name", "handlers.callback"),
		attribute.String("http.route", "/api/auth/:provider/callback"),
	}
	secretValues = []string{"abc", "xyz", "sid=1", "a@b.c", "secret", "user:pw", "frag"}
)

func secretEvent() sdktrace.Event {
	return sdktrace.Event{Name: "exception", Attributes: []attribute.KeyValue{
		attribute.String("token", "secret"),
		attribute.String("exception.message", `Get "https://h/userinfo?access_token=secret": EOF`),
	}}
}

// TestRedactingExporter hands a span carrying secrets to the redacting
// exporter and looks at what it passes on.
func TestRedactingExporter(t *testing.T) {
	next := tracetest.NewInMemoryExporter()
	res := resource.NewSchemaless(attribute.String("service.name", "shop"))
	stub := tracetest.SpanStub{
		Name:       "GET",
		Attributes: append(append([]attribute.KeyValue{}, secretAttrs...), safeAttrs...),
		Events:     []sdktrace.Event{secretEvent()},
		Links:      []sdktrace.Link{{Attributes: []attribute.KeyValue{attribute.String("session.id", "sid=1")}}},
		Status:     sdktrace.Status{Code: codes.Error, Description: "callback https://h/cb?code=abc failed for a@b.c"},
		Resource:   resource.NewSchemaless(attribute.String("from.env", "1")),
	}
	exp := redactingExporter{next: next, res: res}
	if err := exp.ExportSpans(context.Background(), []sdktrace.ReadOnlySpan{stub.Snapshot()}); err != nil {
		t.Fatal(err)
	}
	got := next.GetSpans()
	if len(got) != 1 {
		t.Fatalf("%d spans passed on", len(got))
	}
	s := got[0]
	all := map[string]string{"status": s.Status.Description}
	for _, kv := range s.Attributes {
		all[string(kv.Key)] = kv.Value.Emit()
	}
	for _, e := range s.Events {
		for _, kv := range e.Attributes {
			all["event "+string(kv.Key)] = kv.Value.Emit()
		}
	}
	for _, l := range s.Links {
		for _, kv := range l.Attributes {
			all["link "+string(kv.Key)] = kv.Value.Emit()
		}
	}
	for k, v := range all {
		for _, secret := range secretValues {
			if strings.Contains(v, secret) {
				t.Errorf("%s = %q contains %q", k, v, secret)
			}
		}
	}
	for k, want := range map[string]string{
		"url.full":                  "https://h/cb",
		"http.target":               "/cb",
		"note":                      "signed in as [email]",
		"app.links":                 `["see https://h/cb"]`,
		"event exception.message":   `Get "https://h/userinfo": EOF`,
		"status":                    "callback https://h/cb failed for [email]",
		"http.response.status_code": "302",
		"url.path":                  "/cb",
		"session_store.name":        "sqlite",
		"session_store.found":       "true",
		"code.function.name":        "handlers.callback",
		"http.route":                "/api/auth/:provider/callback",
	} {
		if all[k] != want {
			t.Errorf("%s = %q, want %q", k, all[k], want)
		}
	}
	for _, k := range []string{"url.query", "http.request.header.cookie", "http.response.header.set-cookie", "enduser.email",
		"oauth.state", "auth_code", "app.SessionID", "event token", "link session.id"} {
		if v, ok := all[k]; ok {
			t.Errorf("%s kept (%q)", k, v)
		}
	}
	if s.Resource != res {
		t.Errorf("resource %v, want the configured one", s.Resource)
	}
}

// TestRedactionOverOTLP: the redacted view goes through the real OTLP
// exporter (which reads spans only through their methods).
func TestRedactionOverOTLP(t *testing.T) {
	rcv := otlptest.Start(t)
	tr := newTracing(t, Config{Endpoint: rcv.URL, Sampler: "always_on"})
	_, span := tr.Provider().Tracer("test").Start(context.Background(), "GET", trace.WithAttributes(secretAttrs...))
	span.AddEvent("exception", trace.WithAttributes(secretEvent().Attributes...))
	span.SetStatus(codes.Error, "failed: https://h/cb?code=abc")
	span.End()
	flush(t, tr)

	spans := rcv.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans exported", len(spans))
	}
	for _, v := range values(spans) {
		for _, secret := range secretValues {
			if strings.Contains(v, secret) {
				t.Errorf("exported %q contains %q", v, secret)
			}
		}
	}
	if got := spans[0].Attributes["url.full"]; got != "https://h/cb" {
		t.Errorf("url.full = %q", got)
	}
	if len(spans[0].Events) != 1 || spans[0].StatusCode != "error" {
		t.Errorf("events %v, status %s: want the event and the status kept", spans[0].Events, spans[0].StatusCode)
	}
}

func TestSecretKey(t *testing.T) {
	for k, want := range map[string]bool{
		"url.query": true, "http.request.header.x-forwarded-for": true, "http.response.header.location": true,
		"Cookie": true, "http.authorization": true, "oauth.access_token": true, "client_secret": true,
		"user.password": true, "session.id": true, "enduser.email": true, "code": true, "oauth.state": true,
		"oidc.nonce": true, "x.apikey": true,
		"url.full": false, "url.path": false, "http.route": false, "http.request.method": false,
		"http.response.status_code": false, "rpc.grpc.status_code": false, "code.function.name": false,
		"session_store.name": false, "session_store.count": false, "db.system.name": false,
	} {
		if got := secretKey(k); got != want {
			t.Errorf("secretKey(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestScrubText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                               "plain",
		"https://h/p":                         "https://h/p",
		"https://h/p?a=1#f and http://x?y":    "https://h/p and http://x",
		"https://u:p@h:8443/p?q":              "https://h:8443/p",
		`Get "https://h/cb?code=abc": EOF`:    `Get "https://h/cb": EOF`,
		"mail a.b+c@example.co.uk now":        "mail [email] now",
		"no @ here":                           "no @ here",
		"<https://h/a?x=1>":                   "<https://h/a>",
		"two https://a/?1 https://b/#2 done.": "two https://a/ https://b/ done.",
	} {
		if got := scrubText(in); got != want {
			t.Errorf("scrubText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedactAttrsKeepsCleanSlice: spans with nothing to remove are passed
// on without a copy.
func TestRedactAttrsKeepsCleanSlice(t *testing.T) {
	in := append([]attribute.KeyValue{}, safeAttrs...)
	out := redactAttrs(in)
	if len(out) != len(in) || &out[0] != &in[0] {
		t.Errorf("a clean slice was copied")
	}
}
