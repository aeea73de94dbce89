// Package metrics exposes Prometheus metrics for the session store and the
// login flow. Each Metrics has its own registry, so tests and several
// servers in one process never share counters.
package metrics

import (
	"context"
	"iter"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
)

// Metrics holds the collectors and their registry.
type Metrics struct {
	reg      *prometheus.Registry
	storeDur *prometheus.HistogramVec
	storeErr *prometheus.CounterVec
	logins   *prometheus.CounterVec
	logouts  *prometheus.CounterVec
	rejected *prometheus.CounterVec
	refused  prometheus.Counter
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// The provider tokens kept to call APIs as the user (apitokens).
	refreshes, refreshWaits, revocations *prometheus.CounterVec
	// lastRefused is when the store last refused a write (Unix ns, 0: never).
	lastRefused atomic.Int64
}

// New registers the app's collectors and the Go runtime's.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		storeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "session_store_operation_duration_seconds",
			Help:    "Latency of session store operations.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"store", "operation"}),
		storeErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "session_store_errors_total",
			Help: "Session store operations that failed (system errors, not 'not found').",
		}, []string{"store", "operation"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_logins_total",
			Help: "Logins by provider, stage (started, succeeded, failed, refused) and, for failures and refusals, reason.",
		}, []string{"provider", "stage", "reason"}),
		logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_backchannel_logouts_total",
			Help: "Back-channel logout requests by provider and result (ended, invalid, replayed, refused).",
		}, []string{"provider", "result"}),
	}
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "session_cookies_rejected_total",
		Help: "Session cookies refused before any store read (bad signature, malformed); counted, not logged one by one.",
	}, []string{"reason"})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "session_store_writes_refused_total",
		Help: "Requests turned away because the session store refused a write for lack of room (a server at its memory ceiling, a full disk).",
	})
	// Labelled by the route's template, never the raw path: a scanner must
	// not make a series per URL it tries.
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total",
		Help: "HTTP requests by method, route template (\"unmatched\" for no route) and status.",
	}, []string{"method", "route", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "Time to answer HTTP requests, by method and route template.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "route"})
	m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oauth_token_refreshes_total",
		Help: "Refreshes of users' provider tokens by provider and result: ok, invalid_grant (access revoked: the user must reconnect), provider_error (unreachable, 5xx, timeout: tokens kept), interrupted (an earlier refresh never recorded its outcome: the user must reconnect), store_error.",
	}, []string{"provider", "result"})
	m.refreshWaits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oauth_token_refresh_waits_total",
		Help: "Requests that found another request (of any instance) refreshing the same session's tokens, by outcome: used_theirs, took_over (theirs ended without a fresh token), timed_out (503).",
	}, []string{"provider", "outcome"})
	m.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oauth_token_revocations_total",
		Help: "Provider tokens revoked at sign-out (RFC 7009), by provider and result (ok, failed).",
	}, []string{"provider", "result"})
	m.reg.MustRegister(m.storeDur, m.storeErr, m.logins, m.logouts, m.rejected, m.refused, m.requests, m.latency,
		m.refreshes, m.refreshWaits, m.revocations,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request counts one HTTP request answered with status after took. route
// is the route's template ("/api/auth/sessions/:id"), or "" for a request no
// route matched; a method the app does not know counts as "other".
func (m *Metrics) Request(method, route string, status int, took time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(method, route).Observe(took.Seconds())
}

// Login counts a login event with provider (its route's name); reason is
// empty except for failures and refusals.
func (m *Metrics) Login(provider, stage, reason string) {
	m.logins.WithLabelValues(provider, stage, reason).Inc()
}

// BackchannelLogout counts a back-channel logout request and its result.
func (m *Metrics) BackchannelLogout(provider, result string) {
	m.logouts.WithLabelValues(provider, result).Inc()
}

// ConnectionsRefused exports n, the connections closed as soon as they
// were accepted because their address held too many already.
func (m *Metrics) ConnectionsRefused(n func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "http_connections_refused_total",
		Help: "Connections closed as soon as accepted: their client address held MAX_CONNECTIONS_PER_ADDRESS already.",
	}, func() float64 { return float64(n()) }))
}

// BackchannelProvider makes p's back-channel logout counts exist from the
// start, at 0, so alerts and rates over them have series before the first.
func (m *Metrics) BackchannelProvider(provider string) {
	for _, result := range []string{"ended", "invalid", "replayed", "refused", "busy", "unverified"} {
		m.logouts.WithLabelValues(provider, result)
	}
}

// TokenProvider makes the token counts of provider exist from the start,
// at 0, so alerts and rates over them have series before the first event.
func (m *Metrics) TokenProvider(provider string) {
	for _, r := range []string{"ok", "invalid_grant", "provider_error", "interrupted", "store_error"} {
		m.refreshes.WithLabelValues(provider, r)
	}
	for _, o := range []string{"used_theirs", "took_over", "timed_out"} {
		m.refreshWaits.WithLabelValues(provider, o)
	}
	for _, r := range []string{"ok", "failed"} {
		m.revocations.WithLabelValues(provider, r)
	}
}

// TokenRefresh counts a refresh of a user's provider tokens.
func (m *Metrics) TokenRefresh(provider, result string) {
	m.refreshes.WithLabelValues(provider, result).Inc()
}

// TokenRefreshWait counts a request that waited for another's refresh.
func (m *Metrics) TokenRefreshWait(provider, outcome string) {
	m.refreshWaits.WithLabelValues(provider, outcome).Inc()
}

