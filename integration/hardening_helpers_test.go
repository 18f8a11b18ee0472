package integration_test

// Helpers shared by the hardening_*_test.go files. Every top-level name here
// starts with "hd" so it cannot collide with the other files of this package.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hdWait bounds anything that should happen "at once" or within a configured
// bound far below it. The machine is shared (two noisy cores, -race), so it
// is wide on purpose.
const hdWait = 5 * time.Second

// ---- contracts ----

type hdEcho struct {
	netmsg.Returns[hdEchoReply]
	Text string
}

type hdEchoReply struct{ Text string }

// hdHold blocks in its handler until released (see hdHolder).
type hdHold struct {
	netmsg.Returns[hdEchoReply]
	Key string
}

// hdText is a message whose JSON size grows one byte per byte of S.
type hdText struct{ S string }

// ---- logs ----

// hdLog records Error-level records: gws logs a panic it recovered in one of
// netmsg's callbacks at that level ("gws: fatal error: ..."), and netmsg logs
// handler panics there. None of the hardening tests makes a handler panic, so
// any such record is a failure.
type hdLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *hdLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *hdLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		l.mu.Lock()
		l.errs = append(l.errs, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *hdLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *hdLog) WithGroup(string) slog.Handler      { return l }

func (l *hdLog) assertClean(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Empty(t, l.errs, "Error-level log records (a recovered panic?)")
}

// ---- servers ----

type hdClosed struct {
	S   *netmsg.Session
	Err *netmsg.CloseError
	At  time.Time
}

// hdServer is a netmsg server on a real loopback listener, run by Serve. Its
// listener remembers every accepted connection so Kill can drop them all.
type hdServer struct {
	Srv  *netmsg.Server
	Addr string // host:port
	URL  string // ws://host:port/ (wss:// with TLS)
	Log  *hdLog

	ln       *hdListener
	killed   atomic.Bool
	opened   chan *netmsg.Session
	closed   chan hdClosed
	serveErr chan error
	once     sync.Once
}

// hdListener is a net.Listener that tracks the connections it accepted and
// may tune their sockets.
type hdListener struct {
	net.Listener
	tune  func(*net.TCPConn)
	mu    sync.Mutex
	conns []net.Conn
}

func (l *hdListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if tc, ok := c.(*net.TCPConn); ok && l.tune != nil {
			l.tune(tc)
		}
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// kill closes the listener and every connection it accepted, as a crashing
// server process would (the sockets are reset or closed under the sessions).
func (l *hdListener) kill() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, like a killed process
		}
		_ = c.Close()
	}
}

// hdStartServer serves a new server on 127.0.0.1:0. The server is shut down
// when the test ends, and the test fails if it logged an Error record.
func hdStartServer(t testing.TB, opts ...netmsg.ServerOption) *hdServer {
	return hdStartServerOn(t, nil, nil, opts...)
}

// hdStartServerOn is hdStartServer with the listener wrapped by wrap (TLS)
// and every accepted socket passed to tune first; either may be nil.
func hdStartServerOn(t testing.TB, wrap func(net.Listener) net.Listener, tune func(*net.TCPConn), opts ...netmsg.ServerOption) *hdServer {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &hdServer{
		Log:      &hdLog{},
		ln:       &hdListener{Listener: raw, tune: tune},
		opened:   make(chan *netmsg.Session, 4096),
		closed:   make(chan hdClosed, 4096),
		serveErr: make(chan error, 1),
		Addr:     raw.Addr().String(),
	}
	s.URL = "ws://" + s.Addr + "/"
	var ln net.Listener = s.ln
	if wrap != nil {
		ln = wrap(ln)
		s.URL = "wss://" + s.Addr + "/"
	}
	all := []netmsg.ServerOption{
		netmsg.WithLogger(slog.New(s.Log)),
		netmsg.WithOnSessionOpen(func(ss *netmsg.Session) { s.opened <- ss }),
		netmsg.WithOnSessionClose(func(ss *netmsg.Session, ce *netmsg.CloseError) {
			s.closed <- hdClosed{S: ss, Err: ce, At: time.Now()}
		}),
	}
	s.Srv = netmsg.NewServer(append(all, opts...)...)
	go func() { s.serveErr <- s.Srv.Serve(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, s.shutdown(t, 10*time.Second), "Server.Shutdown")
		s.Log.assertClean(t)
	})
	return s
}

