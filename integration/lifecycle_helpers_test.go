package integration_test

// Helpers shared by the lifecycle_*_test.go and fault_*_test.go files. Every
// top-level name here starts with "lc" so it cannot collide with the other
// files of this package.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/faultnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lcWait bounds anything that should happen "at once" or within a configured
// bound far below it: the machine is shared and slow under -race, so the
// bound is wide on purpose.
const lcWait = 5 * time.Second

// Fast heartbeats for tests: ping every 100 ms, lost after 500 ms of silence.
// Tests that assert the absence of a false loss use lcSafeTimeout (ten
// intervals) instead, so that a scheduling stall on a loaded machine is not
// mistaken for a library bug.
const (
	lcInterval    = 100 * time.Millisecond
	lcTimeout     = 500 * time.Millisecond
	lcSafeTimeout = time.Second
)

// ---- contracts ----

type lcEcho struct {
	netmsg.Returns[lcEchoReply]
	Text string
}

type lcEchoReply struct{ Text string }

// lcHold is answered by handlers that block (until released or ctx ends).
type lcHold struct {
	netmsg.Returns[lcEchoReply]
	Key string
}

type lcNote struct{ Text string }

type lcBlob struct{ Data []byte }

// ---- servers ----

// lcServer is a netmsg server on a real loopback listener, run by Serve.
type lcServer struct {
	Srv  *netmsg.Server
	Addr string // host:port
	URL  string // ws://host:port/

	serveErr chan error
	once     sync.Once
	shutErr  error
}

// lcStartServer serves a new server on addr ("127.0.0.1:0" for any port). It
// is shut down when the test ends.
func lcStartServer(t testing.TB, addr string, opts ...netmsg.ServerOption) *lcServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := &lcServer{Srv: netmsg.NewServer(opts...), Addr: ln.Addr().String(), serveErr: make(chan error, 1)}
	s.URL = "ws://" + s.Addr + "/"
	go func() { s.serveErr <- s.Srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(t, 10*time.Second) })
	return s
}

// Shutdown shuts the server down with a ctx of d and checks that Serve
// returned http.ErrServerClosed. Later calls return the first call's result.
func (s *lcServer) Shutdown(t testing.TB, d time.Duration) error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		s.shutErr = s.Srv.Shutdown(ctx)
		select {
		case err := <-s.serveErr:
			assert.ErrorIs(t, err, http.ErrServerClosed, "Serve's result after Shutdown")
		case <-time.After(lcWait):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return s.shutErr
}

// lcRelay starts a fault-injecting relay in front of target (host:port).
func lcRelay(t testing.TB, target string) *faultnet.Relay {
	t.Helper()
	r, err := faultnet.New(target)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	return r
}

func lcRelayURL(r *faultnet.Relay) string { return "ws://" + r.Addr() + "/" }

// ---- clients ----

// lcNewClient creates a client that is closed (with a bound) when the test ends.
func lcNewClient(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := netmsg.NewClient(url, opts...)
	t.Cleanup(func() { lcCloseWithin(t, c, lcWait) })
	return c
}

// lcConnect creates a client and makes its first connection.
func lcConnect(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := lcNewClient(t, url, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	return c
}

// lcCloseWithin calls c.Close and fails the test if it takes longer than d.
// It returns how long Close took.
func lcCloseWithin(t testing.TB, c *netmsg.Client, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "Client.Close")
	case <-time.After(d):
		t.Errorf("Client.Close did not return within %v", d)
	}
	return time.Since(start)
}

// lcEchoHandler answers lcEcho with prefix+Text.
func lcEchoHandler(r netmsg.Registrar, prefix string) {
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req lcEcho) (lcEchoReply, error) {
		return lcEchoReply{Text: prefix + req.Text}, nil
	})
}

// lcHoldHandler answers lcHold after the request's ctx ends (returning its
// error), counting calls and reporting each start on started.
type lcHoldHandler struct {
	mu      sync.Mutex
	calls   int
	started chan string
	ended   chan string
}

func lcAddHold(r netmsg.Registrar) *lcHoldHandler {
	h := &lcHoldHandler{started: make(chan string, 64), ended: make(chan string, 64)}
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req lcHold) (lcEchoReply, error) {
		h.mu.Lock()
		h.calls++
		h.mu.Unlock()
		h.started <- req.Key
		defer func() { h.ended <- req.Key }()
		<-ctx.Done()
		return lcEchoReply{}, ctx.Err()
	})
	return h
}

func (h *lcHoldHandler) Calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// ---- events ----

type lcServerClose struct {
	S   *netmsg.Session
	Err *netmsg.CloseError
}

// lcRecorder records session events of a server and disconnects of a client.
type lcRecorder struct {
	mu          sync.Mutex
	opened      []*netmsg.Session
	closeCount  map[string]int // server session ID → OnSessionClose calls
	disconnects []*netmsg.CloseError

	srvOpen   chan *netmsg.Session
	srvClosed chan lcServerClose
	cliDisc   chan *netmsg.CloseError
}

