package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"example.com/oauth-sessions/internal/telemetry/otlptest"
)

// newTracing starts tracing for one test; it is shut down when the test
// ends, if the test has not done it.
func newTracing(t *testing.T, cfg Config) *Tracing {
	t.Helper()
	tr, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr
}

// flush exports every span ended so far: after it, a receiver has all it
// will ever get, so "nothing arrived" is a real answer.
func flush(t *testing.T, tr *Tracing) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func only(t *testing.T, spans []otlptest.Span, kind string) otlptest.Span {
	t.Helper()
	var found []otlptest.Span
	for _, s := range spans {
		if s.Kind == kind {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s span, got %d:\n%s", kind, len(found), otlptest.Summary(spans))
	}
	return found[0]
}

// values lists every exported string of spans: attributes, events,
// status messages, names.
func values(spans []otlptest.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name, s.StatusMessage)
		for k, v := range s.Attributes {
			out = append(out, k+"="+v)
		}
		for _, e := range s.Events {
			out = append(out, e.Name)
			for k, v := range e.Attributes {
				out = append(out, k+"="+v)
			}
		}
	}
	return out
}

// TestHandlerAndTransport: a request to the app that calls another service
// makes one trace: the server span, the client span under it, and the
// other service sees the trace in its traceparent header.
func TestHandlerAndTransport(t *testing.T) {
	rcv := otlptest.Start(t)
	tr := newTracing(t, Config{
		Endpoint: rcv.URL, Sampler: "always_on", ServiceName: "shop", Version: "1.2.3",
		Resource: map[string]string{"deployment.environment.name": "test", "service.name": "overridden"},
	})

	traceparents := make(chan string, 1)
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparents <- r.Header.Get("traceparent")
	}))
	t.Cleanup(downstream.Close)
	client := &http.Client{Transport: tr.Transport(nil)}
	app := httptest.NewServer(tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, downstream.URL+"/user?access_token=tok123", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_, _ = io.WriteString(w, "ok")
	})))
	t.Cleanup(app.Close)

	resp, err := http.Get(app.URL + "/callback?code=abc&state=xyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("app answered %d %q", resp.StatusCode, body)
	}
	flush(t, tr)

	spans := rcv.Spans()
	server, client2 := only(t, spans, "server"), only(t, spans, "client")
	if server.Name != "GET" || server.ParentSpanID != "" {
		t.Errorf("server span %q with parent %q, want GET, a root", server.Name, server.ParentSpanID)
	}
	if client2.TraceID != server.TraceID || client2.ParentSpanID != server.SpanID {
		t.Errorf("client span in trace %s under %s, want trace %s under the server span %s",
			client2.TraceID, client2.ParentSpanID, server.TraceID, server.SpanID)
	}
	if got, want := client2.Attributes["url.full"], downstream.URL+"/user"; got != want {
		t.Errorf("client url.full = %q, want %q (query removed)", got, want)
	}
	if server.Attributes["url.path"] != "/callback" || server.Attributes["http.response.status_code"] != "200" {
		t.Errorf("server attributes: %v", server.Attributes)
	}
	select {
	case tp := <-traceparents:
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[1] != server.TraceID || parts[2] != client2.SpanID || parts[3] != "01" {
			t.Errorf("downstream saw traceparent %q, want 00-%s-%s-01", tp, server.TraceID, client2.SpanID)
		}
	default:
		t.Error("the downstream service was not called")
	}
	for k, want := range map[string]string{"service.name": "shop", "service.version": "1.2.3", "deployment.environment.name": "test", "telemetry.sdk.language": "go"} {
		if got := server.Resource[k]; got != want {
			t.Errorf("resource %s = %q, want %q", k, got, want)
		}
	}
	for _, v := range values(spans) {
		for _, secret := range []string{"abc", "xyz", "tok123"} {
			if strings.Contains(v, secret) {
				t.Errorf("exported %q contains %q", v, secret)
			}
		}
	}
}

