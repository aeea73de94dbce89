// Command holdsockets holds thousands of listening sockets on loopback
// addresses other than 127.0.0.1 (127.0.0.2 and up), each on a port the
// system picks from the range it also gives to 127.0.0.1:0. A port probed
// free on 127.0.0.1 is then often taken on every address (":PORT"): the
// load under which a test harness that probes ports and binds them later
// fails at random. ./scripts/test runs the whole suite beside it.
//
//	go run ./internal/testservers/holdsockets -n 4000 -for 30m
//
// It prints "holding N sockets" once they are all open, and exits after
// -for or on SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 4000, "sockets to hold")
	d := flag.Duration("for", 30*time.Minute, "how long to hold them at most")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *d)
	defer cancel()
	var held []net.Listener
	for i := 0; len(held) < *n; i++ {
		// 127.0.0.2 … 127.0.0.254, then round again: many sockets per
		// address, each on its own ephemeral port.
		ip := fmt.Sprintf("127.0.0.%d", 2+i%253)
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			fmt.Fprintf(os.Stderr, "holdsockets: after %d sockets: %v\n", len(held), err)
			os.Exit(1)
		}
		held = append(held, l)
	}
	fmt.Printf("holding %d sockets\n", len(held))
	<-ctx.Done()
	for _, l := range held {
		l.Close()
	}
}