func lcNewRecorder() *lcRecorder {
	return &lcRecorder{
		closeCount: make(map[string]int),
		srvOpen:    make(chan *netmsg.Session, 4096),
		srvClosed:  make(chan lcServerClose, 4096),
		cliDisc:    make(chan *netmsg.CloseError, 4096),
	}
}

func (r *lcRecorder) ServerOptions() []netmsg.ServerOption {
	return []netmsg.ServerOption{
		netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
			r.mu.Lock()
			r.opened = append(r.opened, s)
			r.mu.Unlock()
			r.srvOpen <- s
		}),
		netmsg.WithOnSessionClose(func(s *netmsg.Session, ce *netmsg.CloseError) {
			r.mu.Lock()
			r.closeCount[s.ID()]++
			r.mu.Unlock()
			r.srvClosed <- lcServerClose{S: s, Err: ce}
		}),
	}
}

func (r *lcRecorder) ClientOptions() []netmsg.ClientOption {
	return []netmsg.ClientOption{
		netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			r.mu.Lock()
			r.disconnects = append(r.disconnects, ce)
			r.mu.Unlock()
			r.cliDisc <- ce
		}),
	}
}

// NextOpen waits for the next server session to open.
func (r *lcRecorder) NextOpen(t testing.TB) *netmsg.Session {
	t.Helper()
	select {
	case s := <-r.srvOpen:
		return s
	case <-time.After(lcWait):
		t.Fatal("no server session opened")
		return nil
	}
}

// NextServerClose waits for the next OnSessionClose.
func (r *lcRecorder) NextServerClose(t testing.TB) lcServerClose {
	t.Helper()
	select {
	case c := <-r.srvClosed:
		require.NotNil(t, c.Err, "OnSessionClose got a nil *CloseError")
		return c
	case <-time.After(lcWait):
		t.Fatal("OnSessionClose was not called")
		return lcServerClose{}
	}
}

// NextDisconnect waits for the next client OnDisconnect.
func (r *lcRecorder) NextDisconnect(t testing.TB) *netmsg.CloseError {
	t.Helper()
	select {
	case ce := <-r.cliDisc:
		require.NotNil(t, ce, "OnDisconnect got a nil *CloseError")
		return ce
	case <-time.After(lcWait):
		t.Fatal("OnDisconnect was not called")
		return nil
	}
}

// Disconnects returns how many times OnDisconnect was called.
func (r *lcRecorder) Disconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.disconnects)
}

// Opened returns how many server sessions opened.
func (r *lcRecorder) Opened() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.opened)
}

// AssertClosedOnce checks that every server session that opened got exactly
// one OnSessionClose, and that no session got more than one.
func (r *lcRecorder) AssertClosedOnce(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.opened {
		assert.Equal(t, 1, r.closeCount[s.ID()], "OnSessionClose calls for session %s", s.ID())
	}
	for id, n := range r.closeCount {
		assert.Equal(t, 1, n, "OnSessionClose calls for session %s", id)
	}
}

// lcSettle gives stray duplicate callbacks time to show up.
func lcSettle() { time.Sleep(200 * time.Millisecond) }

// lcAssertClose checks the fields every *CloseError must get right.
func lcAssertClose(t testing.TB, ce *netmsg.CloseError, reason netmsg.CloseReason, code uint16, remote bool) {
	t.Helper()
	require.NotNil(t, ce)
	assert.Equal(t, reason.String(), ce.Reason.String(), "Reason of %v", ce)
	if code != 0 {
		assert.Equal(t, code, ce.Code, "Code of %v", ce)
	}
	assert.Equal(t, remote, ce.Remote, "Remote of %v", ce)
	assert.ErrorIs(t, ce, netmsg.ErrClosed)
	assert.NotEmpty(t, ce.Error())
}

// lcCloseErrorOf extracts the *CloseError from err.
func lcCloseErrorOf(t testing.TB, err error) *netmsg.CloseError {
	t.Helper()
	var ce *netmsg.CloseError
	require.ErrorAs(t, err, &ce, "want a *netmsg.CloseError, got %v", err)
	assert.ErrorIs(t, err, netmsg.ErrClosed)
	return ce
}

// ---- calls in the background ----

type lcResult struct {
	Reply lcEchoReply
	Err   error
	Took  time.Duration
}

// lcGoRequest runs SendRequest on its own goroutine; the result arrives on the
// returned channel. When the test ends the call is cancelled (if it is still
// waiting) and waited for, so a failed test leaves no goroutine behind.
func lcGoRequest[Req netmsg.Request[lcEchoReply]](t testing.TB, ctx context.Context, p netmsg.Peer, req Req) <-chan lcResult {
	ch := make(chan lcResult, 1)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		r, err := netmsg.SendRequest(ctx, p, req)
		ch <- lcResult{Reply: r, Err: err, Took: time.Since(start)}
	}()
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(lcWait):
			t.Errorf("a %T call did not return after its ctx was cancelled", req)
		}
	})
	return ch
}

func lcAwait(t testing.TB, ch <-chan lcResult, d time.Duration) lcResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("call did not return within %v", d)
		return lcResult{}
	}
}

