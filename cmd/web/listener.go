package main

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
)

// limitConnections caps the server's open connections at max: beyond it,
// new ones wait in the kernel's queue until one closes (netutil), so a
// crowd of connections cannot exhaust the process's file descriptors.
// Idle keep-alive connections would otherwise hold their places until
// their idle timeout: when the cap is reached, the server closes the idle
// ones at once (at most once a second), so idle clients never keep active
// ones waiting.
func limitConnections(srv *http.Server, ln net.Listener, max int) net.Listener {
	var open atomic.Int64
	var lastFlush atomic.Int64
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			if open.Add(1) >= int64(max) {
				now := time.Now().UnixNano()
				if last := lastFlush.Load(); now-last > int64(time.Second) && lastFlush.CompareAndSwap(last, now) {
					// Disabling keep-alives closes the idle connections;
					// enabling them again keeps the rest as they were.
					srv.SetKeepAlivesEnabled(false)
					srv.SetKeepAlivesEnabled(true)
				}
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
		if prev != nil {
			prev(c, state)
		}
	}
	return netutil.LimitListener(ln, max)
}
