package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/examples/typesafe/contract"
)

// demoTimeout bounds the whole demo, so that a hang is reported as a failure.
const demoTimeout = 30 * time.Second

// demo is the server and the client of the one-process demo.
type demo struct {
	out *console
	srv *listening
	cli *client
}

// run is the default mode: a server and a client in one process, step by
// step. It returns the first step that did not behave as described.
func run(ctx context.Context, w io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	start := time.Now()
	d := &demo{out: newConsole(w)}
	d.out.printf("netmsg typesafe demo: a server and a client in one process")

	d.srv, err = listen(ctx, newServer(d.out, false), "127.0.0.1:0")
	if err != nil {
		return err
	}
	url := wsURL(d.srv.addr)
	d.out.printf("   server: listening on %s", url)
	d.cli = newClient(url, d.out, "typesafe demo client", netmsg.WithReconnect(quickBackOff()))
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close()) // idempotent: Close and shutdown run once
		}
	}()
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	err = d.cli.Connect(cctx)
	ccancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"A request and its typed response", d.request},
		{"Messages both ways", d.messages},
		{"A request from the server to the client", d.serverRequest},
		{"A handler error arrives as *netmsg.Error", d.handlerError},
		{"A timeout", d.timeout},
		{"A reconnect after the server restarts", d.reconnect},
	}
	for i, st := range steps {
		d.out.printf("\n%d. %s", i+1, st.title)
		if err := st.run(ctx); err != nil {
			return fmt.Errorf("step %d, %s: %w", i+1, st.title, err)
		}
	}

	d.out.printf("\nClosing: the client, then the server")
	if err := d.close(); err != nil {
		return err
	}
	d.out.printf("\nAll %d steps passed in %v.", len(steps), time.Since(start).Round(10*time.Millisecond))
	return nil
}

// close closes the client, then shuts the server down.
func (d *demo) close() error {
	err := d.cli.Close()
	return errors.Join(err, d.srv.shutdown())
}

// quickBackOff is a reconnect policy for the demo: 50 ms, doubling, at most
// 500 ms. Real clients use netmsg.DefaultBackOff(), which starts at 500 ms.
func quickBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.Multiplier = 2
	b.MaxInterval = 500 * time.Millisecond
	b.MaxElapsedTime = 0 // never give up; Close stops it
	b.Reset()
	return b
}

// 1. WeatherRequest → WeatherResponse.
func (d *demo) request(ctx context.Context) error {
	resp, err := d.cli.weather(ctx, "Bonn")
	if err != nil {
		return err
	}
	if resp != forecasts["Bonn"] {
		return fmt.Errorf("got %+v, want %+v", resp, forecasts["Bonn"])
	}
	return nil
}

// 2. A message from the client to the server, whose handler answers with a
// message to the client; then a broadcast from the server.
func (d *demo) messages(ctx context.Context) error {
	if err := d.cli.chat(ctx, "hello from the client"); err != nil {
		return err
	}
	if _, err := d.cli.waitNotice(ctx, 2*time.Second); err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	n := contract.Notice{Text: "a broadcast to every session"}
	d.out.printf("   server → all clients: Broadcast %s{Text: %q}", netmsg.TypeName(n), n.Text)
	if err := d.srv.Broadcast(ctx, n); err != nil {
		return fmt.Errorf("broadcast: %w", err)
	}
	if _, err := d.cli.waitNotice(ctx, 2*time.Second); err != nil {
		return fmt.Errorf("the broadcast: %w", err)
	}
	return nil
}

// 3. The server sends a request to the client, whose handler answers it.
func (d *demo) serverRequest(ctx context.Context) error {
	var sess *netmsg.Session
	for s := range d.srv.Sessions() {
		sess = s
	}
	if sess == nil || d.srv.SessionCount() != 1 {
		return fmt.Errorf("the server has %d sessions, want 1", d.srv.SessionCount())
	}
	req := contract.StatusRequest{}
	d.out.printf("   server → client: %s on session %s", netmsg.TypeName(req), sess.ID())
	resp, err := netmsg.SendRequest(ctx, sess, req)
	if err != nil {
		return err
	}
	d.out.printf("   server ← client: %T{Client: %q, Notices: %d, Platform: %q}", resp, resp.Client, resp.Notices, resp.Platform)
	if resp.Notices != 2 {
		return fmt.Errorf("the client counted %d notices, want 2", resp.Notices)
	}
	return nil
}