// lcAssertPending checks that ch has no result for d.
func lcAssertPending(t testing.TB, ch <-chan lcResult, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("call returned early: %+v", r)
	case <-time.After(d):
	}
}

// ---- raw gws peers ----

// lcRawPeer is a gws connection speaking the netmsg subprotocol without the
// netmsg library, for producing what a well-behaved peer never sends.
type lcRawPeer struct {
	Conn        *gws.Conn
	answerPings bool

	Pings  chan []byte
	Pongs  chan []byte
	Msgs   chan []byte
	Closed chan error // OnClose's error, once

	loopDone chan struct{}
}

type lcRawEvents struct{ p *lcRawPeer }

func (e lcRawEvents) OnOpen(*gws.Conn) {}
func (e lcRawEvents) OnClose(_ *gws.Conn, err error) {
	e.p.Closed <- err
}
func (e lcRawEvents) OnPing(c *gws.Conn, payload []byte) {
	select {
	case e.p.Pings <- append([]byte(nil), payload...):
	default:
	}
	if e.p.answerPings {
		_ = c.WritePong(payload)
	}
}
func (e lcRawEvents) OnPong(_ *gws.Conn, payload []byte) {
	select {
	case e.p.Pongs <- append([]byte(nil), payload...):
	default:
	}
}
func (e lcRawEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	b := append([]byte(nil), m.Bytes()...)
	_ = m.Close()
	select {
	case e.p.Msgs <- b:
	default:
	}
}

func lcNewRawPeer(answerPings bool) *lcRawPeer {
	return &lcRawPeer{
		answerPings: answerPings,
		Pings:       make(chan []byte, 1024),
		Pongs:       make(chan []byte, 1024),
		Msgs:        make(chan []byte, 1024),
		Closed:      make(chan error, 1),
		loopDone:    make(chan struct{}),
	}
}

// lcDialRaw connects a raw gws client to a netmsg server at url, offering the
// JSON subprotocol. With read set it runs the read loop (answering pings when
// answerPings is set); without, it never reads.
func lcDialRaw(t testing.TB, url string, read, answerPings bool) *lcRawPeer {
	t.Helper()
	p := lcNewRawPeer(answerPings)
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", "netmsg.v1.json")
	conn, resp, err := gws.NewClient(lcRawEvents{p}, &gws.ClientOption{
		Addr:          url,
		RequestHeader: h,
		Recovery:      gws.Recovery,
	})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	require.Equal(t, "netmsg.v1.json", conn.SubProtocol())
	p.Conn = conn
	if read {
		go func() {
			defer close(p.loopDone)
			conn.ReadLoop()
		}()
	} else {
		close(p.loopDone)
	}
	t.Cleanup(func() {
		_ = conn.NetConn().Close()
		select {
		case <-p.loopDone:
		case <-time.After(lcWait):
			t.Errorf("raw peer's read loop did not end")
		}
	})
	return p
}

// NextClose waits for the raw peer's OnClose.
func (p *lcRawPeer) NextClose(t testing.TB) error {
	t.Helper()
	select {
	case err := <-p.Closed:
		return err
	case <-time.After(lcWait):
		t.Fatal("raw peer: connection did not close")
		return nil
	}
}

// lcRawServer is a bare gws server speaking the netmsg subprotocol, for
// sending a netmsg client what a netmsg server never sends.
type lcRawServer struct {
	URL   string
	Peers chan *lcRawPeer
}

func lcStartRawServer(t testing.TB) *lcRawServer {
	t.Helper()
	rs := &lcRawServer{Peers: make(chan *lcRawPeer, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []*gws.Conn
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := lcNewRawPeer(true)
		up := gws.NewUpgrader(lcRawEvents{p}, &gws.ServerOption{
			SubProtocols: []string{"netmsg.v1.json"},
			Recovery:     gws.Recovery,
		})
		conn, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		p.Conn = conn
		mu.Lock()
		conns = append(conns, conn)
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			defer close(p.loopDone)
			conn.ReadLoop()
		}()
		rs.Peers <- p
	}))
	rs.URL = "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	t.Cleanup(func() {
		hs.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.NetConn().Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return rs
}

func (rs *lcRawServer) NextPeer(t testing.TB) *lcRawPeer {
	t.Helper()
	select {
	case p := <-rs.Peers:
		return p
	case <-time.After(lcWait):
		t.Fatal("raw server: no connection")
		return nil
	}
}

// lcGwsCloseCode returns the close code of a *gws.CloseError, or 0.
func lcGwsCloseCode(err error) uint16 {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// lcReleaser returns a channel closed by release, which may be called more
// than once. It is also released when the test ends, so a handler blocked on
// it cannot hold up the cleanup of a failed test: create it after the server
// or client whose handlers wait for it (cleanups run last-in first-out).
func lcReleaser(t testing.TB) (ch chan struct{}, release func()) {
	ch = make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return ch, release
}

// lcWaitState waits until c is in state want.
func lcWaitState(t testing.TB, c *netmsg.Client, want netmsg.ConnState) {
	t.Helper()
	require.Eventually(t, func() bool { return c.State() == want }, lcWait, time.Millisecond,
		"client state: want %v, have %v", want, c.State())
}
