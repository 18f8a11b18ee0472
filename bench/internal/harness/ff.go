package harness

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/lesismal/arpc"
	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/bench/internal/benchpb"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// FFKinds lists the fire-and-forget contenders. gRPC has no one-way call;
// its entry is a client stream (TestService.StreamingInputCall), the
// nearest it has.
var FFKinds = []string{GWSRaw, NetmsgJSON, NetmsgProto, GRPC, ARPC}

// FFSystem is one connection sending one-way messages to a server that
// counts them.
type FFSystem interface {
	Send() error // one message; one goroutine calls it
	Received() int64
	Close()
}

// StartFF starts contender kind with a body of size bytes.
func StartFF(kind string, size int) (FFSystem, error) {
	body := Body(size)
	switch kind {
	case GWSRaw:
		s := &ffGWS{body: body}
		srv, err := startGWSServer(func(_ *gws.Conn, m *gws.Message) {
			_ = m.Close()
			s.received.Add(1)
		})
		if err != nil {
			return nil, err
		}
		s.srv = srv
		if s.conn, err = dialGWS(srv.URL, gws.BuiltinEventHandler{}, &s.srv.wg); err != nil {
			srv.Close()
			return nil, err
		}
		return s, nil
	case NetmsgJSON, NetmsgProto:
		s := &ffNetmsg{}
		srv, err := startNetmsgServer(kind)
		if err != nil {
			return nil, err
		}
		s.srv = srv
		if kind == NetmsgProto {
			s.msg = &benchpb.Note{Body: body}
			netmsg.AddMessageHandler(srv.srv, func(_ context.Context, _ *netmsg.Session, _ *benchpb.Note) { s.received.Add(1) })
		} else {
			s.msg = Note{Body: body}
			netmsg.AddMessageHandler(srv.srv, func(_ context.Context, _ *netmsg.Session, _ Note) { s.received.Add(1) })
		}
		clients, err := dialNetmsg(kind, srv.URL, 1)
		if err != nil {
			srv.Close()
			return nil, err
		}
		s.cli = clients[0]
		return s, nil
	case GRPC:
		srv, err := startGRPCServer()
		if err != nil {
			return nil, err
		}
		ccs, err := dialGRPC(srv.Addr, 1)
		if err != nil {
			srv.Close()
			return nil, err
		}
		stream, err := testpb.NewTestServiceClient(ccs[0]).StreamingInputCall(context.Background())
		if err != nil {
			closeGRPC(ccs)
			srv.Close()
			return nil, err
		}
		return &ffGRPC{srv: srv, ccs: ccs, stream: stream,
			req: &testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: body}}}, nil
	case ARPC:
		srv, err := startARPCServer()
		if err != nil {
			return nil, err
		}
		clients, err := dialARPC(srv.Addr, 1, nil)
		if err != nil {
			srv.Close()
			return nil, err
		}
		return &ffARPC{srv: srv, cli: clients[0], body: body}, nil
	}
	return nil, fmt.Errorf("harness: no fire-and-forget contender %q", kind)
}

type ffGWS struct {
	srv      *gwsServer
	conn     *gws.Conn
	body     []byte
	received atomic.Int64
}

func (s *ffGWS) Send() error     { return s.conn.WriteMessage(gws.OpcodeBinary, s.body) }
func (s *ffGWS) Received() int64 { return s.received.Load() }
func (s *ffGWS) Close() {
	_ = s.conn.NetConn().Close()
	s.srv.Close()
}

type ffNetmsg struct {
	srv      *netmsgServer
	cli      *netmsg.Client
	msg      any
	received atomic.Int64
}

// Send passes context.Background(), as most callers do.
func (s *ffNetmsg) Send() error     { return s.cli.Send(context.Background(), s.msg) }
func (s *ffNetmsg) Received() int64 { return s.received.Load() }
func (s *ffNetmsg) Close() {
	_ = s.cli.Close()
	s.srv.Close()
}

type ffGRPC struct {
	srv    *grpcServer
	ccs    []*grpc.ClientConn
	stream testpb.TestService_StreamingInputCallClient
	req    *testpb.StreamingInputCallRequest
}

func (s *ffGRPC) Send() error     { return s.stream.Send(s.req) }
func (s *ffGRPC) Received() int64 { return s.srv.echo.received.Load() }
func (s *ffGRPC) Close() {
	_, _ = s.stream.CloseAndRecv()
	closeGRPC(s.ccs)
	s.srv.Close()
}

type ffARPC struct {
	srv  *arpcServer
	cli  *arpc.Client
	body []byte
}

func (s *ffARPC) Send() error     { return s.cli.Notify("/note", s.body, 10*time.Second) }
func (s *ffARPC) Received() int64 { return s.srv.received.Load() }
func (s *ffARPC) Close() {
	s.cli.Stop()
	s.srv.Close()
}

// sendFor sends back to back for d (or exactly n messages when n > 0) and
// returns how many it sent.
func sendFor(sys FFSystem, d time.Duration, n int64) (int64, error) {
	var sent int64
	deadline := time.Now().Add(d)
	for {
		if n > 0 {
			if sent >= n {
				return sent, nil
			}
		} else if sent&63 == 0 && time.Now().After(deadline) {
			return sent, nil
		}
		if err := sys.Send(); err != nil {
			return sent, err
		}
		sent++
	}
}

// waitReceived waits until the server has counted want messages.
func waitReceived(sys FFSystem, want int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for spins := 0; sys.Received() < want; spins++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: server counted %d of %d messages within %v", sys.Received(), want, limit)
		}
		if spins < 1000 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
	return nil
}

// RunFF sends from one goroutine for warm, waits until everything arrived,
// then measures: messages sent for d (or n when n > 0) and the time until
// the server has counted the last one. Ops is messages; there is no latency.
func RunFF(sys FFSystem, warm, d time.Duration, n int64, start func()) (*Window, error) {
	if warm > 0 {
		r0 := sys.Received()
		sent, err := sendFor(sys, warm, 0)
		if err != nil {
			return nil, err
		}
		if err := waitReceived(sys, r0+sent, 30*time.Second); err != nil {
			return nil, err
		}
	}
	c0 := snapshot()
	if start != nil {
		start()
	}
	r0 := sys.Received()
	t0 := time.Now()
	sent, err := sendFor(sys, d, n)
	if err != nil {
		return nil, err
	}
	if err := waitReceived(sys, r0+sent, 60*time.Second); err != nil {
		return nil, err
	}
	w := &Window{Ops: uint64(sent), Elapsed: time.Since(t0)}
	w.since(c0)
	return w, nil
}
