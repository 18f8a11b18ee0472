package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// gwsServer is a bare gws server: an http.Server upgrading every request,
// each connection on its own read loop, onMsg called on that loop.
type gwsServer struct {
	URL   string
	hs    *http.Server
	up    *gws.Upgrader
	onMsg func(c *gws.Conn, m *gws.Message)

	mu    sync.Mutex
	conns map[*gws.Conn]struct{}
	wg    sync.WaitGroup
}

type gwsServerEvents struct {
	gws.BuiltinEventHandler
	s *gwsServer
}

func (e gwsServerEvents) OnMessage(c *gws.Conn, m *gws.Message) { e.s.onMsg(c, m) }
func (e gwsServerEvents) OnClose(c *gws.Conn, _ error) {
	e.s.mu.Lock()
	delete(e.s.conns, c)
	e.s.mu.Unlock()
}

// gwsEcho writes every frame back on the read loop: one frame in, one out.
func gwsEcho(c *gws.Conn, m *gws.Message) {
	_ = c.WriteMessage(m.Opcode, m.Bytes())
	_ = m.Close()
}

func startGWSServer(onMsg func(*gws.Conn, *gws.Message)) (*gwsServer, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	s := &gwsServer{onMsg: onMsg, conns: make(map[*gws.Conn]struct{})}
	s.up = gws.NewUpgrader(gwsServerEvents{s: s}, &gws.ServerOption{
		ReadMaxPayloadSize: 1 << 20,
		Recovery:           gws.Recovery,
	})
	s.hs = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	s.URL = "ws://" + ln.Addr().String() + "/"
	go func() { _ = s.hs.Serve(ln) }()
	return s, nil
}

func (s *gwsServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := s.up.Upgrade(w, r)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c.ReadLoop()
	}()
}

// each calls f for every open connection.
func (s *gwsServer) each(f func(*gws.Conn)) {
	s.mu.Lock()
	list := make([]*gws.Conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.mu.Unlock()
	for _, c := range list {
		f(c)
	}
}

func (s *gwsServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *gwsServer) Close() {
	_ = s.hs.Close()
	s.each(func(c *gws.Conn) { _ = c.NetConn().Close() })
	s.wg.Wait()
}

// dialGWS connects a gws client with handler h and starts its read loop.
func dialGWS(url string, h gws.Event, wg *sync.WaitGroup, subprotocol ...string) (*gws.Conn, error) {
	opt := &gws.ClientOption{
		Addr:               url,
		ReadMaxPayloadSize: 1 << 20,
		Recovery:           gws.Recovery,
		HandshakeTimeout:   30 * time.Second,
	}
	if len(subprotocol) > 0 {
		opt.RequestHeader = http.Header{"Sec-WebSocket-Protocol": subprotocol}
	}
	c, _, err := gws.NewClient(h, opt)
	if err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.ReadLoop()
	}()
	return c, nil
}

// ---- raw echo: one frame out, one frame back ----

// rawConn is one client connection of the raw baseline. Echoes come back in
// order, so callers queue a channel each before writing (FIFO, no ids).
type rawConn struct {
	gws.BuiltinEventHandler
	conn    *gws.Conn
	wmu     sync.Mutex
	waiters chan chan int
}

func (r *rawConn) OnMessage(_ *gws.Conn, m *gws.Message) {
	n := m.Data.Len()
	_ = m.Close()
	select {
	case ch := <-r.waiters:
		ch <- n
	default: // nobody waits (fire-and-forget echo); drop
	}
}

func (r *rawConn) OnClose(*gws.Conn, error) {
	for {
		select {
		case ch := <-r.waiters:
			ch <- -1
		default:
			return
		}
	}
}

type gwsRawSystem struct {
	srv   *gwsServer
	conns []*rawConn
	body  []byte
	wg    sync.WaitGroup
}