func (s *hdServer) shutdown(t testing.TB, d time.Duration) error {
	var err error
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		err = s.Srv.Shutdown(ctx)
		select {
		case serr := <-s.serveErr:
			if !s.killed.Load() { // after Kill, Serve returns the listener's error
				assert.ErrorIs(t, serr, http.ErrServerClosed, "Serve's result after Shutdown")
			}
		case <-time.After(hdWait):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return err
}

// Kill closes the listener and every connection the server accepted, as if
// the server process had died.
func (s *hdServer) Kill() {
	s.killed.Store(true)
	s.ln.kill()
}

// NextOpen waits for the next session to open.
func (s *hdServer) NextOpen(t testing.TB) *netmsg.Session {
	t.Helper()
	select {
	case ss := <-s.opened:
		return ss
	case <-time.After(hdWait):
		t.Fatal("no server session opened")
		return nil
	}
}

// CloseOf waits for OnSessionClose of ss (other sessions' closes are dropped).
func (s *hdServer) CloseOf(t testing.TB, ss *netmsg.Session) hdClosed {
	t.Helper()
	deadline := time.After(hdWait)
	for {
		select {
		case c := <-s.closed:
			if c.S == ss {
				require.NotNil(t, c.Err, "OnSessionClose got a nil *CloseError")
				return c
			}
		case <-deadline:
			t.Fatalf("session %s did not close within %v", ss.ID(), hdWait)
			return hdClosed{}
		}
	}
}

// hdEchoHandler answers hdEcho with its text.
func hdEchoHandler(r netmsg.Registrar) {
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req hdEcho) (hdEchoReply, error) {
		return hdEchoReply{Text: req.Text}, nil
	})
}

// hdHolder answers hdHold once released (or when the request's ctx ends).
type hdHolder struct {
	release chan struct{}
	started chan string
	once    sync.Once
}

func hdAddHold(r netmsg.Registrar) *hdHolder {
	h := &hdHolder{release: make(chan struct{}), started: make(chan string, 1<<16)}
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req hdHold) (hdEchoReply, error) {
		h.started <- req.Key
		select {
		case <-h.release:
			return hdEchoReply{Text: "released " + req.Key}, nil
		case <-ctx.Done():
			return hdEchoReply{}, ctx.Err()
		}
	})
	return h
}

func (h *hdHolder) Release() { h.once.Do(func() { close(h.release) }) }

// ---- netmsg clients ----

// hdConnect creates a client and connects it; it is closed when the test ends.
func hdConnect(t testing.TB, url string, opts ...netmsg.ClientOption) *netmsg.Client {
	t.Helper()
	c := netmsg.NewClient(url, opts...)
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { _ = c.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(hdWait):
			t.Errorf("Client.Close did not return within %v", hdWait)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	return c
}

// hdBystander is a well-behaved client on the same server as a misbehaving
// peer; it must not notice anything.
type hdBystander struct {
	C           *netmsg.Client
	sessionID   string
	disconnects atomic.Int32
}

func hdNewBystander(t testing.TB, srv *hdServer) *hdBystander {
	t.Helper()
	b := &hdBystander{}
	b.C = hdConnect(t, srv.URL, netmsg.WithOnDisconnect(func(*netmsg.CloseError) { b.disconnects.Add(1) }))
	srv.NextOpen(t)
	b.sessionID = b.C.Session().ID()
	b.AssertFine(t)
	return b
}

// AssertFine checks that the bystander's first session is still up and answers.
func (b *hdBystander) AssertFine(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hdWait)
	defer cancel()
	r, err := netmsg.SendRequest(ctx, b.C, hdEcho{Text: "still here"})
	require.NoError(t, err, "bystander's request")
	assert.Equal(t, "still here", r.Text)
	assert.Zero(t, b.disconnects.Load(), "bystander disconnects")
	if s := b.C.Session(); assert.NotNil(t, s) {
		assert.Equal(t, b.sessionID, s.ID(), "bystander's session was replaced")
	}
}

// ---- raw gws peers ----

// hdGwsPeer is a gws client speaking the netmsg subprotocol without the
// netmsg library, to send what a well-behaved peer never sends.
type hdGwsPeer struct {
	Conn   *gws.Conn
	Msgs   chan []byte
	Closed chan error
	done   chan struct{}
}

