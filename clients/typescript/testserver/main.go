// Command testserver is the Go server the TypeScript client's tests run
// against (clients/typescript, npm test). It serves the typesafe example's
// contract and the test contract (package testcontract) on /ws, the
// package's files under /static/ for the browser test, and a few control
// endpoints:
//
//	POST /control/blackhole  stop forwarding on the relay's newest link (a dead link)
//	POST /control/restart    Shutdown the netmsg server (1001 with a reconnect hint), answer 503
//	                         for downMs, then serve a new one (answered at once)
//	POST /result             print the request body on stdout as "RESULT <body>" (the browser's report)
//
// Clients reach the server directly or through a relay (internal/faultnet)
// that can blackhole a link. With -vectors it prints envelope test vectors
// encoded by the Go code instead, and exits. Once listening, it prints one JSON line on
// stdout: {"addr": "127.0.0.1:N", "relay": "127.0.0.1:M"}. It stops on
// SIGINT or SIGTERM, or when stdin closes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/clients/typescript/testserver/testcontract"
	"github.com/netmsg/netmsg/examples/typesafe/contract"
	"github.com/netmsg/netmsg/internal/faultnet"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen on `ADDR`")
	static := flag.String("static", "", "serve `DIR` under /static/")
	heartbeat := flag.Duration("heartbeat", time.Second, "the server's WebSocket ping interval")
	receive := flag.Duration("receive", 5*time.Second, "the server's receive timeout")
	vectors := flag.Bool("vectors", false, "print envelopes encoded by the Go code and the Go decoder's verdicts on malformed ones, as JSON, and exit")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("testserver: ")
	if *vectors {
		if err := printVectors(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(*addr, *static, *heartbeat, *receive); err != nil {
		log.Fatal(err)
	}
}

func run(addr, static string, heartbeat, receive time.Duration) error {
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	relay, err := faultnet.New(ln.Addr().String())
	if err != nil {
		return err
	}
	defer relay.Close()

	// Several handlers of one session at once: a test closes its session
	// while a slow request of the same session is in flight.
	st := &state{opts: []netmsg.Option{netmsg.WithHeartbeat(heartbeat, receive), netmsg.WithSessionConcurrency(8)}}
	// The browser test's page comes from this server and connects through
	// the relay: another port of the same host.
	st.serverOpts = []netmsg.ServerOption{netmsg.WithAllowedOrigins("127.0.0.1:*", "localhost:*")}
	st.cur.Store(st.newServer())

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { st.cur.Load().ServeHTTP(w, r) })
	if static != "" {
		mux.Handle("/static/", http.StripPrefix("/static/", http.FileServer(http.Dir(static))))
	}
	mux.HandleFunc("POST /control/blackhole", func(w http.ResponseWriter, r *http.Request) {
		l := relay.Latest()
		if l == nil {
			http.Error(w, "no link", http.StatusConflict)
			return
		}
		l.Blackhole()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /control/restart", func(w http.ResponseWriter, r *http.Request) {
		down, _ := strconv.Atoi(r.URL.Query().Get("downMs"))
		// Answered at once: the caller watches its clients go and come back.
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			if err := st.restart(time.Duration(down) * time.Millisecond); err != nil {
				log.Printf("restart: %v", err)
			}
		}()
		w.WriteHeader(http.StatusNoContent)
	})
	var outMu sync.Mutex
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		outMu.Lock()
		fmt.Printf("RESULT %s\n", body)
		outMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})

	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	hello, _ := json.Marshal(map[string]string{"addr": ln.Addr().String(), "relay": relay.Addr()})
	outMu.Lock()
	fmt.Printf("%s\n", hello)
	outMu.Unlock()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The test that started this process holds stdin open; when it
		// exits, stdin closes and so does the server.
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = st.cur.Load().Shutdown(sctx)
	st.wg.Wait()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// listen retries briefly while the address is still in use: a test restarts
// the server on the port its previous process left.
func listen(addr string) (net.Listener, error) {
	var err error
	for try := 0; try < 50; try++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// state is what the handlers share: the current netmsg server and what has
// been observed.
type state struct {
	opts       []netmsg.Option
	serverOpts []netmsg.ServerOption
	cur        atomic.Pointer[netmsg.Server]

	restartMu sync.Mutex

	mu       sync.Mutex
	closes   []testcontract.CloseEvent
	slowEnds []string
	wg       sync.WaitGroup // server-to-client requests and delayed closes
}

// restart shuts the current server down, which closes every session with
// 1001 and a reconnect hint, keeps answering 503 for down, and then serves
// a new server.
func (st *state) restart(down time.Duration) error {
	st.restartMu.Lock()
	defer st.restartMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := st.cur.Load().Shutdown(ctx)
	time.Sleep(down)
	st.cur.Store(st.newServer())
	return err
}

func (st *state) record(f func()) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f()
}

var forecasts = map[string]contract.WeatherResponse{
	"Bonn":   {City: "Bonn", Forecast: "light rain", TempC: 11.5},
	"Lisbon": {City: "Lisbon", Forecast: "sunny", TempC: 24},
	"Oslo":   {City: "Oslo", Forecast: "snow showers", TempC: -3},
}

