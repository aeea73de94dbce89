package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"example.com/oauth-sessions/internal/telemetry/otlptest"
)

// BenchmarkHandler is the cost of tracing a request, in-process: off,
// sampling every request, one in ten, and none. Spans go to an otlptest
// receiver in the same process, so the on cases' ns/op include some of
// the export's (batched, in the background) work; allocs/op are the
// request path's plus the export's share. "off" is the baseline: its
// allocations are httptest.NewRecorder's.
func BenchmarkHandler(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	})
	for _, c := range []struct {
		name string
		cfg  func(endpoint string) Config
	}{
		{"off", func(string) Config { return Config{} }},
		{"on-100%", func(e string) Config {
			return Config{Endpoint: e, Sampler: "parentbased_traceidratio", SamplerArg: 1}
		}},
		{"on-10%", func(e string) Config {
			return Config{Endpoint: e, Sampler: "parentbased_traceidratio", SamplerArg: 0.1}
		}},
		// The fixed cost of an unsampled request (otelhttp's wrapping).
		{"on-0%", func(e string) Config {
			return Config{Endpoint: e, Sampler: "parentbased_traceidratio", SamplerArg: 0}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			rcv := otlptest.Start(b)
			tr, err := New(context.Background(), c.cfg(rcv.URL))
			if err != nil {
				b.Fatal(err)
			}
			h := tr.Handler(ok)
			req := httptest.NewRequest(http.MethodGet, "/app/items", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
			// What reached the receiver: the batch processor drops spans
			// when its queue (2048) is full, as it would in production.
			if err := tr.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(rcv.Spans()))/float64(b.N), "exported/op")
		})
	}
}
