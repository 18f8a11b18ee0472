package harness

import (
	"context"
	"sync"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/bench/internal/benchpb"
	"github.com/netmsg/netmsg/serializer"
)

func serializerFor(kind string) serializer.Serializer {
	if kind == NetmsgProto || kind == NetmsgProtoC16 || kind == NetmsgProtoDispatch {
		return serializer.Protobuf{}
	}
	return serializer.JSON{}
}

// serializerKind maps a variant to its base contender name.
func serializerKind(kind string) string {
	if serializerFor(kind).Name() == "proto" {
		return NetmsgProto
	}
	return NetmsgJSON
}

// netmsgServer is a netmsg.Server on a fresh loopback listener with the
// library's defaults (heartbeats on) and the one serializer under test.
type netmsgServer struct {
	srv  *netmsg.Server
	URL  string
	done chan struct{}
}

func startNetmsgServer(kind string, opts ...netmsg.ServerOption) (*netmsgServer, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	opts = append([]netmsg.ServerOption{netmsg.WithSerializer(serializerFor(kind))}, opts...)
	s := &netmsgServer{srv: netmsg.NewServer(opts...), URL: "ws://" + ln.Addr().String() + "/", done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *netmsgServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}

// addEcho registers the echo handler of the serializer's contract.
func addEcho(kind string, r netmsg.Registrar) {
	if serializerFor(kind).Name() == "proto" {
		netmsg.AddRequestHandler(r, func(_ context.Context, _ *netmsg.Session, req *benchpb.EchoRequest) (*benchpb.EchoReply, error) {
			return &benchpb.EchoReply{Body: req.Body}, nil
		})
		return
	}
	netmsg.AddRequestHandler(r, func(_ context.Context, _ *netmsg.Session, req EchoReq) (EchoResp, error) {
		return EchoResp{Body: req.Body}, nil
	})
}

// dialNetmsg connects n clients in parallel.
func dialNetmsg(kind, url string, n int, opts ...netmsg.ClientOption) ([]*netmsg.Client, error) {
	opts = append([]netmsg.ClientOption{netmsg.WithSerializer(serializerFor(kind)), netmsg.WithDialTimeout(30 * time.Second)}, opts...)
	clients := make([]*netmsg.Client, n)
	err := parallel(n, func(i int) error {
		c := netmsg.NewClient(url, opts...)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			_ = c.Close()
			return err
		}
		clients[i] = c
		return nil
	})
	if err != nil {
		closeNetmsgClients(clients)
		return nil, err
	}
	return clients, nil
}

func closeNetmsgClients(clients []*netmsg.Client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.Close()
			}()
		}
	}
	wg.Wait()
}

type netmsgSystem struct {
	kind    string
	srv     *netmsgServer
	clients []*netmsg.Client
	body    []byte
}

func startNetmsg(kind string) func(conns, inflight, size int) (System, error) {
	return func(conns, _, size int) (System, error) {
		var opts []netmsg.ServerOption
		var copts []netmsg.ClientOption
		if kind == NetmsgJSONC16 || kind == NetmsgProtoC16 {
			opts = append(opts, netmsg.WithSessionConcurrency(16))
		}
		if kind == NetmsgJSONDispatch || kind == NetmsgProtoDispatch {
			opts = append(opts, netmsg.WithInlineHandlers(false))
			copts = append(copts, netmsg.WithInlineHandlers(false))
		}
		srv, err := startNetmsgServer(kind, opts...)
		if err != nil {
			return nil, err
		}
		addEcho(kind, srv.srv)
		clients, err := dialNetmsg(serializerKind(kind), srv.URL, conns, copts...)
		if err != nil {
			srv.Close()
			return nil, err
		}
		return &netmsgSystem{kind: kind, srv: srv, clients: clients, body: Body(size)}, nil
	}
}

func (s *netmsgSystem) NewCaller(conn int) Caller {
	c := s.clients[conn]
	if serializerFor(s.kind).Name() == "proto" {
		return &netmsgProtoCaller{c: c, req: &benchpb.EchoRequest{Body: s.body}}
	}
	return &netmsgJSONCaller{c: c, req: EchoReq{Body: s.body}}
}

func (s *netmsgSystem) Close() {
	closeNetmsgClients(s.clients)
	s.srv.Close()
}

// The callers pass context.Background(), as most callers do: SendRequest
// then applies the client's RequestTimeout (10 s) itself.
type netmsgJSONCaller struct {
	c   *netmsg.Client
	req EchoReq
}

func (n *netmsgJSONCaller) Call() error {
	resp, err := netmsg.SendRequest(context.Background(), n.c, n.req)
	if err != nil {
		return err
	}
	return checkLen(len(resp.Body), len(n.req.Body))
}

type netmsgProtoCaller struct {
	c   *netmsg.Client
	req *benchpb.EchoRequest
}

func (n *netmsgProtoCaller) Call() error {
	resp, err := netmsg.SendRequest(context.Background(), n.c, n.req)
	if err != nil {
		return err
	}
	return checkLen(len(resp.GetBody()), len(n.req.Body))
}
