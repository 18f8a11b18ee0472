package integration_test

// Helpers of the core end-to-end tests. Every top-level name here starts with
// "it" so it cannot collide with the lifecycle and fault tests of this package
// (whose helpers start with "lc").

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itWait bounds what must happen "at once" or "promptly". The machine is
// shared and slow under -race, so the bound is wide; the timeouts it proves
// were not waited for are 30 s or more.
const itWait = 5 * time.Second

// itLong is the timeout of calls that must never run into it.
const itLong = 60 * time.Second

// ---- contracts ----

type itEcho struct {
	netmsg.Returns[itEchoReply]
	Text string
	N    int
}

type itEchoReply struct {
	Text string
	N    int
}

// itWhoAmI is answered with the ID of the session the handler runs on.
type itWhoAmI struct {
	netmsg.Returns[itWhoAmIReply]
}

type itWhoAmIReply struct {
	ID         string
	Serializer string
}

// itBlock is answered by handlers that wait for their ctx to end.
type itBlock struct {
	netmsg.Returns[itEchoReply]
	Key string
}

type itNote struct {
	Seq  int
	Text string
}

// itMarker is a message sent after others to know they were handled (a
// session's messages are handled in order).
type itMarker struct{ Seq int }

// ---- servers ----

// itSrv is a netmsg server behind an httptest server on a loopback port.
type itSrv struct {
	*netmsg.Server
	URL  string // ws://127.0.0.1:port/
	Addr string // 127.0.0.1:port

	hs       *httptest.Server
	shutOnce sync.Once
	shutErr  error
	shutByUs bool // Shutdown was called by the test itself
}

// itStartServer starts a server; it is shut down when the test ends (after
// the clients the test made later, which are closed first).
func itStartServer(t testing.TB, opts ...netmsg.ServerOption) *itSrv {
	t.Helper()
	srv := netmsg.NewServer(opts...)
	hs := httptest.NewServer(srv)
	s := &itSrv{Server: srv, hs: hs, Addr: hs.Listener.Addr().String()}
	s.URL = "ws://" + s.Addr + "/"
	t.Cleanup(func() {
		err := s.shutdown(10*time.Second, false)
		if !s.shutByUs {
			assert.NoError(t, err, "Server.Shutdown at the end of the test")
		}
		hs.Close()
	})
	return s
}

// Shutdown shuts the server down with a ctx of d and returns its error.
func (s *itSrv) Shutdown(d time.Duration) error { return s.shutdown(d, true) }

func (s *itSrv) shutdown(d time.Duration, byTest bool) error {
	s.shutOnce.Do(func() {
		s.shutByUs = byTest
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		s.shutErr = s.Server.Shutdown(ctx)
	})
	return s.shutErr
}

// ---- clients ----

// itNewClient creates a client that is closed when the test ends.
func itNewClient(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := netmsg.NewClient(url, opts...)
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- c.Close() }()
		select {
		case err := <-done:
			assert.NoError(t, err, "Client.Close")
		case <-time.After(2 * itWait):
			t.Errorf("Client.Close did not return within %v", 2*itWait)
		}
	})
	return c
}

// itConnect creates a client and connects it.
func itConnect(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := itNewClient(t, url, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	return c
}

// ---- handlers ----

func itAddWhoAmI(r netmsg.Registrar) func() {
	return netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, _ itWhoAmI) (itWhoAmIReply, error) {
		return itWhoAmIReply{ID: s.ID(), Serializer: s.Serializer().Name()}, nil
	})
}

// itWhoAmIOf returns the ID of the server session of p.
func itWhoAmIOf(t testing.TB, p netmsg.Peer) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := netmsg.SendRequest(ctx, p, itWhoAmI{})
	require.NoError(t, err)
	require.NotEmpty(t, r.ID)
	return r.ID
}

// itBlocker answers itBlock once the handler's ctx ends, reporting starts and
// ends (with ctx's error) on its channels.
type itBlocker struct {
	started chan string
	ended   chan itEnded
}

type itEnded struct {
	Key      string
	Err      error
	Deadline time.Time
	HasDL    bool
}

