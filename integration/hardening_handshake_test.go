package integration_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hdAssertStillHTTP checks that a refused upgrade left the connection a
// plain HTTP/1.1 connection: the server answers a second request on it,
// which it could not have done had gws hijacked it.
func hdAssertStillHTTP(t testing.TB, p *nettest.WSPeer) {
	t.Helper()
	_ = p.SetDeadline(time.Now().Add(nettest.Wait))
	defer func() { _ = p.SetDeadline(time.Time{}) }()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.RemoteAddr().String()+"/", nil)
	require.NoError(t, err)
	require.NoError(t, req.Write(p.Conn))
	resp, err := http.ReadResponse(p.BufReader(), req)
	require.NoError(t, err, "the connection no longer speaks HTTP after the refusal")
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode, "a plain GET on the same connection")
}

func hdAssertRefused(t testing.TB, p *nettest.WSPeer, status int, text ...string) {
	t.Helper()
	require.Equal(t, status, p.Resp.StatusCode, "status (body %q)", p.Body)
	assert.True(t, hdContains(p.Body, text...), "body %q should contain %q", p.Body, text)
	hdAssertStillHTTP(t, p)
}

// TestHardeningOrigin: browsers' Origin headers are checked before the
// upgrade; a refusal is a plain 403.
func TestHardeningOrigin(t *testing.T) {
	t.Parallel()
	def := hdStartServer(t)
	allow := hdStartServer(t, netmsg.WithAllowedOrigins("https://good.example", "*.trusted.example"))

	for _, tc := range []struct {
		name   string
		srv    *hdServer
		origin string // "" sends none; "SELF" the server's own host
		ok     bool
	}{
		{"default: no Origin (not a browser)", def, "", true},
		{"default: same host", def, "SELF", true},
		{"default: another host", def, "https://evil.example", false},
		{"default: same host name, other port", def, "http://127.0.0.1:1", false},
		{"default: opaque origin", def, "null", false},
		{"allowlist: listed origin", allow, "https://good.example", true},
		{"allowlist: wildcard host", allow, "https://a.trusted.example", true},
		{"allowlist: unlisted origin", allow, "https://evil.example", false},
		{"allowlist: same host is not implied", allow, "SELF", false},
		{"allowlist: a full origin must match its scheme", allow, "http://good.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			switch tc.origin {
			case "":
			case "SELF":
				hdr.Set("Origin", "http://"+tc.srv.Addr)
			default:
				hdr.Set("Origin", tc.origin)
			}
			p := nettest.DialWS(t, tc.srv.Addr, nettest.WSDial{Header: hdr})
			if tc.ok {
				require.Equal(t, http.StatusSwitchingProtocols, p.Resp.StatusCode, "body %q", p.Body)
				tc.srv.NextOpen(t)
				return
			}
			hdAssertRefused(t, p, http.StatusForbidden, "origin")
		})
	}
	assert.Zero(t, len(def.rec.Open)+len(allow.rec.Open), "sessions opened for refused handshakes")

	t.Run("netmsg client refused", func(t *testing.T) {
		hdr := http.Header{}
		hdr.Set("Origin", "https://evil.example")
		c := netmsg.NewClient(def.URL, netmsg.WithHeader(hdr))
		defer c.Close()
		err := c.Connect(context.Background())
		var he *netmsg.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusForbidden, he.Status)
		assert.Contains(t, he.Error(), "origin")
	})
}

type hdUserKey struct{}