// 4. The handler returns netmsg.Errorf(netmsg.CodeNotFound, ...); the caller
// gets it back as a *netmsg.Error with the same code and message.
func (d *demo) handlerError(ctx context.Context) error {
	_, err := d.cli.weather(ctx, "Atlantis")
	var e *netmsg.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("want a *netmsg.Error, got %T: %v", err, err)
	}
	d.out.printf("   errors.As(err, &e): e.Code = %s (%d), e.Message = %q", e.Code, uint32(e.Code), e.Message)
	if e.Code != netmsg.CodeNotFound {
		return fmt.Errorf("code %s, want %s", e.Code, netmsg.CodeNotFound)
	}
	return nil
}

// 5. A handler that needs 2 s, a caller that waits 200 ms: the caller gets a
// deadline error, and the handler's ctx is cancelled.
func (d *demo) timeout(ctx context.Context) error {
	err := d.cli.slow(ctx, 2*time.Second, 200*time.Millisecond)
	if err == nil {
		return errors.New("the slow request succeeded; want a deadline error")
	}
	is := errors.Is(err, context.DeadlineExceeded)
	d.out.printf("   errors.Is(err, context.DeadlineExceeded) = %t", is)
	if !is {
		return fmt.Errorf("want a deadline error, got %v", err)
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-d.srv.slowStopped:
		return nil
	case <-t.C:
		return errors.New("the slow handler's ctx was not cancelled")
	}
}

// 6. The server shuts down and a new one starts on the same address. A
// request made while the client is disconnected waits for the reconnection
// (wait-for-ready) and then succeeds.
func (d *demo) reconnect(ctx context.Context) error {
	addr := d.srv.addr
	d.out.printf("   server: Shutdown: running handlers finish, then sessions close with 1001 and a reconnect hint")
	if err := d.srv.shutdown(); err != nil {
		return err
	}
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case ce := <-d.cli.disconnected:
		if ce.Reason != netmsg.CloseServerShutdown {
			return fmt.Errorf("close reason %s, want %s", ce.Reason, netmsg.CloseServerShutdown)
		}
		d.out.printf("   client: the server asked for at least %v before the first attempt; ShouldReconnect() = %t",
			ce.ReconnectAfter(), ce.ShouldReconnect())
	case <-t.C:
		return errors.New("the client did not notice the shutdown")
	}

	type result struct {
		resp contract.WeatherResponse
		err  error
	}
	results := make(chan result, 1)
	d.out.printf("   client: state %s; a request made now waits for the connection", d.cli.State())
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := d.cli.weather(rctx, "Lisbon")
		results <- result{resp, err}
	}()
	select {
	case r := <-results:
		return fmt.Errorf("the request returned while no server was running: %+v, %v", r.resp, r.err)
	case <-time.After(100 * time.Millisecond):
	}

	srv, err := listen(ctx, newServer(d.out, false), addr)
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	d.srv = srv
	d.out.printf("   server: restarted on %s", wsURL(addr))

	select {
	case r := <-results:
		if r.err != nil {
			return fmt.Errorf("the request made during the outage: %w", r.err)
		}
		if r.resp != forecasts["Lisbon"] {
			return fmt.Errorf("got %+v, want %+v", r.resp, forecasts["Lisbon"])
		}
	case <-time.After(6 * time.Second):
		return errors.New("the request made during the outage did not return")
	}
	if st := d.cli.State(); st != netmsg.StateConnected {
		return fmt.Errorf("client state %s, want %s", st, netmsg.StateConnected)
	}
	return nil
}
