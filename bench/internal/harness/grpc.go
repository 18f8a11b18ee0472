package harness

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// grpcEcho implements the interop TestService: UnaryCall echoes the body,
// StreamingInputCall counts the messages of a client stream.
type grpcEcho struct {
	testpb.UnimplementedTestServiceServer
	received atomic.Int64
}

func (*grpcEcho) EmptyCall(context.Context, *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (*grpcEcho) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (g *grpcEcho) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	var n int32
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(m.GetPayload().GetBody()))
		g.received.Add(1)
	}
}

type grpcServer struct {
	gs   *grpc.Server
	echo *grpcEcho
	Addr string
	done chan struct{}
}

func startGRPCServer() (*grpcServer, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	s := &grpcServer{gs: grpc.NewServer(), echo: new(grpcEcho), Addr: ln.Addr().String(), done: make(chan struct{})}
	testpb.RegisterTestServiceServer(s.gs, s.echo)
	go func() {
		defer close(s.done)
		_ = s.gs.Serve(ln)
	}()
	return s, nil
}

func (s *grpcServer) Close() {
	s.gs.Stop()
	<-s.done
}

// dialGRPC opens n client connections (one TCP connection each) and waits
// until each is ready by making one call.
func dialGRPC(addr string, n int) ([]*grpc.ClientConn, error) {
	ccs := make([]*grpc.ClientConn, n)
	err := parallel(n, func(i int) error {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", a)
			}))
		if err != nil {
			return err
		}
		ccs[i] = cc
		cc.Connect()
		_, err = testpb.NewTestServiceClient(cc).EmptyCall(context.Background(), &testpb.Empty{})
		return err
	})
	if err != nil {
		closeGRPC(ccs)
		return nil, err
	}
	return ccs, nil
}

func closeGRPC(ccs []*grpc.ClientConn) {
	var wg sync.WaitGroup
	for _, cc := range ccs {
		if cc != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = cc.Close()
			}()
		}
	}
	wg.Wait()
}

type grpcSystem struct {
	srv  *grpcServer
	ccs  []*grpc.ClientConn
	body []byte
}

func startGRPC(conns, _, size int) (System, error) {
	srv, err := startGRPCServer()
	if err != nil {
		return nil, err
	}
	ccs, err := dialGRPC(srv.Addr, conns)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &grpcSystem{srv: srv, ccs: ccs, body: Body(size)}, nil
}

func (s *grpcSystem) NewCaller(conn int) Caller {
	return &grpcCaller{
		c:   testpb.NewTestServiceClient(s.ccs[conn]),
		req: &testpb.SimpleRequest{Payload: &testpb.Payload{Body: s.body}},
	}
}

func (s *grpcSystem) Close() {
	closeGRPC(s.ccs)
	s.srv.Close()
}

type grpcCaller struct {
	c   testpb.TestServiceClient
	req *testpb.SimpleRequest
}

func (g *grpcCaller) Call() error {
	resp, err := g.c.UnaryCall(context.Background(), g.req)
	if err != nil {
		return err
	}
	return checkLen(len(resp.GetPayload().GetBody()), len(g.req.Payload.Body))
}
