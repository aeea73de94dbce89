// Package telemetry traces the app with OpenTelemetry: a server span for
// each incoming request, a client span for each outgoing one, spans around
// the session store, all exported over OTLP with secrets removed. It is off
// unless an endpoint is configured, and then costs nothing: Handler and
// Transport hand back what they were given.
//
// Nothing here touches OpenTelemetry's globals (otel.SetTracerProvider,
// otel.SetTextMapPropagator): the program passes the Tracing's provider and
// propagator to whatever needs them.
//
// # Where settings come from
//
// The program reads OTEL_* through its own getenv (a .env file under the
// process environment, or a test's map) and hands the values over in a
// Config. The SDK and the OTLP exporters read OTEL_* from the process
// environment too, under our options; New sets every setting a Config
// carries explicitly, so the Config always wins:
//
//   - the endpoint, its path, and plain text or TLS (from the URL's scheme,
//     even where OTEL_EXPORTER_OTLP_[TRACES_]INSECURE or, for gRPC,
//     OTEL_EXPORTER_OTLP_CERTIFICATE says otherwise);
//   - the headers (the Config's replace any from the environment, even
//     when it has none) and the encoding (protobuf, whatever
//     OTEL_EXPORTER_OTLP_PROTOCOL says);
//   - the sampler and its argument;
//   - the resource: the exported resource is exactly the Config's plus the
//     SDK's own telemetry.sdk.* (OTEL_RESOURCE_ATTRIBUTES and
//     OTEL_SERVICE_NAME from the process environment are ignored, see
//     redactingExporter).
//
// Settings a Config does not carry are still read by the SDK from the
// process environment (not from the .env file), with the SDK's defaults
// otherwise: OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, _COMPRESSION, the TLS
// files _CERTIFICATE, _CLIENT_CERTIFICATE and _CLIENT_KEY for an https
// endpoint, OTEL_BSP_* (batching: by default a batch every 5 s, at most 2048
// spans queued, more are dropped) and the span limits OTEL_SPAN_*_LIMIT,
// OTEL_ATTRIBUTE_*_LIMIT.
package telemetry

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/credentials/insecure"
)

// scope names this package's tracer (the store spans).
const scope = "example.com/oauth-sessions/internal/telemetry"

// Config is what the program reads from OTEL_* (the program parses and
// validates the environment; New takes the parsed values).
type Config struct {
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, a base URL such as
	// http://collector:4318 (OTLP/HTTP sends to its path + /v1/traces).
	// "" turns tracing off. http:// means plain text, https:// TLS.
	Endpoint string
	// Protocol is OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" (also when
	// "") or "grpc".
	Protocol string
	// Headers are OTEL_EXPORTER_OTLP_HEADERS, already decoded; they go with
	// every export (an API key for a hosted collector).
	Headers map[string]string
	// Sampler is OTEL_TRACES_SAMPLER: always_on, always_off, traceidratio,
	// parentbased_always_on (also when ""), parentbased_always_off,
	// parentbased_traceidratio.
	Sampler string
	// SamplerArg is OTEL_TRACES_SAMPLER_ARG, the ratio (0 to 1) of the
	// ratio samplers. The zero value means 0, sample nothing: the caller
	// sets 1 when the variable is unset, as the specification says.
	SamplerArg float64
	// ServiceName is OTEL_SERVICE_NAME (the caller defaults it; here ""
	// falls back to Resource's service.name, then "unknown_service").
	ServiceName string
	// Resource is OTEL_RESOURCE_ATTRIBUTES, already decoded. ServiceName
	// and Version win over its service.name and service.version.
	Resource map[string]string
	// Version is the service.version; "" sets none.
	Version string
}

// Tracing is the app's tracing, on or off. A nil *Tracing is off.
type Tracing struct {
	sdk        *sdktrace.TracerProvider // nil when off
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
	// meters is a no-op: otelhttp records metrics too, and would otherwise
	// use the global MeterProvider. The app's metrics are Prometheus's.
	meters metric.MeterProvider
}

// New checks cfg and, when it has an Endpoint, starts exporting spans. A
// protocol, sampler, sampler argument or endpoint New does not understand
// is an error naming it, even when tracing is off, so a typo fails at
// start-up rather than when tracing is turned on. New does not connect:
// a collector that is down loses spans, it does not stop the app.
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	t := &Tracing{
		provider:   noop.NewTracerProvider(),
		propagator: propagation.TraceContext{},
		meters:     metricnoop.NewMeterProvider(),
	}
	sampler, err := newSampler(cfg.Sampler, cfg.SamplerArg)
	if err != nil {
		return nil, err
	}
	protocol := cfg.Protocol
	if protocol == "" {
		protocol = "http/protobuf"
	}
	if protocol != "http/protobuf" && protocol != "grpc" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported (want http/protobuf or grpc)", cfg.Protocol)
	}
	if cfg.Endpoint == "" {
		return t, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q is not an http(s) base URL such as http://collector:4318", cfg.Endpoint)
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	exp, err := newExporter(ctx, protocol, cfg, u)
	if err != nil {
		return nil, err
	}
	t.sdk = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(redactingExporter{next: exp, res: res}),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	)
	t.provider = t.sdk
	return t, nil
}