// TokenRevocation counts a revocation at sign-out.
func (m *Metrics) TokenRevocation(provider, result string) {
	m.revocations.WithLabelValues(provider, result).Inc()
}

// WriteRefused counts a request turned away because the store refused a
// write for lack of room.
func (m *Metrics) WriteRefused() {
	m.refused.Inc()
	m.lastRefused.Store(time.Now().UnixNano())
}

// LastWriteRefused returns when the store last refused a write (zero:
// never).
func (m *Metrics) LastWriteRefused() time.Time {
	if ns := m.lastRefused.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// CookieRejected counts a session cookie refused before any store read.
func (m *Metrics) CookieRejected(reason string) {
	m.rejected.WithLabelValues(reason).Inc()
}

// Cache exports the session cache's counters.
func (m *Metrics) Cache(c *httpsession.Cache) {
	counter := func(name, help string, v func(httpsession.CacheStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(c.Stats())) })
	}
	m.reg.MustRegister(
		counter("session_cache_hits_total", "Session checks answered from memory.", func(s httpsession.CacheStats) uint64 { return s.Hits }),
		counter("session_cache_misses_total", "Session checks that went to the store.", func(s httpsession.CacheStats) uint64 { return s.Misses }),
		counter("session_cache_invalidations_total", "Invalidations received (one key, or everything).", func(s httpsession.CacheStats) uint64 { return s.Invalidations }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "session_cache_entries", Help: "Sessions held in the cache."},
			func() float64 { return float64(c.Stats().Entries) }),
	)
	m.readAtScrape(prometheus.GaugeOpts{Name: "session_cache_synced", Help: "1 while the cache is in step with the store (it serves), 0 while it is not (every session check reads the store)."},
		func(ctx context.Context) float64 { return boolGauge(c.Synced(ctx)) })
}

// Store wraps b so that every operation is timed and its errors counted,
// and, where b can count its records cheaply, exports that count. b's
// optional capabilities stay reachable through sessionstore.As.
func (m *Metrics) Store(name string, b sessionstore.Backend) sessionstore.Backend {
	// Every operation's error count exists from the start, at 0, so an
	// alert or a rate over it has a series before the first error.
	for _, op := range []string{"find", "save", "insert", "touch", "delete", "take", "by_owner", "ping"} {
		m.storeErr.WithLabelValues(name, op)
	}
	m.readAtScrape(prometheus.GaugeOpts{
		Name:        "session_store_up",
		Help:        "1 when the session store answered a ping at this scrape (what /readyz asks), 0 when not.",
		ConstLabels: prometheus.Labels{"store": name},
	}, func(ctx context.Context) float64 { return boolGauge(b.Ping(ctx) == nil) })
	if c, ok := sessionstore.As[sessionstore.Counter](b); ok {
		m.readAtScrape(prometheus.GaugeOpts{
			Name:        "session_store_live_records",
			Help:        "Live records in the session store (login sessions and logins in progress). Only for stores that count cheaply.",
			ConstLabels: prometheus.Labels{"store": name},
		}, func(ctx context.Context) float64 {
			n, err := c.CountLive(ctx)
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		})
	}
	return &instrumented{Backend: b, m: m, name: name}
}

type instrumented struct {
	sessionstore.Backend
	m    *Metrics
	name string
}

// Unwrap implements sessionstore.Wrapper.
func (s *instrumented) Unwrap() sessionstore.Backend { return s.Backend }

func (s *instrumented) observe(op string, start time.Time, err error) {
	s.m.storeDur.WithLabelValues(s.name, op).Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.storeErr.WithLabelValues(s.name, op).Inc()
	}
}

func (s *instrumented) Find(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	start := time.Now()
	e, found, err := s.Backend.Find(ctx, key)
	s.observe("find", start, err)
	return e, found, err
}

func (s *instrumented) Save(ctx context.Context, e sessionstore.Entry) error {
	start := time.Now()
	err := s.Backend.Save(ctx, e)
	s.observe("save", start, err)
	return err
}

func (s *instrumented) Insert(ctx context.Context, e sessionstore.Entry) (bool, error) {
	start := time.Now()
	inserted, err := s.Backend.Insert(ctx, e)
	s.observe("insert", start, err)
	return inserted, err
}

func (s *instrumented) Touch(ctx context.Context, key string, seen, exp time.Time) error {
	start := time.Now()
	err := s.Backend.Touch(ctx, key, seen, exp)
	s.observe("touch", start, err)
	return err
}

func (s *instrumented) ByOwner(ctx context.Context, owner string) ([]sessionstore.Entry, error) {
	start := time.Now()
	out, err := s.Backend.ByOwner(ctx, owner)
	s.observe("by_owner", start, err)
	return out, err
}

func (s *instrumented) Take(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	start := time.Now()
	e, found, err := s.Backend.Take(ctx, key)
	s.observe("take", start, err)
	return e, found, err
}

func (s *instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.Backend.Delete(ctx, key)
	s.observe("delete", start, err)
	return err
}

func (s *instrumented) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.Backend.Ping(ctx)
	s.observe("ping", start, err)
	return err
}

func (s *instrumented) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	return s.Backend.All(ctx)
}

// readAtScrape registers a gauge that read computes at each scrape, given
// 2 s at most (a store that does not answer must not hang the scrape).
func (m *Metrics) readAtScrape(opts prometheus.GaugeOpts, read func(context.Context) float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(opts, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return read(ctx)
	}))
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