func (st *state) newServer() *netmsg.Server {
	opts := append([]netmsg.Option{
		netmsg.WithOnError(func(s *netmsg.Session, err error) { log.Printf("session %s: %v", s.ID(), err) }),
	}, st.opts...)
	srv := netmsg.NewServer(append(append(toServerOptions(opts), st.serverOpts...),
		netmsg.WithOnSessionClose(func(s *netmsg.Session, ce *netmsg.CloseError) {
			log.Printf("session %s closed: %v", s.ID(), ce)
			st.record(func() {
				st.closes = append(st.closes, testcontract.CloseEvent{
					Session: s.ID(), Reason: ce.Reason.String(), Code: ce.Code, Text: ce.Text, Remote: ce.Remote,
				})
			})
		}))...)

	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req contract.WeatherRequest) (contract.WeatherResponse, error) {
		resp, ok := forecasts[req.City]
		if !ok {
			return contract.WeatherResponse{}, netmsg.Errorf(netmsg.CodeNotFound, "no forecast for %q", req.City)
		}
		return resp, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req contract.SlowRequest) (contract.SlowResponse, error) {
		t := time.NewTimer(req.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			st.record(func() { st.slowEnds = append(st.slowEnds, "finished") })
			return contract.SlowResponse{Slept: req.Delay}, nil
		case <-ctx.Done():
			st.record(func() { st.slowEnds = append(st.slowEnds, ctx.Err().Error()) })
			return contract.SlowResponse{}, ctx.Err()
		}
	})
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, msg contract.Chat) {
		_ = s.Send(ctx, contract.Notice{Text: msg.From + " said " + msg.Text})
	})

	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req testcontract.EchoRequest) (testcontract.EchoResponse, error) {
		resp := testcontract.EchoResponse{Text: req.Text, Metadata: netmsg.Metadata(ctx), Session: s.ID()}
		if dl, ok := ctx.Deadline(); ok {
			resp.DeadlineMs = time.Until(dl).Milliseconds()
		}
		return resp, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req testcontract.FailRequest) (testcontract.FailResponse, error) {
		switch {
		case req.Panic:
			panic("the test asked for a panic")
		case req.Plain:
			return testcontract.FailResponse{}, errors.New("a plain error the caller must not see")
		}
		return testcontract.FailResponse{}, netmsg.NewError(netmsg.Code(req.Code), req.Message)
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req testcontract.AskRequest) (testcontract.AskResponse, error) {
		return st.ask(ctx, s, req), nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req testcontract.PushRequest) (testcontract.PushResponse, error) {
		for i := range req.Count {
			if err := s.Send(ctx, contract.Notice{Text: req.Text + " " + strconv.Itoa(i+1)}); err != nil {
				return testcontract.PushResponse{Sent: i}, err
			}
		}
		return testcontract.PushResponse{Sent: req.Count}, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req testcontract.CloseRequest) (testcontract.CloseResponse, error) {
		if req.Mode != "close" && req.Mode != "kick" {
			return testcontract.CloseResponse{}, netmsg.Errorf(netmsg.CodeInvalidArgument, "unknown mode %q", req.Mode)
		}
		st.wg.Add(1)
		time.AfterFunc(time.Duration(req.DelayMs)*time.Millisecond, func() {
			defer st.wg.Done()
			if req.Mode == "kick" {
				_ = s.Kick(req.Text)
			} else {
				_ = s.Close(req.Text)
			}
		})
		return testcontract.CloseResponse{}, nil
	})
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req testcontract.ObserveRequest) (testcontract.ObserveResponse, error) {
		var resp testcontract.ObserveResponse
		st.record(func() {
			resp.Closes = append(resp.Closes, st.closes...)
			resp.SlowEnds = append(resp.SlowEnds, st.slowEnds...)
		})
		resp.RTTNs = int64(s.RTT())
		resp.Session = s.ID()
		for range srv.Sessions() {
			resp.Sessions++
		}
		return resp, nil
	})
	return srv
}

// ask sends the client an AddRequest, a request from server to client, and
// reports how it ended.
func (st *state) ask(ctx context.Context, s *netmsg.Session, req testcontract.AskRequest) testcontract.AskResponse {
	cctx := netmsg.WithMetadata(context.WithoutCancel(ctx), "asked-by", "testserver")
	var cancel context.CancelFunc
	if req.TimeoutMs > 0 {
		cctx, cancel = context.WithTimeout(cctx, time.Duration(req.TimeoutMs)*time.Millisecond)
	} else {
		cctx, cancel = context.WithCancel(cctx)
	}
	defer cancel()
	if req.CancelAfterMs > 0 {
		t := time.AfterFunc(time.Duration(req.CancelAfterMs)*time.Millisecond, cancel)
		defer t.Stop()
	}
	start := time.Now()
	resp, err := netmsg.SendRequest(cctx, s, req.Add)
	out := testcontract.AskResponse{Sum: resp.Sum, Metadata: resp.Metadata, ElapsedMs: time.Since(start).Milliseconds()}
	if err != nil {
		out.Code = uint32(netmsg.CodeOf(err))
		out.Message = err.Error()
	}
	return out
}

// toServerOptions keeps the options that apply to a server (all of them do:
// netmsg.Option is both a ServerOption and a ClientOption).
func toServerOptions(opts []netmsg.Option) []netmsg.ServerOption {
	out := make([]netmsg.ServerOption, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}