type hdGwsEvents struct{ p *hdGwsPeer }

func (e hdGwsEvents) OnOpen(*gws.Conn)                   {}
func (e hdGwsEvents) OnClose(_ *gws.Conn, err error)     { e.p.Closed <- err }
func (e hdGwsEvents) OnPing(c *gws.Conn, payload []byte) { _ = c.WritePong(payload) }
func (e hdGwsEvents) OnPong(*gws.Conn, []byte)           {}
func (e hdGwsEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	b := append([]byte(nil), m.Bytes()...)
	_ = m.Close()
	select {
	case e.p.Msgs <- b:
	default:
	}
}

// hdDialGws connects a raw gws client (reading, answering pings) to url,
// offering netmsg.v1.json; edit may change the options.
func hdDialGws(t testing.TB, url string, edit func(*gws.ClientOption)) *hdGwsPeer {
	t.Helper()
	p := &hdGwsPeer{Msgs: make(chan []byte, 1024), Closed: make(chan error, 1), done: make(chan struct{})}
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", "netmsg.v1.json")
	opt := &gws.ClientOption{Addr: url, RequestHeader: h, Recovery: gws.Recovery}
	if edit != nil {
		edit(opt)
	}
	conn, resp, err := gws.NewClient(hdGwsEvents{p}, opt)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	require.Equal(t, "netmsg.v1.json", conn.SubProtocol())
	p.Conn = conn
	go func() {
		defer close(p.done)
		conn.ReadLoop()
	}()
	t.Cleanup(func() {
		_ = conn.NetConn().Close()
		select {
		case <-p.done:
		case <-time.After(hdWait):
			t.Errorf("raw gws peer's read loop did not end")
		}
	})
	return p
}

// NextEnvelope waits for the next envelope the server sent.
func (p *hdGwsPeer) NextEnvelope(t testing.TB) wire.Envelope {
	t.Helper()
	select {
	case b := <-p.Msgs:
		var e wire.Envelope
		require.NoError(t, wire.Decode(b, &e), "the server sent a malformed envelope")
		return e
	case <-time.After(hdWait):
		t.Fatal("raw peer: no envelope from the server")
		return wire.Envelope{}
	}
}

// NextCloseCode waits for the connection to end and returns the close code
// the server sent (0 when it sent none).
func (p *hdGwsPeer) NextCloseCode(t testing.TB) uint16 {
	t.Helper()
	select {
	case err := <-p.Closed:
		var ce *gws.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return 0
	case <-time.After(hdWait):
		t.Fatal("raw peer: the server did not close the connection")
		return 0
	}
}

// Send writes one binary frame.
func (p *hdGwsPeer) Send(t testing.TB, b []byte) {
	t.Helper()
	require.NoError(t, p.Conn.WriteMessage(gws.OpcodeBinary, b))
}

// ---- raw TCP peers: hand-written frames ----

// hdTCPPeer is a plain TCP connection that did the WebSocket handshake by
// hand; frames are written byte by byte by the test.
type hdTCPPeer struct {
	net.Conn
	br   *bufio.Reader
	Resp *http.Response
	Body string
}

// hdDialTCP dials addr and sends a WebSocket upgrade request with the given
// extra headers (Sec-WebSocket-Protocol defaults to netmsg.v1.json). It
// returns after reading the answer's header; check Resp.StatusCode.
func hdDialTCP(t testing.TB, addr string, hdr http.Header) *hdTCPPeer {
	t.Helper()
	return hdDialTCPWith(t, addr, hdr, nil)
}

// hdDialTCPPipelined is hdDialTCP that writes first, in the same write as
// the upgrade request, before the answer.
func hdDialTCPPipelined(t testing.TB, addr string, first []byte) *hdTCPPeer {
	t.Helper()
	return hdDialTCPWith(t, addr, nil, first)
}

