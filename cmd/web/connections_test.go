package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/oauth-sessions/internal/testservers"
)

// dialFrom opens a connection to addr from the loopback address src
// (127.0.0.2 and up): another client, as far as the app can tell.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keepAliveRequest sends one request on c and reads its answer, leaving
// the connection open and idle, as a browser's keep-alive connection is.
func keepAliveRequest(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		return err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	res.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return nil
}

// probed is what a probe saw: how long new clients waited.
type probed struct {
	p50, p99, worst time.Duration
	failed, total   int
}

func (p probed) String() string {
	return fmt.Sprintf("new client: p50 %s, p99 %s, worst %s, %d of %d failed", p.p50.Round(time.Millisecond), p.p99.Round(time.Millisecond), p.worst.Round(time.Millisecond), p.failed, p.total)
}

// probe is a new client every 100 ms (a new connection from 127.0.0.1,
// GET /healthz, 5 s timeout) until more says stop, given the rounds done.
func probe(base string, more func(rounds int) bool) probed {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var took []time.Duration
	failed := 0
	for more(len(took)) {
		start := time.Now()
		res, err := client.Get(base + "/healthz")
		if err != nil {
			failed++
		} else {
			res.Body.Close()
		}
		took = append(took, time.Since(start))
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(took)
	at := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
	return probed{p50: at(0.5), p99: at(0.99), worst: took[len(took)-1], failed: failed, total: len(took)}
}

// rounds is a probe's stop rule: n rounds.
func rounds(n int) func(int) bool { return func(done int) bool { return done < n } }

// TestIdleConnectionsMakeRoom: clients that send one request each and
// then hold their keep-alive connections open past the connection cap do
// not lock anyone out: at the cap, idle connections are closed, and new
// clients are answered.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["MAX_CONNECTIONS"] = "64"
	a := startApp(t, env)
	addr := a.addr

	// 80 idle keep-alive connections from 8 addresses, 10 each (under
	// the per-address cap): more than the cap of 64.
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 80 {
		wg.Go(func() {
			c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 2+i%8), addr)
			if keepAliveRequest(c) == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	// Those past the cap wait to be accepted until an idle one is closed:
	// the dialer does not wait for that, the request does.
	wg.Wait()
	pr := probe(a.URL, rounds(20))
	t.Logf("%d idle connections held; %s", len(conns), pr)
	if pr.failed > 0 {
		t.Fatalf("%d of 20 new clients got no answer within 5s while idle connections filled the cap", pr.failed)
	}
	if len(conns) != 80 {
		t.Fatalf("%d of 80 connections got their first request answered, want all (idle ones make room)", len(conns))
	}
	// Closed by the server: a read ends at once.
	if closedNow(conns) == 0 {
		t.Fatal("no idle connection was closed at the cap")
	}
}

// closedNow counts the connections the server has closed: a read ends
// at once with an error rather than waiting (all read at the same time,
// for 200 ms).
func closedNow(conns []net.Conn) int {
	var closed atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			if isClosed(c, 200*time.Millisecond) {
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	return int(closed.Load())
}

// isClosed reports whether the server closed c: a read within wait ends
// with an error other than the deadline.
func isClosed(c net.Conn, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	ne, ok := err.(net.Error)
	return err != nil && !(ok && ne.Timeout())
}

// TestConnectionsPerAddressAreCapped: one client trickling the headers of
// requests on many connections holds MAX_CONNECTIONS_PER_ADDRESS of them
// at most; the rest are closed at once, and other clients are answered.
func TestConnectionsPerAddressAreCapped(t *testing.T) {
	p := startIDP(t)
	env := baseEnv(t, p, t.TempDir())
	env["MAX_CONNECTIONS_PER_ADDRESS"] = "8"
	a := startApp(t, env)

	var conns []net.Conn
	for range 30 {
		c := dialFrom(t, "127.0.0.9", a.addr)
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: app\r\n") // and never the blank line
		conns = append(conns, c)
	}
	// The ones past the cap are closed as soon as they are accepted, which
	// under load may take a moment after the dial; all well within the 3s
	// header timeout, which would close them all.
	closed := 0
	open := slices.Clone(conns)
	testservers.WaitUntil(t, 2500*time.Millisecond, func() bool {
		open = slices.DeleteFunc(open, func(c net.Conn) bool {
			if isClosed(c, 20*time.Millisecond) {
				closed++
				return true
			}
			return false
		})
		return closed >= 22
	}, "22 of 30 connections from one address closed")
	pr := probe(a.URL, rounds(10))
	t.Logf("30 trickling connections from one address: %d closed; from another address, %s", closed, pr)
	if closed != 22 {
		t.Fatalf("%d of 30 connections from one address closed, want 22 (a cap of 8)", closed)
	}
	if n := metric(t, a, "http_connections_refused_total"); n != 22 {
		t.Fatalf("http_connections_refused_total = %.0f, want 22", n)
	}
	if pr.failed > 0 {
		t.Fatalf("%d of 10 clients from another address got no answer", pr.failed)
	}
}
