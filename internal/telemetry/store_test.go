package telemetry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/memstore"
	"example.com/oauth-sessions/internal/telemetry/otlptest"
)

const (
	storeKey   = "key-5f2b9c0d"
	storeOwner = "owner-8a1e7f"
	storeData  = "data-c4d3b2a1"
)

// TestStoreSpans: every operation of a wrapped store is a span under the
// request's, carrying the store's name and no key, owner or data.
func TestStoreSpans(t *testing.T) {
	rcv := otlptest.Start(t)
	tr := newTracing(t, Config{Endpoint: rcv.URL, Sampler: "always_on"})
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	b := Store(mem, tr.Provider(), "memory")

	ctx, parent := tr.Provider().Tracer("test").Start(context.Background(), "request")
	now := time.Now()
	e := sessionstore.Entry{Key: storeKey, Owners: []string{storeOwner}, Data: []byte(storeData), SeenAt: now, ExpiresAt: now.Add(time.Hour)}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Save(ctx, e))
	if _, found, err := b.Find(ctx, storeKey); err != nil || !found {
		t.Fatalf("Find: %v %v", found, err)
	}
	if inserted, err := b.Insert(ctx, e); err != nil || inserted {
		t.Fatalf("Insert over a live record: %v %v", inserted, err)
	}
	must(b.Touch(ctx, storeKey, now, now.Add(2*time.Hour)))
	if list, err := b.ByOwner(ctx, storeOwner); err != nil || len(list) != 1 {
		t.Fatalf("ByOwner: %d %v", len(list), err)
	}
	n := 0
	for _, err := range b.All(ctx) {
		must(err)
		n++
	}
	if n != 1 {
		t.Fatalf("All yielded %d", n)
	}
	must(b.Ping(ctx))
	if _, found, err := b.Take(ctx, storeKey); err != nil || !found {
		t.Fatalf("Take: %v %v", found, err)
	}
	if _, found, err := b.Find(ctx, storeKey); err != nil || found {
		t.Fatalf("Find after Take: %v %v", found, err)
	}
	must(b.Delete(ctx, storeKey))
	parent.End()
	flush(t, tr)

	spans := rcv.Spans()
	var names []string
	var request otlptest.Span
	for _, s := range spans {
		if s.Name == "request" {
			request = s
		}
	}
	for _, s := range spans {
		if s.Name == "request" {
			continue
		}
		names = append(names, s.Name)
		if s.ParentSpanID != request.SpanID || s.TraceID != request.TraceID || s.Kind != "internal" {
			t.Errorf("%s: %s span under %s, want internal under the request's %s", s.Name, s.Kind, s.ParentSpanID, request.SpanID)
		}
		if s.Attributes["session_store.name"] != "memory" || s.Attributes["db.operation.name"] != strings.TrimPrefix(s.Name, "session_store.") {
			t.Errorf("%s: attributes %v", s.Name, s.Attributes)
		}
	}
	want := []string{"session_store.all", "session_store.by_owner", "session_store.delete", "session_store.find", "session_store.find",
		"session_store.insert", "session_store.ping", "session_store.save", "session_store.take", "session_store.touch"}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("spans %v, want %v", names, want)
	}
	var found []string
	for _, s := range spans {
		switch s.Name {
		case "session_store.find", "session_store.take":
			found = append(found, s.Name+"="+s.Attributes["session_store.found"])
		case "session_store.insert":
			found = append(found, s.Name+"="+s.Attributes["session_store.inserted"])
		case "session_store.all", "session_store.by_owner":
			found = append(found, s.Name+"="+s.Attributes["session_store.count"])
		}
	}
	slices.Sort(found)
	wantFound := []string{"session_store.all=1", "session_store.by_owner=1", "session_store.find=false", "session_store.find=true",
		"session_store.insert=false", "session_store.take=true"}
	if !slices.Equal(found, wantFound) {
		t.Errorf("found/inserted/count attributes %v, want %v", found, wantFound)
	}
	for _, v := range values(spans) {
		for _, secret := range []string{storeKey, storeOwner, storeData} {
			if strings.Contains(v, secret) {
				t.Errorf("exported %q contains %q", v, secret)
			}
		}
	}
}

// failing is a store whose every lookup fails with a message quoting the
// key, as a driver's might.
type failing struct{ sessionstore.Backend }

func (f failing) Find(_ context.Context, key string) (sessionstore.Entry, bool, error) {
	return sessionstore.Entry{}, false, fmt.Errorf("lookup %q: %w", key, errors.New("connection reset"))
}

// TestStoreErrors: a failure is an exception event and an Error status,
// without the key it quotes.
func TestStoreErrors(t *testing.T) {
	rcv := otlptest.Start(t)
	tr := newTracing(t, Config{Endpoint: rcv.URL, Sampler: "always_on"})
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	b := Store(failing{mem}, tr.Provider(), "sqlite")
	if _, _, err := b.Find(context.Background(), storeKey); err == nil || !strings.Contains(err.Error(), storeKey) {
		t.Fatalf("Find: %v, want the backend's error unchanged", err)
	}
	flush(t, tr)

	spans := rcv.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans:\n%s", len(spans), otlptest.Summary(spans))
	}
	s := spans[0]
	if s.StatusCode != "error" || !strings.Contains(s.StatusMessage, "connection reset") || strings.Contains(s.StatusMessage, storeKey) {
		t.Errorf("status %s %q, want error, the message, without the key", s.StatusCode, s.StatusMessage)
	}
	if len(s.Events) != 1 || s.Events[0].Name != "exception" ||
		s.Events[0].Attributes["exception.message"] != `lookup "[redacted]": connection reset` || s.Events[0].Attributes["exception.type"] != "*fmt.wrapError" {
		t.Errorf("events %v", s.Events)
	}
	if s.Attributes["db.system.name"] != "sqlite" || s.Attributes["session_store.found"] != "false" {
		t.Errorf("attributes %v", s.Attributes)
	}
}

// TestStoreWrapper: capabilities stay reachable, and without a provider
// (or with a no-op one) there is no wrapper.
func TestStoreWrapper(t *testing.T) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	tr := newTracing(t, Config{Endpoint: "http://127.0.0.1:1", Sampler: "always_on"})
	b := Store(mem, tr.Provider(), "memory")
	if b == sessionstore.Backend(mem) {
		t.Fatal("not wrapped")
	}
	if w, ok := b.(sessionstore.Wrapper); !ok || w.Unwrap() != sessionstore.Backend(mem) {
		t.Error("the wrapper does not unwrap to the store")
	}
	if _, ok := sessionstore.As[sessionstore.ChangeFeed](b); !ok {
		t.Error("ChangeFeed unreachable through the wrapper")
	}
	if c, ok := sessionstore.As[sessionstore.Counter](b); !ok || c != sessionstore.Counter(mem) {
		t.Error("Counter unreachable through the wrapper")
	}
	if _, ok := b.(sessionstore.Counter); ok {
		t.Error("the wrapper itself claims a capability")
	}
	if got := Store(mem, nil, "memory"); got != sessionstore.Backend(mem) {
		t.Errorf("Store with no provider = %T", got)
	}
	if got := Store(mem, noop.NewTracerProvider(), "memory"); got != sessionstore.Backend(mem) {
		t.Errorf("Store with a no-op provider = %T", got)
	}
}
