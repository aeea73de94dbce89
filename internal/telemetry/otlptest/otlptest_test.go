package otlptest

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func request(t *testing.T) []byte {
	t.Helper()
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	msg := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "shop")}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "scope"},
			Spans: []*tracepb.Span{{
				TraceId: bytes.Repeat([]byte{0xab}, 16), SpanId: bytes.Repeat([]byte{0x01}, 8), ParentSpanId: bytes.Repeat([]byte{0x02}, 8),
				Name: "GET", Kind: tracepb.Span_SPAN_KIND_SERVER,
				Attributes: []*commonpb.KeyValue{
					str("url.path", "/"),
					{Key: "n", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}},
					{Key: "list", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
						Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}, {Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}}},
					}}}},
				},
				Events: []*tracepb.Span_Event{{Name: "exception", Attributes: []*commonpb.KeyValue{str("exception.message", "boom")}}},
				Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"},
			}},
		}},
	}}}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, url, contentType, encoding string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestReceiver(t *testing.T) {
	r := Start(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(request(t))
	_ = zw.Close()

	if resp := post(t, r.URL+"/v1/traces", "application/json", "", []byte("{}")); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("JSON: %d, want 415", resp.StatusCode)
	}
	if resp := post(t, r.URL+"/v1/traces", "application/x-protobuf", "", []byte("\xff\xff")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage: %d, want 400", resp.StatusCode)
	}
	if n := len(r.Spans()); n != 0 {
		t.Fatalf("%d spans from bad requests", n)
	}
	resp := post(t, r.URL+"/v1/traces", "application/x-protobuf", "", request(t))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("plain: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// WaitFor waits for spans sent after it started.
	sent := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		req, _ := http.NewRequest(http.MethodPost, r.URL+"/v1/traces", bytes.NewReader(gz.Bytes()))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		sent <- err
	}()
	r.WaitFor(t, 5*time.Second, func(s []Span) bool { return len(s) == 2 })
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	s := r.Spans()[1]
	want := Span{
		TraceID: "abababababababababababababababab", SpanID: "0101010101010101", ParentSpanID: "0202020202020202",
		Name: "GET", Kind: "server", Scope: "scope", StatusCode: "error", StatusMessage: "boom",
	}
	if s.TraceID != want.TraceID || s.SpanID != want.SpanID || s.ParentSpanID != want.ParentSpanID || s.Name != want.Name ||
		s.Kind != want.Kind || s.Scope != want.Scope || s.StatusCode != want.StatusCode || s.StatusMessage != want.StatusMessage {
		t.Errorf("span %+v, want %+v", s, want)
	}
	if s.Attributes["url.path"] != "/" || s.Attributes["n"] != "200" || s.Attributes["list"] != "[true, 0.5]" || s.Resource["service.name"] != "shop" {
		t.Errorf("attributes %v, resource %v", s.Attributes, s.Resource)
	}
	if len(s.Events) != 1 || s.Events[0].Name != "exception" || s.Events[0].Attributes["exception.message"] != "boom" {
		t.Errorf("events %v", s.Events)
	}
	if h := r.Headers(); len(h) != 2 || h[1].Get("Content-Encoding") != "gzip" {
		t.Errorf("headers %v", h)
	}
}