// newSampler builds the sampler OTEL_TRACES_SAMPLER names, as the
// specification describes them (names compared as the SDK does, trimmed
// and lower-cased).
func newSampler(name string, arg float64) (sdktrace.Sampler, error) {
	ratio := func() (sdktrace.Sampler, error) {
		if math.IsNaN(arg) || arg < 0 || arg > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %v for %s: want a ratio from 0 to 1", arg, name)
		}
		return sdktrace.TraceIDRatioBased(arg), nil
	}
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return ratio()
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		root, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(root), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q is not supported (want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", name)
}

// newResource is the Config's resource and the SDK's own attributes, read
// from nothing else: resource.Default and resource.WithFromEnv would read
// OTEL_RESOURCE_ATTRIBUTES from the process environment.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := make([]attribute.KeyValue, 0, len(cfg.Resource)+2)
	for _, k := range slices.Sorted(maps.Keys(cfg.Resource)) {
		attrs = append(attrs, attribute.String(k, cfg.Resource[k]))
	}
	name := cfg.ServiceName
	if name == "" {
		name = cfg.Resource[string(semconv.ServiceNameKey)]
	}
	if name == "" {
		name = "unknown_service"
	}
	// Later duplicates win: these override the map's.
	attrs = append(attrs, semconv.ServiceName(name))
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	sdk, err := resource.New(ctx, resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	// Schemaless: merging two resources with different schema URLs fails,
	// and the SDK's follows its own semconv version.
	res, err := resource.Merge(sdk, resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	return res, nil
}

// newExporter makes the OTLP exporter. Its options override what it reads
// from the process environment (see the package doc).
func newExporter(ctx context.Context, protocol string, cfg Config, u *url.URL) (sdktrace.SpanExporter, error) {
	if protocol == "grpc" {
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpointURL(cfg.Endpoint),
			otlptracegrpc.WithHeaders(cfg.Headers),
		}
		if u.Scheme == "http" {
			// Explicit credentials, because the exporter prefers any
			// from OTEL_EXPORTER_OTLP_CERTIFICATE to "insecure".
			opts = append(opts, otlptracegrpc.WithTLSCredentials(insecure.NewCredentials()))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("OTLP/gRPC trace exporter for %s: %w", u.Host, err)
		}
		return exp, nil
	}
	// The base URL's path is kept (a collector behind a path prefix).
	exp, err := otlptracehttp.New(ctx,
		otlptracehttp.WithEndpointURL(strings.TrimRight(cfg.Endpoint, "/")+"/v1/traces"),
		otlptracehttp.WithHeaders(cfg.Headers),
		otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf),
	)
	if err != nil {
		return nil, fmt.Errorf("OTLP/HTTP trace exporter for %s: %w", u.Host, err)
	}
	return exp, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.sdk != nil }

// Provider is where the app's tracers come from; a no-op provider when off.
func (t *Tracing) Provider() trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	return t.provider
}

// Propagator reads and writes the W3C traceparent and tracestate headers.
// Not baggage: whatever a client puts there would go on to the providers
// and remote APIs the app calls. It is the same on or off.
func (t *Tracing) Propagator() propagation.TextMapPropagator {
	if t == nil {
		return propagation.TraceContext{}
	}
	return t.propagator
}

// Handler wraps h so that each request is a server span, continuing the
// trace of an incoming traceparent header. The span is named after the
// method ("GET"; "HTTP" for a method HTTP does not define); the app renames
// it to "GET /route/template" once its router has matched
// (trace.SpanFromContext(ctx).SetName, with http.route). It records the
// path but not the query (url.query is dropped at export anyway). When
// tracing is off Handler returns h itself. Requests for the untraced
// paths (probes, scrapes) make no span.
//
// Beware: if a net/http ServeMux inside h matches the request, otelhttp
// renames the span after the ServeMux pattern when h returns, over the app's
// name.
func (t *Tracing) Handler(h http.Handler, untraced ...string) http.Handler {
	if !t.Enabled() {
		return h
	}
	return otelhttp.NewHandler(h, "http.server",
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(t.meters),
		// Probes and scrapes come every few seconds and say nothing a
		// trace would: they stay out, or they would be most of them.
		otelhttp.WithFilter(func(r *http.Request) bool { return !slices.Contains(untraced, r.URL.Path) }),
	)
}

// Transport wraps rt (http.DefaultTransport when nil) so that each outgoing
// request is a client span, child of the span in the request's context,
// and carries the traceparent header. Requests must be made
// with the incoming request's context (http.NewRequestWithContext) for the
// spans to join its trace. When tracing is off Transport returns rt
// unchanged, nil included.
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if !t.Enabled() {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithMeterProvider(t.meters),
	)
}

// Shutdown exports the spans still queued and stops the exporter, within
// ctx's deadline; spans started afterwards are dropped. It does nothing when
// tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down tracing: %w", err)
	}
	return nil
}
