package mongostore

import (
	"context"
	"sync"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracingMonitor makes a client span of every command the driver sends,
// through its command monitor: the driver (v2) has no OpenTelemetry
// instrumentation of its own, and contrib's otelmongo exists only for v1.
// A span names the command, the database and the connection's server;
// never the command's body, which holds the session's key and record.
func tracingMonitor(tp trace.TracerProvider) *event.CommandMonitor {
	tracer := tp.Tracer("example.com/oauth-sessions/internal/sessionstore/mongostore")
	var spans sync.Map // request id → trace.Span
	finish := func(id int64, err string) {
		if s, ok := spans.LoadAndDelete(id); ok {
			span := s.(trace.Span)
			if err != "" {
				span.SetStatus(codes.Error, err)
			}
			span.End()
		}
	}
	return &event.CommandMonitor{
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			_, span := tracer.Start(ctx, "mongodb."+e.CommandName, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
				attribute.String("db.system.name", "mongodb"),
				attribute.String("db.operation.name", e.CommandName),
				attribute.String("db.namespace", e.DatabaseName),
			))
			spans.Store(e.RequestID, span)
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { finish(e.RequestID, "") },
		Failed: func(_ context.Context, e *event.CommandFailedEvent) {
			// The failure's kind, not its message: a duplicate key error
			// quotes the key.
			finish(e.RequestID, "command failed")
		},
	}
}
