package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/examples/typesafe/contract"
)

var forecasts = map[string]contract.WeatherResponse{
	"Bonn":   {City: "Bonn", Forecast: "light rain", TempC: 11.5},
	"Lisbon": {City: "Lisbon", Forecast: "sunny", TempC: 24},
	"Oslo":   {City: "Oslo", Forecast: "snow showers", TempC: -3},
}

// server is the demo's netmsg server with its handlers registered.
type server struct {
	*netmsg.Server
	out *console

	// slowStopped receives the cause when the slow handler's ctx ends before
	// it finished; the demo waits for it to show cancellation.
	slowStopped chan error

	wg sync.WaitGroup // status requests started by askStatus
}

// newServer returns a server with the contract's handlers. With askStatus set
// it asks every new client for its status, a request from server to client.
func newServer(out *console, askStatus bool) *server {
	srv := &server{out: out, slowStopped: make(chan error, 1)}
	srv.Server = netmsg.NewServer(
		netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
			out.printf("   server: session %s opened from %s", s.ID(), s.RemoteAddr())
			if askStatus {
				srv.wg.Add(1)
				// Not on this goroutine: the session reads nothing (so
				// no answer arrives) until OnSessionOpen has returned.
				go func() {
					defer srv.wg.Done()
					srv.askStatus(s)
				}()
			}
		}),
		netmsg.WithOnSessionClose(func(s *netmsg.Session, ce *netmsg.CloseError) {
			out.printf("   server: session %s closed: %s (code %d)", s.ID(), ce.Reason, ce.Code)
		}),
		netmsg.WithOnError(func(s *netmsg.Session, err error) {
			out.printf("   server: error on session %s: %v", s.ID(), err)
		}),
	)

	// The handlers' signatures are checked against the contract: returning
	// anything but a contract.WeatherResponse for a contract.WeatherRequest
	// does not compile.
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req contract.WeatherRequest) (contract.WeatherResponse, error) {
		out.printf("   server: handling %s for %q", netmsg.TypeName(req), req.City)
		resp, ok := forecasts[req.City]
		if !ok {
			return contract.WeatherResponse{}, netmsg.Errorf(netmsg.CodeNotFound, "no forecast for %q", req.City)
		}
		return resp, nil
	})

	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req contract.SlowRequest) (contract.SlowResponse, error) {
		out.printf("   server: slow handler started, it needs %v", req.Delay)
		t := time.NewTimer(req.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return contract.SlowResponse{Slept: req.Delay}, nil
		case <-ctx.Done():
			// The caller's deadline travelled with the request, and its CANCEL
			// follows when it gives up: either ends ctx.
			out.printf("   server: slow handler stopped early: %v", ctx.Err())
			select {
			case srv.slowStopped <- ctx.Err():
			default:
			}
			return contract.SlowResponse{}, ctx.Err()
		}
	})

	netmsg.AddMessageHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, msg contract.Chat) {
		out.printf("   server: got %s from %s: %q", netmsg.TypeName(msg), msg.From, msg.Text)
		// Reply on the session the message came from.
		if err := s.Send(ctx, contract.Notice{Text: "thanks for your message " + fmt.Sprintf("%q", msg.Text)}); err != nil {
			out.printf("   server: reply failed: %v", err)
		}
	})
	return srv
}

// askStatus sends the server-initiated StatusRequest to one client.
func (srv *server) askStatus(s *netmsg.Session) {
	ctx, cancel := context.WithTimeout(s.Context(), 5*time.Second)
	defer cancel()
	resp, err := netmsg.SendRequest(ctx, s, contract.StatusRequest{})
	if err != nil {
		srv.out.printf("   server: status request to %s failed: %v", s.ID(), err)
		return
	}
	srv.out.printf("   server: client %s says: %q on %s, %d notices so far", s.ID(), resp.Client, resp.Platform, resp.Notices)
}

// listening is a server running on a listener of its own.
type listening struct {
	*server
	addr string
	errc chan error // Serve's result

	stopOnce sync.Once
	stopErr  error
}

// listen starts srv on addr. It retries briefly while the address is still
// in use, which happens when a server restarts on the address it just left.
func listen(ctx context.Context, srv *server, addr string) (*listening, error) {
	var l net.Listener
	var err error
	for try := 0; ; try++ {
		var lc net.ListenConfig
		l, err = lc.Listen(ctx, "tcp", addr)
		if err == nil || try == 20 || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	ls := &listening{server: srv, addr: l.Addr().String(), errc: make(chan error, 1)}
	go func() { ls.errc <- srv.Serve(l) }()
	return ls, nil
}

// shutdown drains and stops the server and waits for Serve to return. Later
// calls return the first call's result.
func (ls *listening) shutdown() error {
	ls.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := ls.Shutdown(ctx)
		if serr := <-ls.errc; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("serve: %w", serr))
		}
		ls.wg.Wait()
		if err != nil {
			ls.stopErr = fmt.Errorf("server shutdown: %w", err)
		}
	})
	return ls.stopErr
}

// wsURL returns the URL a client dials for a listener's address.
func wsURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "ws://" + addr + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "ws://" + net.JoinHostPort(host, port) + "/"
}

// runServer is the -server mode: serve on addr until ctx ends (Ctrl-C), then
// shut down gracefully.
func runServer(ctx context.Context, addr string, w io.Writer) error {
	out := newConsole(w)
	ls, err := listen(ctx, newServer(out, true), addr)
	if err != nil {
		return err
	}
	return serveUntilDone(ctx, ls, out)
}

func serveUntilDone(ctx context.Context, ls *listening, out *console) error {
	url := wsURL(ls.addr)
	out.printf("netmsg typesafe server listening on %s", url)
	out.printf("start a client in another terminal: go run ./examples/typesafe -client %s", url)
	out.printf("press Ctrl-C to stop")
	select {
	case <-ctx.Done():
	case err := <-ls.errc:
		ls.errc <- err // for shutdown
	}
	out.printf("shutting down: running handlers finish, then sessions close with 1001")
	return ls.shutdown()
}