func itAddBlocker(r netmsg.Registrar) *itBlocker {
	b := &itBlocker{started: make(chan string, 1024), ended: make(chan itEnded, 1024)}
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req itBlock) (itEchoReply, error) {
		dl, ok := ctx.Deadline()
		b.started <- req.Key
		select {
		case <-ctx.Done():
		case <-time.After(2 * itLong):
		}
		b.ended <- itEnded{Key: req.Key, Err: ctx.Err(), Deadline: dl, HasDL: ok}
		return itEchoReply{Text: req.Key}, ctx.Err()
	})
	return b
}

// ---- waiting ----

// itRecv waits up to itWait for a value on ch.
func itRecv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(itWait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// itNone checks that nothing arrives on ch for d.
func itNone[T any](t testing.TB, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	case <-time.After(d):
	}
}

type itResult[R any] struct {
	Resp R
	Err  error
	Took time.Duration
}

// itGo runs SendRequest on a goroutine; the test waits for it before it ends.
func itGo[R any](t testing.TB, ctx context.Context, p netmsg.Peer, req netmsg.Request[R]) <-chan itResult[R] {
	ch := make(chan itResult[R], 1)
	var wg sync.WaitGroup
	wg.Add(1)
	start := time.Now()
	go func() {
		defer wg.Done()
		r, err := netmsg.SendRequest(ctx, p, req)
		ch <- itResult[R]{Resp: r, Err: err, Took: time.Since(start)}
	}()
	t.Cleanup(wg.Wait)
	return ch
}

// ---- server events ----

type itClosed struct {
	S   *netmsg.Session
	Err *netmsg.CloseError
}

// itEvents records a server's session events.
type itEvents struct {
	mu     sync.Mutex
	opened []*netmsg.Session
	closes map[string]int

	open      chan *netmsg.Session
	closed    chan itClosed
	unhandled chan string
	errs      chan error
}

func itNewEvents() *itEvents {
	return &itEvents{
		closes:    make(map[string]int),
		open:      make(chan *netmsg.Session, 1024),
		closed:    make(chan itClosed, 1024),
		unhandled: make(chan string, 1024),
		errs:      make(chan error, 1024),
	}
}

func (e *itEvents) Options() []netmsg.ServerOption {
	return []netmsg.ServerOption{
		netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
			e.mu.Lock()
			e.opened = append(e.opened, s)
			e.mu.Unlock()
			e.open <- s
		}),
		netmsg.WithOnSessionClose(func(s *netmsg.Session, ce *netmsg.CloseError) {
			e.mu.Lock()
			e.closes[s.ID()]++
			e.mu.Unlock()
			e.closed <- itClosed{S: s, Err: ce}
		}),
		netmsg.WithOnUnhandled(func(_ *netmsg.Session, typ string) { e.unhandled <- typ }),
		netmsg.WithOnError(func(_ *netmsg.Session, err error) {
			select {
			case e.errs <- err:
			default:
			}
		}),
	}
}

// With returns e's options followed by more.
func (e *itEvents) With(more ...netmsg.ServerOption) []netmsg.ServerOption {
	return append(e.Options(), more...)
}

func (e *itEvents) Opened() []*netmsg.Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*netmsg.Session(nil), e.opened...)
}

func (e *itEvents) CloseCounts() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int, len(e.closes))
	for k, v := range e.closes {
		m[k] = v
	}
	return m
}

// ---- raw gws peers ----

// itRaw is a gws connection speaking the netmsg JSON subprotocol without the
// library, to send what a netmsg peer never sends and to see the bytes.
type itRaw struct {
	Conn   *gws.Conn
	Msgs   chan []byte // data frames received
	Closed chan error  // OnClose's error
	done   chan struct{}

	// onEnvelope, when set, runs on the read loop for every decoded envelope.
	onEnvelope func(c *gws.Conn, env *itEnv)
}

// itEnv is a decoded envelope whose fields outlive the frame.
type itEnv struct {
	Kind      wire.Kind
	ID        uint64
	Type      string
	Payload   string
	ErrCode   uint32
	ErrMsg    string
	TimeoutMs uint64
}

func itDecode(b []byte) (*itEnv, error) {
	var e wire.Envelope
	if err := wire.Decode(b, &e); err != nil {
		return nil, err
	}
	return &itEnv{Kind: e.Kind, ID: e.ID, Type: string(e.Type), Payload: string(e.Payload),
		ErrCode: e.ErrCode, ErrMsg: string(e.ErrMsg), TimeoutMs: e.TimeoutMs}, nil
}

