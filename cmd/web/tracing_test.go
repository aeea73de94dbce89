package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/telemetry/otlptest"
	"example.com/oauth-sessions/internal/testbackends"
)

// TestTraces: with OTEL_EXPORTER_OTLP_ENDPOINT set, a sign-in against a
// provider on its own server is one trace in which the callback's server
// span (named by its route) is the parent of the token exchange's client
// span and of the session store's write, on every store (and the store
// client's own spans are under the write where it has a server); the
// request's log line carries the trace id; traceparent goes out to the
// provider and is honoured coming in; and no span of the whole sign-in,
// API call and sign-out carries a token, the cookie, the code, the state
// or the email.
func TestTraces(t *testing.T) {
	p := startIDP(t)
	for _, srv := range testbackends.All() {
		t.Run(srv.Name, func(t *testing.T) {
			recv := otlptest.Start(t)
			env := withStore(t, offlineEnv(t, p, t.TempDir()), srv)
			env["OTEL_EXPORTER_OTLP_ENDPOINT"] = recv.URL
			env["OTEL_TRACES_SAMPLER"] = "always_on"
			a := startApp(t, env)
			b := newBrowser(t)
			cb := b.approve(b.startLogin(a, ""), "Ada", "ada@example.com")
			if res := b.get(cb); res.Status != http.StatusFound {
				t.Fatalf("callback = %d %s", res.Status, res.Body)
			}
			sid := b.cookie(a.URL, "sid").Value
			if r := b.get(a.URL + "/api/app/profile"); r.Status != http.StatusOK {
				t.Fatalf("profile = %d %s", r.Status, r.Body)
			}
			// A trace begun upstream (a proxy, the browser's own tracing).
			const upstream = "4bf92f3577b34da6a3ce929d0e0e4736"
			req, _ := http.NewRequest(http.MethodGet, a.URL+"/api/auth/me", nil)
			req.Header.Set("Traceparent", "00-"+upstream+"-00f067aa0ba902b7-01")
			b.do(req)
			b.postForm(a.URL+"/api/auth/logout", url.Values{})
			a.stop(t) // flushes the spans

			spans := recv.Spans()
			var callback *otlptest.Span
			for i, s := range spans {
				if s.Name == "GET /api/auth/google/callback" && s.Kind == "server" {
					callback = &spans[i]
				}
			}
			if callback == nil {
				t.Fatalf("no server span named by the callback's route among %d spans: %v", len(spans), spanNames(spans))
			}
			if callback.Attributes["http.route"] != "/api/auth/google/callback" {
				t.Errorf("the callback's span has http.route %q", callback.Attributes["http.route"])
			}
			var exchange, write *otlptest.Span
			for i, s := range spans {
				if s.ParentSpanID != callback.SpanID || s.TraceID != callback.TraceID {
					continue
				}
				if s.Kind == "client" && strings.HasSuffix(s.Attributes["url.full"], "/token") {
					exchange = &spans[i]
				}
				if s.Name == "session_store.save" {
					write = &spans[i]
				}
			}
			if exchange == nil || write == nil {
				t.Fatalf("under the callback's span: token exchange %v, store write %v; spans: %v", exchange != nil, write != nil, spanNames(spans))
			}
			if definition(t, srv).Shared {
				found := false
				for _, s := range spans {
					found = found || (s.ParentSpanID == write.SpanID && s.Kind == "client")
				}
				if !found {
					t.Errorf("the %s store's write has no client span of its own beneath it: %v", srv.Name, spanNames(spans))
				}
			}
			if !slicesContainsPrefix(p.tokens.Traceparents(), "00-"+callback.TraceID+"-") {
				t.Errorf("the token request carried traceparents %v, none of the callback's trace %s", p.tokens.Traceparents(), callback.TraceID)
			}
			line := regexp.MustCompile(`(?m)^.*path=/api/auth/google/callback .*$`).FindString(a.logs.String())
			if !strings.Contains(line, "trace_id="+callback.TraceID) || !strings.Contains(line, "span_id=") {
				t.Errorf("the callback's log line does not carry its trace id %s:\n%s", callback.TraceID, line)
			}
			continued := false
			for _, s := range spans {
				continued = continued || (s.Kind == "server" && s.TraceID == upstream)
			}
			if !continued {
				t.Error("a request with a traceparent did not continue its trace")
			}

			// Nothing secret in any span.
			cbURL, _ := url.Parse(cb)
			secrets := map[string]string{"the code": cbURL.Query().Get("code"), "the state": cbURL.Query().Get("state"),
				"the session cookie": sid, "the email": "ada@example.com"}
			codec, err := httpsession.NewCodec([]string{testSecret}, 3600)
			if err != nil {
				t.Fatal(err)
			}
			token, err := codec.DecodeCookie("sid", sid)
			if err != nil {
				t.Fatal(err)
			}
			secrets["the session token"], secrets["the session's store key"] = token, httpsession.KeyFor(token)
			for i, tok := range p.tokens.Issued() {
				secrets["issued token "+string(rune('a'+i))] = tok
			}
			for _, s := range spans {
				all := s.Name + " " + s.StatusCode
				for k, v := range s.Attributes {
					all += " " + k + "=" + v
				}
				for _, e := range s.Events {
					all += " " + e.Name
					for k, v := range e.Attributes {
						all += " " + k + "=" + v
					}
				}
				for what, secret := range secrets {
					if secret != "" && strings.Contains(all, secret) {
						t.Errorf("span %q carries %s", s.Name, what)
					}
				}
			}
		})
	}
}

func spanNames(spans []otlptest.Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Kind + ":" + s.Name
	}
	return out
}

func slicesContainsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
