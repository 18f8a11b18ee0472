package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/examples/typesafe/contract"
)

// client is the demo's netmsg client with its handlers registered.
type client struct {
	*netmsg.Client
	out *console

	notices      chan contract.Notice    // every Notice received, for the demo to wait on
	disconnected chan *netmsg.CloseError // every connection that ended
	received     atomic.Int64            // Notices received so far
}

// newClient returns a client for url whose connection callbacks print what
// happens, with handlers for what the server sends: Notice messages and
// StatusRequest requests.
func newClient(url string, out *console, name string, opts ...netmsg.ClientOption) *client {
	c := &client{
		out:          out,
		notices:      make(chan contract.Notice, 16),
		disconnected: make(chan *netmsg.CloseError, 4),
	}
	opts = append([]netmsg.ClientOption{
		netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
			// Runs after every (re)connection, before waiting calls are
			// released: the place to sign in again or re-subscribe.
			out.printf("   client: connected, session %s, serializer %s", s.ID(), s.Serializer().Name())
			return nil
		}),
		netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			out.printf("   client: disconnected: %s, close code %d %q", ce.Reason, ce.Code, ce.Text)
			select {
			case c.disconnected <- ce:
			default:
			}
		}),
		netmsg.WithOnReconnecting(func(attempt int, delay time.Duration) {
			out.printf("   client: reconnecting, attempt %d in %v", attempt, delay.Round(time.Millisecond))
		}),
	}, opts...)
	c.Client = netmsg.NewClient(url, opts...)

	netmsg.AddMessageHandler(c.Client, func(ctx context.Context, s *netmsg.Session, n contract.Notice) {
		c.received.Add(1)
		out.printf("   client: got %s from the server: %q", netmsg.TypeName(n), n.Text)
		select {
		case c.notices <- n:
		default:
		}
	})
	netmsg.AddRequestHandler(c.Client, func(ctx context.Context, s *netmsg.Session, _ contract.StatusRequest) (contract.StatusResponse, error) {
		out.printf("   client: handling %s from the server", netmsg.TypeName(contract.StatusRequest{}))
		return contract.StatusResponse{
			Client:   name,
			Notices:  int(c.received.Load()),
			Platform: runtime.GOOS + "/" + runtime.GOARCH,
		}, nil
	})
	return c
}

// weather sends a WeatherRequest and prints the exchange.
func (c *client) weather(ctx context.Context, city string) (contract.WeatherResponse, error) {
	req := contract.WeatherRequest{City: city}
	c.out.printf("   client → server: %s{City: %q}", netmsg.TypeName(req), city)
	// resp is a contract.WeatherResponse: SendRequest infers it from req.
	resp, err := netmsg.SendRequest(ctx, c.Client, req)
	if err != nil {
		c.out.printf("   client ← server: error: %v", err)
		return resp, err
	}
	c.out.printf("   client ← server: %T{City: %q, Forecast: %q, TempC: %v}", resp, resp.City, resp.Forecast, resp.TempC)
	return resp, nil
}

// chat sends a Chat message.
func (c *client) chat(ctx context.Context, text string) error {
	msg := contract.Chat{From: "client", Text: text}
	c.out.printf("   client → server: %s{From: %q, Text: %q}", netmsg.TypeName(msg), msg.From, msg.Text)
	if err := c.Send(ctx, msg); err != nil {
		c.out.printf("   client: send failed: %v", err)
		return err
	}
	return nil
}

// slow sends a SlowRequest that needs delay with a deadline of timeout.
func (c *client) slow(ctx context.Context, delay, timeout time.Duration) error {
	req := contract.SlowRequest{Delay: delay}
	c.out.printf("   client → server: %s{Delay: %v} with a %v deadline", netmsg.TypeName(req), delay, timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	_, err := netmsg.SendRequest(ctx, c.Client, req)
	if err == nil {
		c.out.printf("   client ← server: done after %v", time.Since(start).Round(time.Millisecond))
		return nil
	}
	c.out.printf("   client: gave up after %v: %v", time.Since(start).Round(10*time.Millisecond), err)
	return err
}

// waitNotice waits up to d for the next Notice.
func (c *client) waitNotice(ctx context.Context, d time.Duration) (contract.Notice, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case n := <-c.notices:
		return n, nil
	case <-t.C:
		return contract.Notice{}, fmt.Errorf("no notice arrived within %v", d)
	case <-ctx.Done():
		return contract.Notice{}, ctx.Err()
	}
}

// runClient is the -client mode: connect to url, then take commands from in
// when it is a terminal, or send a fixed sequence once when it is not.
func runClient(ctx context.Context, url string, in io.Reader, interactive bool, w io.Writer) error {
	out := newConsole(w)
	c := newClient(url, out, "typesafe -client", netmsg.WithReconnect(netmsg.DefaultBackOff()))
	defer c.Close()

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := c.Connect(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	if interactive {
		return c.interactive(ctx, in)
	}
	return c.script(ctx)
}

// script sends the predefined sequence and checks each answer.
func (c *client) script(ctx context.Context) error {
	c.out.printf("stdin is not a terminal: sending the predefined sequence once")
	if _, err := c.weather(ctx, "Bonn"); err != nil {
		return fmt.Errorf("weather for Bonn: %w", err)
	}
	if err := c.chat(ctx, "hello from a script"); err != nil {
		return err
	}
	if _, err := c.waitNotice(ctx, 5*time.Second); err != nil {
		return fmt.Errorf("the server's answer to a chat message: %w", err)
	}
	if _, err := c.weather(ctx, "Atlantis"); netmsg.CodeOf(err) != netmsg.CodeNotFound {
		return fmt.Errorf("weather for Atlantis: want code %s, got %v", netmsg.CodeNotFound, err)
	}
	if err := c.slow(ctx, 2*time.Second, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("slow request: want a deadline error, got %v", err)
	}
	c.out.printf("sequence done")
	return nil
}

const help = `commands (type one, then Enter):
  w [city]   weather request (default Bonn; known: Bonn, Lisbon, Oslo; others fail with not_found)
  m [text]   chat message to the server (it answers with a notice)
  s          slow request with a 200ms deadline (times out; the server's handler is cancelled)
  h          this help
  q          quit`

// interactive reads commands from in until q, EOF, or ctx ends.
func (c *client) interactive(ctx context.Context, in io.Reader) error {
	c.out.printf("%s", help)
	lines := make(chan string)
	// This goroutine may stay blocked reading stdin when the client quits; the
	// process exits right after.
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
			if !ok {
				return nil
			}
		case <-c.Done():
			return fmt.Errorf("client stopped: %w", c.Err())
		case <-ctx.Done():
			return nil
		}
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		arg = strings.TrimSpace(arg)
		switch cmd {
		case "":
		case "w":
			if arg == "" {
				arg = "Bonn"
			}
			_, _ = c.weather(ctx, arg) // printed; errors are part of the demo
		case "m":
			if arg == "" {
				arg = "hello"
			}
			_ = c.chat(ctx, arg)
		case "s":
			_ = c.slow(ctx, 2*time.Second, 200*time.Millisecond)
		case "h", "?", "help":
			c.out.printf("%s", help)
		case "q", "quit", "exit":
			return nil
		default:
			c.out.printf("unknown command %q; h lists the commands", cmd)
		}
	}
}
