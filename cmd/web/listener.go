package main

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/netutil"
)

// connLimiter caps the server's open connections, in all and per client
// address, so that neither a crowd of connections nor one client can
// exhaust the process's file descriptors or lock others out.
//
//   - In all (max): beyond it, new connections wait in the kernel's queue
//     until one closes (netutil). Idle keep-alive connections must not be
//     what they wait for: once the cap is reached, the idle ones are closed
//     at once, and so is any connection that goes idle while it holds.
//   - Per address (perAddr, IPv6 by /64; 0: no cap): a connection beyond
//     it is closed as soon as it is accepted, so one client trickling
//     requests on thousands of connections holds perAddr places at most.
//     Behind a proxy every connection comes from the proxy, which is
//     expected to limit its clients: the program passes 0 there.
type connLimiter struct {
	net.Listener
	srv     *http.Server
	max     int64
	perAddr int

	open    atomic.Int64
	mu      sync.Mutex
	perKey  map[netip.Prefix]int
	refused atomic.Int64 // connections closed for their address's cap
}

// limitConnections wraps ln (served by srv) in the limits above.
func limitConnections(srv *http.Server, ln net.Listener, max, perAddr int) *connLimiter {
	l := &connLimiter{Listener: netutil.LimitListener(ln, max), srv: srv, max: int64(max), perAddr: perAddr, perKey: map[netip.Prefix]int{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		l.track(c, state)
		if prev != nil {
			prev(c, state)
		}
	}
	return l
}

// track counts open connections and frees places held by idle ones while
// the cap is reached.
func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		if l.open.Add(1) >= l.max {
			// Disabling keep-alives closes the idle connections; enabling
			// them again keeps the rest as they were.
			l.srv.SetKeepAlivesEnabled(false)
			l.srv.SetKeepAlivesEnabled(true)
		}
	case http.StateIdle:
		if l.open.Load() >= l.max {
			c.Close() // its place goes to a connection waiting to be accepted
		}
	case http.StateClosed, http.StateHijacked:
		l.open.Add(-1)
	}
}

// Accept returns the next connection within its address's cap; the ones
// beyond it are closed without a word (a client that opens so many is not
// a browser).
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.perAddr <= 0 {
			return c, err
		}
		key, ok := addrKey(c.RemoteAddr())
		if !ok {
			return c, nil
		}
		l.mu.Lock()
		if l.perKey[key] >= l.perAddr {
			l.mu.Unlock()
			l.refused.Add(1)
			c.Close()
			continue
		}
		l.perKey[key]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

func (l *connLimiter) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perKey[key]--; l.perKey[key] <= 0 {
		delete(l.perKey, key)
	}
}

// addrKey is the address a connection counts against: the IPv4 address,
// or the IPv6 /64 (one customer's network).
func addrKey(a net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// countedConn gives its address's place back when closed, once.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