func startGWSRaw(conns, inflight, size int) (System, error) {
	srv, err := startGWSServer(gwsEcho)
	if err != nil {
		return nil, err
	}
	s := &gwsRawSystem{srv: srv, body: Body(size), conns: make([]*rawConn, conns)}
	err = parallel(conns, func(i int) error {
		rc := &rawConn{waiters: make(chan chan int, inflight)}
		c, err := dialGWS(srv.URL, rc, &s.wg)
		rc.conn = c
		s.conns[i] = rc
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *gwsRawSystem) NewCaller(conn int) Caller {
	return &rawCaller{c: s.conns[conn], body: s.body, ch: make(chan int, 1)}
}

func (s *gwsRawSystem) Close() {
	for _, c := range s.conns {
		if c != nil && c.conn != nil {
			_ = c.conn.NetConn().Close()
		}
	}
	s.wg.Wait()
	s.srv.Close()
}

type rawCaller struct {
	c    *rawConn
	body []byte
	ch   chan int
}

func (r *rawCaller) Call() error {
	r.c.wmu.Lock()
	r.c.waiters <- r.ch
	err := r.c.conn.WriteMessage(gws.OpcodeBinary, r.body)
	r.c.wmu.Unlock()
	if err != nil {
		return err
	}
	return checkLen(<-r.ch, len(r.body))
}

func checkLen(got, want int) error {
	if got < 0 {
		return errClosed
	}
	if got != want {
		return fmt.Errorf("harness: echo of %d bytes came back with %d", want, got)
	}
	return nil
}

var errClosed = errors.New("harness: connection closed")

// ---- multiplexed echo: 8-byte id + body, a map of waiters ----

type muxConn struct {
	gws.BuiltinEventHandler
	conn    *gws.Conn
	nextID  atomic.Uint64
	mu      sync.Mutex
	waiters map[uint64]chan int
}

func (m *muxConn) OnMessage(_ *gws.Conn, msg *gws.Message) {
	b := msg.Bytes()
	if len(b) < 8 {
		_ = msg.Close()
		return
	}
	id := binary.LittleEndian.Uint64(b)
	n := len(b) - 8
	_ = msg.Close()
	m.mu.Lock()
	ch := m.waiters[id]
	delete(m.waiters, id)
	m.mu.Unlock()
	if ch != nil {
		ch <- n
	}
}

func (m *muxConn) OnClose(*gws.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ch := range m.waiters {
		delete(m.waiters, id)
		ch <- -1
	}
}

type gwsMuxSystem struct {
	srv   *gwsServer
	conns []*muxConn
	body  []byte
	wg    sync.WaitGroup
}

func startGWSMux(conns, _, size int) (System, error) {
	srv, err := startGWSServer(gwsEcho)
	if err != nil {
		return nil, err
	}
	s := &gwsMuxSystem{srv: srv, body: Body(size), conns: make([]*muxConn, conns)}
	err = parallel(conns, func(i int) error {
		mc := &muxConn{waiters: make(map[uint64]chan int)}
		c, err := dialGWS(srv.URL, mc, &s.wg)
		mc.conn = c
		s.conns[i] = mc
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *gwsMuxSystem) NewCaller(conn int) Caller {
	buf := make([]byte, 8+len(s.body))
	copy(buf[8:], s.body)
	return &muxCaller{c: s.conns[conn], buf: buf, ch: make(chan int, 1)}
}

func (s *gwsMuxSystem) Close() {
	for _, c := range s.conns {
		if c != nil && c.conn != nil {
			_ = c.conn.NetConn().Close()
		}
	}
	s.wg.Wait()
	s.srv.Close()
}

type muxCaller struct {
	c   *muxConn
	buf []byte
	ch  chan int
}

func (m *muxCaller) Call() error {
	id := m.c.nextID.Add(1)
	binary.LittleEndian.PutUint64(m.buf, id)
	m.c.mu.Lock()
	m.c.waiters[id] = m.ch
	m.c.mu.Unlock()
	if err := m.c.conn.WriteMessage(gws.OpcodeBinary, m.buf); err != nil {
		m.c.mu.Lock()
		delete(m.c.waiters, id)
		m.c.mu.Unlock()
		return err
	}
	return checkLen(<-m.ch, len(m.buf)-8)
}

// listen opens a fresh loopback listener.
func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// parallel runs f(0..n-1) on up to 16 goroutines and returns the first error.
func parallel(n int, f func(i int) error) error {
	workers := min(n, 16)
	var next atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		go func() {
			var first error
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					break
				}
				if err := f(i); err != nil && first == nil {
					first = err
				}
			}
			errs <- first
		}()
	}
	var first error
	for range workers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
