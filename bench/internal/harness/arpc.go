package harness

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/arpc"
	arpclog "github.com/lesismal/arpc/log"
)

func init() { arpclog.SetLevel(arpclog.LevelNone) }

// arpcServer runs arpc over TCP with its default handler (batched, async
// writes; it turns Nagle back on for its connections, as shipped).
type arpcServer struct {
	srv      *arpc.Server
	Addr     string
	received atomic.Int64
	done     chan struct{}
	mu       sync.Mutex
	clients  int
}

func startARPCServer() (*arpcServer, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	s := &arpcServer{srv: arpc.NewServer(), Addr: ln.Addr().String(), done: make(chan struct{})}
	s.srv.Handler.Handle("/echo", func(ctx *arpc.Context) { _ = ctx.Write(ctx.Body()) })
	s.srv.Handler.Handle("/note", func(*arpc.Context) { s.received.Add(1) })
	s.srv.Handler.HandleConnected(func(c *arpc.Client) {
		// Keep what arpc's default handler does on connect (Nagle on).
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(false)
		}
		s.mu.Lock()
		s.clients++
		s.mu.Unlock()
	})
	s.srv.Handler.HandleDisconnected(func(*arpc.Client) {
		s.mu.Lock()
		s.clients--
		s.mu.Unlock()
	})
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *arpcServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients
}

func (s *arpcServer) Close() {
	_ = s.srv.Stop()
	<-s.done
}

func dialARPC(addr string, n int, h arpc.Handler) ([]*arpc.Client, error) {
	clients := make([]*arpc.Client, n)
	err := parallel(n, func(i int) error {
		var args []any
		if h != nil {
			args = append(args, h)
		}
		c, err := arpc.NewClient(func() (net.Conn, error) {
			return net.DialTimeout("tcp", addr, 30*time.Second)
		}, args...)
		clients[i] = c
		return err
	})
	if err != nil {
		closeARPC(clients)
		return nil, err
	}
	return clients, nil
}

func closeARPC(clients []*arpc.Client) {
	for _, c := range clients {
		if c != nil {
			c.Stop()
		}
	}
}

type arpcSystem struct {
	srv     *arpcServer
	clients []*arpc.Client
	body    []byte
}

func startARPC(conns, _, size int) (System, error) {
	srv, err := startARPCServer()
	if err != nil {
		return nil, err
	}
	clients, err := dialARPC(srv.Addr, conns, nil)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &arpcSystem{srv: srv, clients: clients, body: Body(size)}, nil
}

func (s *arpcSystem) NewCaller(conn int) Caller {
	return &arpcCaller{c: s.clients[conn], body: s.body}
}

func (s *arpcSystem) Close() {
	closeARPC(s.clients)
	s.srv.Close()
}

type arpcCaller struct {
	c    *arpc.Client
	body []byte
	rsp  []byte
}

func (a *arpcCaller) Call() error {
	if err := a.c.Call("/echo", a.body, &a.rsp, 10*time.Second); err != nil {
		return err
	}
	return checkLen(len(a.rsp), len(a.body))
}