// TestHandlerContinuesIncomingTrace: a request with a W3C traceparent
// header gets a server span in that trace, under the caller's span.
func TestHandlerContinuesIncomingTrace(t *testing.T) {
	rcv := otlptest.Start(t)
	tr := newTracing(t, Config{Endpoint: rcv.URL, Sampler: "always_on"})
	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

	h := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest(http.MethodPost, "/api/auth/logout", nil)
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	flush(t, tr)

	s := only(t, rcv.Spans(), "server")
	if s.TraceID != traceID || s.ParentSpanID != parentID || s.Name != "POST" {
		t.Errorf("server span %q in trace %s under %s, want POST in %s under %s", s.Name, s.TraceID, s.ParentSpanID, traceID, parentID)
	}
	fields := tr.Propagator().Fields()
	for _, f := range []string{"traceparent", "tracestate"} {
		if !slices.Contains(fields, f) {
			t.Errorf("the propagator's fields %v lack %s", fields, f)
		}
	}
	if slices.Contains(fields, "baggage") {
		t.Error("the propagator passes baggage on: a client's baggage would reach the providers")
	}
}

// TestSamplers: each OTEL_TRACES_SAMPLER as the specification defines it,
// seen through what gets exported.
func TestSamplers(t *testing.T) {
	const sampled, unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	for _, c := range []struct {
		sampler     string
		arg         float64
		traceparent string
		exported    bool
	}{
		{"always_on", 0, "", true},
		{"always_on", 0, unsampled, true},
		{"always_off", 0, "", false},
		{"always_off", 0, sampled, false},
		{"traceidratio", 0, "", false},
		{"traceidratio", 1, "", true},
		{"", 0, "", true}, // parentbased_always_on
		{"parentbased_always_on", 0, unsampled, false},
		{"parentbased_always_off", 0, "", false},
		{"parentbased_always_off", 0, sampled, true},
		{"parentbased_traceidratio", 0, "", false},
		{"parentbased_traceidratio", 0, sampled, true},
		{"parentbased_traceidratio", 1, "", true},
		{" Always_On ", 0, "", true},
	} {
		name := c.sampler + "/" + map[string]string{"": "root", sampled: "sampled-parent", unsampled: "unsampled-parent"}[c.traceparent]
		t.Run(name, func(t *testing.T) {
			rcv := otlptest.Start(t)
			tr := newTracing(t, Config{Endpoint: rcv.URL, Sampler: c.sampler, SamplerArg: c.arg})
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if c.traceparent != "" {
				req.Header.Set("traceparent", c.traceparent)
			}
			tr.Handler(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), req)
			flush(t, tr)
			if got := len(rcv.Spans()); got != map[bool]int{true: 1, false: 0}[c.exported] {
				t.Errorf("%d spans exported, want exported = %v", got, c.exported)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Endpoint: "http://c:4318", Sampler: "sometimes"}, `OTEL_TRACES_SAMPLER "sometimes"`},
		{Config{Sampler: "jaeger_remote"}, `"jaeger_remote"`}, // even when off
		{Config{Endpoint: "http://c:4318", Protocol: "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL "http/json"`},
		{Config{Protocol: "udp"}, `"udp"`},
		{Config{Endpoint: "http://c:4318", Sampler: "traceidratio", SamplerArg: 1.5}, "OTEL_TRACES_SAMPLER_ARG 1.5"},
		{Config{Endpoint: "http://c:4318", Sampler: "parentbased_traceidratio", SamplerArg: -0.1}, "OTEL_TRACES_SAMPLER_ARG -0.1"},
		{Config{Endpoint: "collector:4318"}, `OTEL_EXPORTER_OTLP_ENDPOINT "collector:4318"`},
		{Config{Endpoint: "ftp://c:4318"}, `"ftp://c:4318"`},
		{Config{Endpoint: "http://c:4318/?x=1"}, `"http://c:4318/?x=1"`},
	} {
		tr, err := New(context.Background(), c.cfg)
		if err == nil {
			_ = tr.Shutdown(context.Background())
			t.Errorf("New(%+v) succeeded, want an error naming %s", c.cfg, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want it to name %s", c.cfg, err, c.want)
		}
	}
}

type okHandler struct{}

func (okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

// TestOff: without an endpoint, nothing is wrapped and nothing recorded;
// a nil *Tracing is off too.
func TestOff(t *testing.T) {
	off, err := New(context.Background(), Config{Sampler: "always_on"})
	if err != nil {
		t.Fatal(err)
	}
	for name, tr := range map[string]*Tracing{"no endpoint": off, "nil": nil} {
		if tr.Enabled() {
			t.Errorf("%s: Enabled", name)
		}
		h := &okHandler{}
		if got := tr.Handler(h); got != http.Handler(h) {
			t.Errorf("%s: Handler wrapped the handler: %T", name, got)
		}
		rt := &http.Transport{}
		if got := tr.Transport(rt); got != http.RoundTripper(rt) {
			t.Errorf("%s: Transport wrapped the transport: %T", name, got)
		}
		if got := tr.Transport(nil); got != nil {
			t.Errorf("%s: Transport(nil) = %T, want nil", name, got)
		}
		p := tr.Provider()
		if _, ok := p.(noop.TracerProvider); !ok {
			t.Errorf("%s: Provider is a %T, want a no-op", name, p)
		}
		_, span := p.Tracer("t").Start(context.Background(), "x")
		if span.IsRecording() || span.SpanContext().IsValid() {
			t.Errorf("%s: a span of the provider records", name)
		}
		if tr.Propagator() == nil {
			t.Errorf("%s: no propagator", name)
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("%s: Shutdown: %v", name, err)
		}
	}
}

// TestGRPC exports over OTLP/gRPC, headers becoming metadata.
func TestGRPC(t *testing.T) {
	rcv := otlptest.StartGRPC(t)
	tr := newTracing(t, Config{Endpoint: rcv.URL, Protocol: "grpc", Sampler: "always_on", ServiceName: "shop",
		Headers: map[string]string{"x-api-key": "k1"}})
	tr.Handler(okHandler{}).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	flush(t, tr)
	s := only(t, rcv.Spans(), "server")
	if s.Resource["service.name"] != "shop" {
		t.Errorf("resource %v", s.Resource)
	}
	if h := rcv.Headers(); len(h) == 0 || h[0].Get("x-api-key") != "k1" {
		t.Errorf("export metadata %v, want x-api-key: k1", h)
	}
}

// TestGRPCNothingListening: a collector that is not there costs the app
// nothing at start-up, and shutting down gives up when told to.
func TestGRPCNothingListening(t *testing.T) {
	tr, err := New(context.Background(), Config{Endpoint: "http://127.0.0.1:1", Protocol: "grpc", Sampler: "always_on"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if !tr.Enabled() {
		t.Fatal("not enabled")
	}
	_, span := tr.Provider().Tracer("t").Start(context.Background(), "lost")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = tr.Shutdown(ctx) // the span cannot be delivered: an error or not, it must not hang
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Shutdown took %v with a 300ms deadline", took)
	}
}

// TestConfigWinsOverEnvironment: the exporters and the SDK read OTEL_*
// from the process environment; what the Config says wins.
func TestConfigWinsOverEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://127.0.0.1:1",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/elsewhere",
		"OTEL_EXPORTER_OTLP_HEADERS":         "x-from-env=1",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS":  "x-from-env=2",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/json",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
		"OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false",
		"OTEL_TRACES_SAMPLER":                "always_off",
		"OTEL_RESOURCE_ATTRIBUTES":           "from.env=1,service.name=env-name",
		"OTEL_SERVICE_NAME":                  "env-name",
	} {
		t.Setenv(k, v)
	}
	for _, headers := range []map[string]string{{"x-api-key": "k1"}, nil} {
		rcv := otlptest.Start(t)
		tr := newTracing(t, Config{Endpoint: rcv.URL + "/", Sampler: "always_on", ServiceName: "shop", Headers: headers})
		tr.Handler(okHandler{}).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		flush(t, tr)

		s := only(t, rcv.Spans(), "server") // sent here, as protobuf, sampled
		if _, ok := s.Resource["from.env"]; ok || s.Resource["service.name"] != "shop" {
			t.Errorf("resource %v: want service.name shop and nothing from OTEL_RESOURCE_ATTRIBUTES", s.Resource)
		}
		h := rcv.Headers()
		if len(h) == 0 || h[0].Get("x-api-key") != headers["x-api-key"] || h[0].Get("x-from-env") != "" {
			t.Errorf("Config.Headers %v: export headers %v, want the Config's and not x-from-env", headers, h)
		}
	}
}
