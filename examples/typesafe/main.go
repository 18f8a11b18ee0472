// Command typesafe is the netmsg demo to run first:
//
//	go run ./examples/typesafe
//
// With no flags it starts a server and a client in one process, on a free
// loopback port, and walks through netmsg step by step: a request and its
// typed response, messages both ways, a request from the server to the
// client, a handler error arriving as *netmsg.Error, a timeout, and a
// reconnect after the server restarts. It exits 0 when every step behaved as
// described and 1 (printing what went wrong) otherwise, so it doubles as a
// smoke test.
//
// The two halves also run on their own, in two terminals:
//
//	go run ./examples/typesafe -server 127.0.0.1:8080
//	go run ./examples/typesafe -client ws://127.0.0.1:8080/
//
// On a terminal the client reads commands from stdin (w = weather, m =
// message, q = quit; h lists them all); with stdin redirected it sends a
// fixed sequence once and exits.
//
// The shared request, response and message types live in package contract.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	serverAddr := flag.String("server", "", "run only the server, listening on `ADDR` (such as 127.0.0.1:8080)")
	clientURL := flag.String("client", "", "run only the client, connecting to `URL` (such as ws://127.0.0.1:8080/)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: typesafe [-server ADDR | -client URL]\n\n"+
			"With no flags, runs a server and a client in one process and shows netmsg step by step.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || (*serverAddr != "" && *clientURL != "") {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case *serverAddr != "":
		err = runServer(ctx, *serverAddr, os.Stdout)
	case *clientURL != "":
		err = runClient(ctx, *clientURL, os.Stdin, isTerminal(os.Stdin), os.Stdout)
	default:
		err = run(ctx, os.Stdout)
	}
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "typesafe: FAILED: %v\n", err)
		os.Exit(1)
	}
}

// isTerminal reports whether f is a character device, such as a terminal,
// rather than a pipe or a file.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// console writes whole lines for the demo's goroutines: handlers and
// connection callbacks print from the goroutines netmsg runs them on.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func newConsole(w io.Writer) *console { return &console{w: w} }

func (c *console) printf(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format+"\n", a...)
}