func hdDialTCPWith(t testing.TB, addr string, hdr http.Header, first []byte) *hdTCPPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, hdWait)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	p := &hdTCPPeer{Conn: c, br: bufio.NewReader(c)}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	require.NoError(t, err)
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	req.Header.Set("Sec-WebSocket-Protocol", "netmsg.v1.json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	_ = c.SetDeadline(time.Now().Add(hdWait))
	var out bytes.Buffer
	require.NoError(t, req.Write(&out))
	out.Write(first)
	_, err = c.Write(out.Bytes())
	require.NoError(t, err)
	resp, err := http.ReadResponse(p.br, req)
	require.NoError(t, err, "reading the handshake answer")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		p.Body = string(b)
	}
	_ = resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	p.Resp = resp
	return p
}

// hdDialTCPUpgraded is hdDialTCP that requires the upgrade to succeed.
func hdDialTCPUpgraded(t testing.TB, addr string, hdr http.Header) *hdTCPPeer {
	t.Helper()
	p := hdDialTCP(t, addr, hdr)
	require.Equal(t, http.StatusSwitchingProtocols, p.Resp.StatusCode, "handshake: %s", p.Body)
	return p
}

var hdMaskKey = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}

// hdFrameHeader returns a masked client frame header: first byte b0 (FIN,
// RSV bits, opcode) and the declared payload length n, in its shortest form.
func hdFrameHeader(b0 byte, n uint64) []byte {
	h := []byte{b0}
	switch {
	case n <= 125:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, n)
	}
	return append(h, hdMaskKey[:]...)
}

// hdFrame returns a whole masked client frame.
func hdFrame(b0 byte, payload []byte) []byte {
	f := hdFrameHeader(b0, uint64(len(payload)))
	for i, c := range payload {
		f = append(f, c^hdMaskKey[i%4])
	}
	return f
}

// WriteRaw writes raw bytes with a deadline.
func (p *hdTCPPeer) WriteRaw(t testing.TB, b []byte) {
	t.Helper()
	_ = p.SetWriteDeadline(time.Now().Add(hdWait))
	_, err := p.Conn.Write(b)
	require.NoError(t, err)
}

// ReadFrame reads one server frame (servers do not mask).
func (p *hdTCPPeer) ReadFrame() (b0 byte, payload []byte, err error) {
	var h [8]byte
	if _, err = io.ReadFull(p.br, h[:2]); err != nil {
		return 0, nil, err
	}
	b0 = h[0]
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err = io.ReadFull(p.br, h[:2]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err = io.ReadFull(p.br, h[:8]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(p.br, payload)
	return b0, payload, err
}

// ReadCloseCode reads frames until a close frame and returns its code, or 0
// when the connection ended without one. It fails after hdWait.
func (p *hdTCPPeer) ReadCloseCode(t testing.TB) uint16 {
	t.Helper()
	_ = p.SetReadDeadline(time.Now().Add(hdWait))
	defer func() { _ = p.SetReadDeadline(time.Time{}) }()
	for {
		b0, payload, err := p.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server neither closed nor sent a close frame within %v", hdWait)
			}
			return 0
		}
		if b0&0x0f == 0x8 {
			if len(payload) < 2 {
				return 0
			}
			return binary.BigEndian.Uint16(payload)
		}
	}
}

// AssertClosedByServer checks that the server ends the TCP connection (after
// any close frame) within hdWait.
func (p *hdTCPPeer) AssertClosedByServer(t testing.TB) {
	t.Helper()
	_ = p.SetReadDeadline(time.Now().Add(hdWait))
	_, err := io.Copy(io.Discard, p.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", hdWait)
	}
}

// ---- envelopes ----

func hdEnv(kind wire.Kind, id uint64, typ string, payload string) []byte {
	return wire.AppendHeaderAndPayload(nil, kind, id, typ, []byte(payload), 0, nil)
}

// ---- goroutines and memory ----

// hdGoroutinesSettle waits until the goroutine count is at most max and
// returns the count seen last.
func hdGoroutinesSettle(max int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= max || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hdHeapSampler samples HeapInuse every few milliseconds and keeps the peak.
type hdHeapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

func hdSampleHeap() *hdHeapSampler {
	s := &hdHeapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.peak.Load() {
				s.peak.Store(ms.HeapInuse)
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak HeapInuse.
func (s *hdHeapSampler) Stop() uint64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// hdMemStats returns MemStats after a GC.
func hdMemStats() runtime.MemStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// hdMiB formats a byte count.
func hdMiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// hdContains reports whether s contains every part.
func hdContains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
