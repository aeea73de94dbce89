package telemetry

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"example.com/oauth-sessions/internal/sessionstore"
)

// The attributes of store spans. Their keys contain "session", so the
// redacting exporter lets exactly these through (keptKeys).
const (
	attrStoreName     = "session_store.name"     // the SESSION_STORE name
	attrStoreFound    = "session_store.found"    // Find, Take
	attrStoreInserted = "session_store.inserted" // Insert
	attrStoreCount    = "session_store.count"    // records returned: ByOwner, All
)

// dbSystem is the db.system.name of the built-in store called store, when
// it has one.
func dbSystem(store string) (attribute.KeyValue, bool) {
	switch store {
	case "sqlite":
		return semconv.DBSystemNameSQLite, true
	// BEGIN remove:redis
	case "redis":
		return semconv.DBSystemNameRedis, true
	// END remove:redis
	// BEGIN remove:mongo
	case "mongo":
		return semconv.DBSystemNameMongoDB, true
		// END remove:mongo
	}
	return attribute.KeyValue{}, false
}

// Store wraps b so that each operation is an internal span from tp, named
// session_store.<operation> (find, save, insert, touch, delete, take,
// by_owner, ping; all is one span over the whole iteration, however long
// the caller takes over it), child of the span in the operation's context.
// Spans carry the store's name (store, as SESSION_STORE names it), its
// db.system.name when it has one, the operation and whether a record was
// found or inserted; failures are recorded as an exception event and an
// Error status. They never carry a key, an owner or data: an error message
// that contains the operation's key or owners has them replaced.
//
// b's optional capabilities stay reachable through sessionstore.As, and are
// not traced; neither is Close. With a nil or no-op tp, Store returns b.
func Store(b sessionstore.Backend, tp trace.TracerProvider, store string) sessionstore.Backend {
	if tp == nil {
		return b
	}
	if _, ok := tp.(noop.TracerProvider); ok {
		return b
	}
	attrs := []attribute.KeyValue{attribute.String(attrStoreName, store)}
	if sys, ok := dbSystem(store); ok {
		attrs = append(attrs, sys)
	}
	return &traced{Backend: b, tracer: tp.Tracer(scope), attrs: attrs}
}

type traced struct {
	sessionstore.Backend
	tracer trace.Tracer
	attrs  []attribute.KeyValue
}

// Unwrap implements sessionstore.Wrapper.
func (s *traced) Unwrap() sessionstore.Backend { return s.Backend }

// start begins the span of one operation; name is "session_store.<op>".
func (s *traced) start(ctx context.Context, name string) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(s.attrs...),
		trace.WithAttributes(semconv.DBOperationName(strings.TrimPrefix(name, "session_store."))))
}

// end records err, if any, and ends span. secrets are the key and owners
// of the operation: backends' own messages name none, but a driver's
// (a duplicate-key error) may quote them.
func end(span trace.Span, err error, secrets ...string) {
	if err != nil {
		msg := err.Error()
		for _, v := range secrets {
			if v != "" {
				msg = strings.ReplaceAll(msg, v, "[redacted]")
			}
		}
		// span.RecordError, with the cleaned message.
		span.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(
			semconv.ExceptionType(fmt.Sprintf("%T", err)), semconv.ExceptionMessage(msg)))
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// endEntry is end for a write of e, whose key and owners stay out of the
// span (the list of them is made only on a failure).
func endEntry(span trace.Span, err error, e sessionstore.Entry) {
	if err == nil {
		span.End()
		return
	}
	end(span, err, append([]string{e.Key}, e.Owners...)...)
}

func (s *traced) Find(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	ctx, span := s.start(ctx, "session_store.find")
	e, found, err := s.Backend.Find(ctx, key)
	span.SetAttributes(attribute.Bool(attrStoreFound, found))
	end(span, err, key)
	return e, found, err
}

func (s *traced) Save(ctx context.Context, e sessionstore.Entry) error {
	ctx, span := s.start(ctx, "session_store.save")
	err := s.Backend.Save(ctx, e)
	endEntry(span, err, e)
	return err
}

func (s *traced) Insert(ctx context.Context, e sessionstore.Entry) (bool, error) {
	ctx, span := s.start(ctx, "session_store.insert")
	inserted, err := s.Backend.Insert(ctx, e)
	span.SetAttributes(attribute.Bool(attrStoreInserted, inserted))
	endEntry(span, err, e)
	return inserted, err
}

func (s *traced) Touch(ctx context.Context, key string, seenAt, expiresAt time.Time) error {
	ctx, span := s.start(ctx, "session_store.touch")
	err := s.Backend.Touch(ctx, key, seenAt, expiresAt)
	end(span, err, key)
	return err
}

func (s *traced) Delete(ctx context.Context, key string) error {
	ctx, span := s.start(ctx, "session_store.delete")
	err := s.Backend.Delete(ctx, key)
	end(span, err, key)
	return err
}

func (s *traced) Take(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	ctx, span := s.start(ctx, "session_store.take")
	e, found, err := s.Backend.Take(ctx, key)
	span.SetAttributes(attribute.Bool(attrStoreFound, found))
	end(span, err, key)
	return e, found, err
}

func (s *traced) ByOwner(ctx context.Context, owner string) ([]sessionstore.Entry, error) {
	ctx, span := s.start(ctx, "session_store.by_owner")
	out, err := s.Backend.ByOwner(ctx, owner)
	span.SetAttributes(attribute.Int(attrStoreCount, len(out)))
	end(span, err, owner)
	return out, err
}

func (s *traced) Ping(ctx context.Context) error {
	ctx, span := s.start(ctx, "session_store.ping")
	err := s.Backend.Ping(ctx)
	end(span, err)
	return err
}

// All's span starts when the iteration does and ends when it stops.
func (s *traced) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	return func(yield func(sessionstore.Entry, error) bool) {
		ctx, span := s.start(ctx, "session_store.all")
		n := 0
		var err error
		defer func() {
			span.SetAttributes(attribute.Int(attrStoreCount, n))
			end(span, err)
		}()
		for e, ierr := range s.Backend.All(ctx) {
			if ierr != nil {
				err = ierr
			} else {
				n++
			}
			if !yield(e, ierr) {
				return
			}
		}
	}
}