type itRawEvents struct {
	gws.BuiltinEventHandler
	r *itRaw
}

func (h itRawEvents) OnPing(c *gws.Conn, p []byte) { _ = c.WritePong(p) }
func (h itRawEvents) OnClose(_ *gws.Conn, err error) {
	h.r.Closed <- err
}
func (h itRawEvents) OnMessage(c *gws.Conn, m *gws.Message) {
	b := append([]byte(nil), m.Bytes()...)
	_ = m.Close()
	if h.r.onEnvelope != nil {
		if env, err := itDecode(b); err == nil {
			h.r.onEnvelope(c, env)
		}
	}
	select {
	case h.r.Msgs <- b:
	default:
	}
}

func itNewRaw() *itRaw {
	return &itRaw{Msgs: make(chan []byte, 1024), Closed: make(chan error, 1), done: make(chan struct{})}
}

// itDialRaw connects a raw gws client to url offering netmsg.v1.json and runs
// its read loop until the test ends.
func itDialRaw(t testing.TB, url string) *itRaw {
	t.Helper()
	r := itNewRaw()
	// Set, not a map literal: gws looks the header up with Get, which wants
	// the canonical key.
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", "netmsg.v1.json")
	conn, resp, err := gws.NewClient(itRawEvents{r: r}, &gws.ClientOption{
		Addr:          url,
		RequestHeader: h,
		Recovery:      gws.Recovery,
	})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	require.Equal(t, "netmsg.v1.json", conn.SubProtocol())
	r.Conn = conn
	go func() {
		defer close(r.done)
		conn.ReadLoop()
	}()
	t.Cleanup(func() {
		_ = conn.NetConn().Close()
		select {
		case <-r.done:
		case <-time.After(itWait):
			t.Errorf("raw client's read loop did not end")
		}
	})
	return r
}

// Send writes one binary frame.
func (r *itRaw) Send(t testing.TB, b []byte) {
	t.Helper()
	require.NoError(t, r.Conn.WriteMessage(gws.OpcodeBinary, b))
}

// NextEnvelope waits for the next data frame and decodes it.
func (r *itRaw) NextEnvelope(t testing.TB) *itEnv {
	t.Helper()
	b := itRecv(t, r.Msgs, "a frame from the server")
	env, err := itDecode(b)
	require.NoError(t, err)
	return env
}

// WaitClosed waits for the connection to end and returns OnClose's error.
func (r *itRaw) WaitClosed(t testing.TB) error {
	t.Helper()
	return itRecv(t, r.Closed, "the raw connection to close")
}

// itRawServer is a bare gws server speaking netmsg.v1.json, whose peers run
// onEnvelope for what the netmsg client sends.
type itRawServer struct {
	URL string
}

func itStartRawServer(t testing.TB, onEnvelope func(c *gws.Conn, env *itEnv)) *itRawServer {
	t.Helper()
	var mu sync.Mutex
	var conns []*itRaw
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r := itNewRaw()
		r.onEnvelope = onEnvelope
		up := gws.NewUpgrader(itRawEvents{r: r}, &gws.ServerOption{
			SubProtocols: []string{"netmsg.v1.json"},
			Recovery:     gws.Recovery,
		})
		conn, err := up.Upgrade(w, req)
		if err != nil {
			return
		}
		r.Conn = conn
		mu.Lock()
		conns = append(conns, r)
		mu.Unlock()
		go func() {
			defer close(r.done)
			conn.ReadLoop()
		}()
	}))
	t.Cleanup(func() {
		hs.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, r := range conns {
			_ = r.Conn.NetConn().Close()
			select {
			case <-r.done:
			case <-time.After(itWait):
				t.Errorf("raw server's read loop did not end")
			}
		}
	})
	return &itRawServer{URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/"}
}

// itGwsCloseCode returns the close code in a gws OnClose error, or 0.
func itGwsCloseCode(err error) uint16 {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// itCloseErr asserts that err is a *netmsg.CloseError matching ErrClosed and returns it.
func itCloseErr(t testing.TB, err error) *netmsg.CloseError {
	t.Helper()
	var ce *netmsg.CloseError
	require.ErrorAs(t, err, &ce, "want a *netmsg.CloseError, got %v", err)
	assert.ErrorIs(t, err, netmsg.ErrClosed)
	return ce
}
