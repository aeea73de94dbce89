// Package otlptest is an OTLP trace receiver for tests: an in-process
// collector that keeps the spans it is sent, flattened into plain strings,
// so a test can assert on names, parents and attributes, or search every
// exported value for a secret.
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds an export request (after decompression).
const maxBody = 32 << 20

// Span is one received span. IDs are lowercase hex ("" for no parent);
// every attribute value is rendered as a string (see Value).
type Span struct {
	TraceID, SpanID, ParentSpanID string
	Name                          string
	// Kind is "server", "client", "internal", "producer", "consumer" or
	// "unspecified".
	Kind       string
	Attributes map[string]string
	Events     []Event
	Resource   map[string]string
	// Scope is the instrumentation scope's name (the tracer's name).
	Scope string
	// StatusCode is "unset", "ok" or "error"; StatusMessage the
	// description that goes with an error.
	StatusCode    string
	StatusMessage string
}

// Event is one span event.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Receiver collects the spans exported to it. It is safe for concurrent
// use.
type Receiver struct {
	// URL is the base URL to export to (OTEL_EXPORTER_OTLP_ENDPOINT):
	// http://127.0.0.1:port, no trailing slash.
	URL string

	mu      sync.Mutex
	spans   []Span
	headers []http.Header // one per export, as received
	// changed is closed, and replaced, whenever spans are added.
	changed chan struct{}
}

// Start runs an OTLP/HTTP receiver until the test ends. It accepts POST
// /v1/traces with a protobuf body (Content-Type application/x-protobuf),
// gzip-encoded or not, and answers as a collector does: 200 with an
// ExportTraceServiceResponse, or 400/405/415 for a request it cannot use.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{changed: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// StartGRPC runs an OTLP/gRPC receiver until the test ends; URL is
// http://127.0.0.1:port (plain text), to use with protocol "grpc". Request
// metadata are kept as Headers.
func StartGRPC(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{changed: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcService{r: r})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	r.URL = "http://" + l.Addr().String()
	return r
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := http.Header{}
	for k, vs := range md {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	g.r.add(h, req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, fmt.Sprintf("Content-Type %q: want application/x-protobuf", ct), http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = req.Body
	switch enc := req.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, "bad gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	default:
		http.Error(w, fmt.Sprintf("Content-Encoding %q: want gzip or none", enc), http.StatusUnsupportedMediaType)
		return
	}
	data, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil || len(data) > maxBody {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &msg); err != nil {
		http.Error(w, "not an ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.add(req.Header.Clone(), &msg)
	out, err := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *Receiver) add(h http.Header, msg *coltracepb.ExportTraceServiceRequest) {
	var got []Span
	for _, rs := range msg.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, span(s, res, ss.GetScope().GetName()))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headers = append(r.headers, h)
	if len(got) > 0 {
		r.spans = append(r.spans, got...)
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

func span(s *tracepb.Span, res map[string]string, scope string) Span {
	out := Span{
		TraceID:       hex.EncodeToString(s.GetTraceId()),
		SpanID:        hex.EncodeToString(s.GetSpanId()),
		ParentSpanID:  hex.EncodeToString(s.GetParentSpanId()),
		Name:          s.GetName(),
		Kind:          strings.ToLower(strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_")),
		Attributes:    attrs(s.GetAttributes()),
		Resource:      res,
		Scope:         scope,
		StatusCode:    strings.ToLower(strings.TrimPrefix(s.GetStatus().GetCode().String(), "STATUS_CODE_")),
		StatusMessage: s.GetStatus().GetMessage(),
	}
	for _, e := range s.GetEvents() {
		out.Events = append(out.Events, Event{Name: e.GetName(), Attributes: attrs(e.GetAttributes())})
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = Value(kv.GetValue())
	}
	return m
}

// Value renders an attribute value as a string: strings as they are,
// numbers and booleans as Go's strconv writes them, bytes in base64,
// arrays as [a, b] and maps as {k: v, ...}.
func Value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, Value(e))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *commonpb.AnyValue_KvlistValue:
		parts := make([]string, 0, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+": "+Value(kv.GetValue()))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return ""
}

// Spans returns a copy of every span received so far, in order of
// arrival.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Headers returns the headers (gRPC: metadata) of every export request
// received so far, in order of arrival.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]http.Header, len(r.headers))
	for i, h := range r.headers {
		out[i] = h.Clone()
	}
	return out
}

// WaitFor waits until pred holds for the spans received so far, checking
// each time spans arrive, and fails the test (t.Fatalf, so call it from the
// test's goroutine) with a summary of what did arrive if it does not hold
// within timeout. Spans are batched by the exporter: shut the exporter down
// or flush it, or allow for its batch delay (5 s by default).
func (r *Receiver) WaitFor(t testing.TB, timeout time.Duration, pred func([]Span) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		spans := append([]Span(nil), r.spans...)
		changed := r.changed
		r.mu.Unlock()
		if pred(spans) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("otlptest: after %v, the %d spans received do not match:\n%s", timeout, len(spans), Summary(spans))
		}
	}
}

// Summary lists spans one a line (trace, span, parent, kind, name), for
// failure messages.
func Summary(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  trace %s span %s parent %-16s %-8s %q\n", s.TraceID, s.SpanID, s.ParentSpanID, s.Kind, s.Name)
	}
	return b.String()
}