// TestHardeningAuthorize: WithAuthorize runs before the upgrade; a refusal
// is a plain 401 or the *HTTPError's status, and an accepted request's
// context becomes the session's base context.
func TestHardeningAuthorize(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := hdStartServer(t, netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
		calls.Add(1)
		switch r.Header.Get("Authorization") {
		case "Bearer alice":
			return context.WithValue(r.Context(), hdUserKey{}, "alice"), nil
		case "Bearer flood":
			return nil, &netmsg.HTTPError{Status: http.StatusTooManyRequests, Message: "slow down"}
		case "Bearer banned":
			return nil, &netmsg.HTTPError{Status: http.StatusForbidden}
		}
		return nil, errors.New("secret reason that must not leak")
	}))
	seen := make(chan [2]any, 1)
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req hdEcho) (hdEchoReply, error) {
		seen <- [2]any{ctx.Value(hdUserKey{}), s.Context().Value(hdUserKey{})}
		return hdEchoReply{Text: req.Text}, nil
	})

	for _, tc := range []struct {
		auth   string
		status int
		text   string
	}{
		{"", http.StatusUnauthorized, "unauthorized"},
		{"Bearer mallory", http.StatusUnauthorized, "unauthorized"},
		{"Bearer flood", http.StatusTooManyRequests, "slow down"},
		{"Bearer banned", http.StatusForbidden, ""},
	} {
		t.Run("refused "+tc.auth, func(t *testing.T) {
			hdr := http.Header{}
			if tc.auth != "" {
				hdr.Set("Authorization", tc.auth)
			}
			before := calls.Load()
			p := nettest.DialWS(t, srv.Addr, nettest.WSDial{Header: hdr})
			hdAssertRefused(t, p, tc.status, tc.text)
			assert.NotContains(t, p.Body, "secret", "the authorizer's error text reaches the client")
			assert.Equal(t, before+1, calls.Load(), "Authorize calls")
		})
	}

	t.Run("netmsg client refused", func(t *testing.T) {
		c := netmsg.NewClient(srv.URL, netmsg.WithReconnect(netmsg.DefaultBackOff()))
		defer c.Close()
		err := c.Connect(context.Background())
		var he *netmsg.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusUnauthorized, he.Status)
	})

	t.Run("accepted: its context is the session's base context", func(t *testing.T) {
		hdr := http.Header{}
		hdr.Set("Authorization", "Bearer alice")
		cli := nettest.Connect(t, srv.URL, netmsg.WithHeader(hdr))
		ss := srv.NextOpen(t)
		assert.Equal(t, "alice", ss.Context().Value(hdUserKey{}))
		_, err := netmsg.SendRequest(context.Background(), cli, hdEcho{Text: "hi"})
		require.NoError(t, err)
		got := <-seen
		assert.Equal(t, "alice", got[0], "handler ctx value")
		assert.Equal(t, "alice", got[1], "session ctx value")
		// The HTTP request's context ended with the handshake; the session's did not.
		assert.NoError(t, ss.Context().Err())
	})
	assert.Equal(t, 0, len(srv.rec.Open), "sessions opened for refused handshakes")
}

// TestHardeningSubprotocol: a client offering no serializer the server
// accepts gets a plain 400 that says what was offered and what is accepted.
func TestHardeningSubprotocol(t *testing.T) {
	t.Parallel()
	srv := hdStartServer(t) // JSON only

	t.Run("unknown subprotocol", func(t *testing.T) {
		hdr := http.Header{}
		hdr.Set("Sec-WebSocket-Protocol", "netmsg.v1.bogus")
		p := nettest.DialWS(t, srv.Addr, nettest.WSDial{Header: hdr})
		hdAssertRefused(t, p, http.StatusBadRequest, "no supported serializer", "netmsg.v1.bogus", "netmsg.v1.json")
	})
	t.Run("no subprotocol", func(t *testing.T) {
		hdr := http.Header{"Sec-Websocket-Protocol": nil}
		p := nettest.DialWS(t, srv.Addr, nettest.WSDial{Header: hdr})
		hdAssertRefused(t, p, http.StatusBadRequest, "no supported serializer", "none", "netmsg.v1.json")
	})
	t.Run("netmsg client with another serializer", func(t *testing.T) {
		c := netmsg.NewClient(srv.URL, netmsg.WithSerializer(serializer.Protobuf{}))
		defer c.Close()
		err := c.Connect(context.Background())
		var he *netmsg.HandshakeError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, http.StatusBadRequest, he.Status)
		assert.True(t, hdContains(he.Error(), "netmsg.v1.proto", "netmsg.v1.json"), "error %q", he.Error())
	})
	t.Run("the accepted one on a second header line", func(t *testing.T) {
		// gws reads only the first Sec-WebSocket-Protocol line; so does the
		// check, so the refusal comes before the hijack as plain HTTP.
		hdr := http.Header{"Sec-Websocket-Protocol": {"netmsg.v1.bogus", "netmsg.v1.json"}}
		p := nettest.DialWS(t, srv.Addr, nettest.WSDial{Header: hdr})
		hdAssertRefused(t, p, http.StatusBadRequest, "no supported serializer", "netmsg.v1.bogus")
	})
	t.Run("one of several offered is accepted", func(t *testing.T) {
		hdr := http.Header{}
		hdr.Set("Sec-WebSocket-Protocol", "netmsg.v1.bogus, netmsg.v1.json")
		p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{Header: hdr})
		assert.Equal(t, "netmsg.v1.json", p.Resp.Header.Get("Sec-WebSocket-Protocol"))
		srv.NextOpen(t)
	})
	assert.Equal(t, 0, len(srv.rec.Open), "sessions opened for refused handshakes")
}

// hdAwaitServerHangup waits until the server ends c; it returns how long
// that took, or fails after nettest.Wait.
func hdAwaitServerHangup(t testing.TB, c net.Conn, start time.Time) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(nettest.Wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close an unfinished handshake within %v", nettest.Wait)
	}
	return time.Since(start)
}

// TestHardeningHandshakeTimeout: a handshake that never finishes (nothing
// sent, a partial request, a request dripped byte by byte) is closed within
// the handshake timeout.
func TestHardeningHandshakeTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := hdStartServer(t, netmsg.WithHandshakeTimeout(timeout))

	for _, tc := range []struct {
		name string
		send func(c net.Conn, stop <-chan struct{})
	}{
		{"nothing sent", func(net.Conn, <-chan struct{}) {}},
		{"partial request", func(c net.Conn, _ <-chan struct{}) {
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
		}},
		{"request dripped a byte at a time", func(c net.Conn, stop <-chan struct{}) {
			req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
			for i := 0; i < len(req); i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := c.Write([]byte{req[i]}); err != nil {
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", srv.Addr)
			require.NoError(t, err)
			defer c.Close()
			start := time.Now()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); tc.send(c, stop) }()
			took := hdAwaitServerHangup(t, c, start)
			close(stop)
			wg.Wait()
			t.Logf("closed after %v (handshake timeout %v)", took, timeout)
		})
	}
}

// TestHardeningHandshakeFlood: 1,000 handshakes that never finish, all at
// once, are all closed within the handshake timeout, and the server's
// goroutines return to where they were. Not parallel: it counts goroutines.
func TestHardeningHandshakeFlood(t *testing.T) {
	const n = 1000
	const timeout = 500 * time.Millisecond
	srv := hdStartServer(t, netmsg.WithHandshakeTimeout(timeout))
	hdEchoHandler(srv.Server)
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", srv.Addr, nettest.Wait)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
	}
	start := time.Now()
	peak := runtime.NumGoroutine()

	// A well-behaved client gets through while the flood is pending.
	cli := nettest.Connect(t, srv.URL)
	srv.NextOpen(t)
	_, err := netmsg.SendRequest(context.Background(), cli, hdEcho{Text: "through the flood"})
	require.NoError(t, err)

	var wg sync.WaitGroup
	var late atomic.Int32
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(2 * nettest.Wait))
			_, err := io.Copy(io.Discard, bufio.NewReader(c))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				late.Add(1)
			}
		}(c)
	}
	wg.Wait()
	took := time.Since(start)
	assert.Zero(t, late.Load(), "unfinished handshakes still open after %v", 2*nettest.Wait)
	t.Logf("%d unfinished handshakes closed after %v (timeout %v); goroutines: %d before, peak %d", n, took, timeout, base, peak)
	assert.Less(t, took, timeout+2*nettest.Wait)

	require.NoError(t, cli.Close())
	after := nettest.GoroutinesSettle(base, nettest.Wait)
	assert.LessOrEqual(t, after, base, "goroutines after the flood (before: %d)", base)
}

// TestHardeningClientHandshakeTimeout: a server that accepts the connection
// and never answers the upgrade does not hold Connect beyond the handshake
// timeout.
func TestHardeningClientHandshakeTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var held []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		_ = ln.Close()
		<-accepted
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	}()

	c := netmsg.NewClient("ws://"+ln.Addr().String()+"/", netmsg.WithHandshakeTimeout(300*time.Millisecond))
	defer c.Close()
	start := time.Now()
	err = c.Connect(context.Background())
	took := time.Since(start)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "handshake")
	assert.Less(t, took, nettest.Wait, "Connect returned after %v", took)
	t.Logf("Connect failed after %v: %v", took, err)
}
