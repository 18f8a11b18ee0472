package integration_test

// Tests of the rules docs/PROTOCOL.md writes down, seen from a peer that
// speaks the protocol by hand (as a client in another language would).
// Top-level names start with "pt".

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ptPeer is a raw gws client. Unlike hdGwsPeer it chooses the subprotocols it
// offers and whether it answers WebSocket pings (a browser page never sees
// them; a peer that ignores them stands for a link where only envelopes
// count).
type ptPeer struct {
	Conn   *gws.Conn
	Msgs   chan []byte
	Closed chan error
	pings  atomic.Int64 // WebSocket pings received
	answer bool         // answer WebSocket pings
	done   chan struct{}
}

type ptEvents struct{ p *ptPeer }

func (e ptEvents) OnOpen(*gws.Conn)               {}
func (e ptEvents) OnClose(_ *gws.Conn, err error) { e.p.Closed <- err }
func (e ptEvents) OnPing(c *gws.Conn, payload []byte) {
	e.p.pings.Add(1)
	if e.p.answer {
		_ = c.WritePong(payload)
	}
}
func (e ptEvents) OnPong(*gws.Conn, []byte) {}
func (e ptEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	b := append([]byte(nil), m.Bytes()...)
	_ = m.Close()
	select {
	case e.p.Msgs <- b:
	default:
	}
}

// ptDial connects to url offering the subprotocol header line offer.
func ptDial(t testing.TB, url, offer string, answerPings bool) *ptPeer {
	t.Helper()
	p := &ptPeer{Msgs: make(chan []byte, 1024), Closed: make(chan error, 1), done: make(chan struct{}), answer: answerPings}
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", offer)
	conn, resp, err := gws.NewClient(ptEvents{p}, &gws.ClientOption{Addr: url, RequestHeader: h, Recovery: gws.Recovery})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
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
			t.Errorf("raw peer's read loop did not end")
		}
	})
	return p
}

func (p *ptPeer) Send(t testing.TB, b []byte) {
	t.Helper()
	require.NoError(t, p.Conn.WriteMessage(gws.OpcodeBinary, b))
}

func (p *ptPeer) Next(t testing.TB) wire.Envelope {
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

// NoEnvelope asserts that nothing arrives for d.
func (p *ptPeer) NoEnvelope(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case b := <-p.Msgs:
		t.Fatalf("raw peer: unexpected envelope %x", b)
	case <-time.After(d):
	}
}

// CloseCode waits for the connection to end and returns the close code the
// server sent (0 when none).
func (p *ptPeer) CloseCode(t testing.TB) uint16 {
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

// ptEcho checks that the session still serves requests.
func ptEcho(t testing.TB, p *ptPeer, id uint64) {
	t.Helper()
	p.Send(t, hdEnv(wire.KindRequest, id, netmsg.TypeName(hdEcho{}), `{"Text":"alive"}`))
	e := p.Next(t)
	require.Equal(t, wire.KindResponse, e.Kind, "answer to the echo request: %+v", e)
	assert.Equal(t, id, e.ID)
	assert.JSONEq(t, `{"Text":"alive"}`, string(e.Payload))
}

func TestProtocolSubprotocolSelection(t *testing.T) {
	t.Parallel()
	srv := hdStartServer(t, netmsg.WithSerializer(serializer.JSON{}, serializer.Protobuf{}))
	cases := []struct{ offer, want string }{
		{"netmsg.v2.json, netmsg.v1.json", "netmsg.v2.json"},
		{"netmsg.v1.json, netmsg.v2.json", "netmsg.v2.json"}, // the server's preference decides
		{"netmsg.v1.json", "netmsg.v1.json"},                 // old clients
		{"netmsg.v1.proto, netmsg.v2.json", "netmsg.v2.json"},
		{"netmsg.v1.proto", "netmsg.v1.proto"},
		{"chat, netmsg.v2.proto", "netmsg.v2.proto"},
	}
	for _, tc := range cases {
		p := ptDial(t, srv.URL, tc.offer, true)
		assert.Equal(t, tc.want, p.Conn.SubProtocol(), "offer %q", tc.offer)
		srv.NextOpen(t)
	}
}

// A PING envelope is answered with a PONG carrying its id and payload, on
// revision 2 and on revision 1; a PONG is not answered; the session lives on.
func TestProtocolPingEnvelope(t *testing.T) {
	t.Parallel()
	for _, offer := range []string{"netmsg.v2.json", "netmsg.v1.json"} {
		t.Run(offer, func(t *testing.T) {
			t.Parallel()
			srv := hdStartServer(t)
			hdEchoHandler(srv.Srv)
			p := ptDial(t, srv.URL, offer, true)
			require.Equal(t, offer, p.Conn.SubProtocol())
			ss := srv.NextOpen(t)

			payload := []byte{0, 1, 2, 0xff, 'x'}
			md := map[string]string{"ignored": "yes"}
			p.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindPing, 42, "ignored.Type", payload, 99, md))
			e := p.Next(t)
			assert.Equal(t, wire.KindPong, e.Kind)
			assert.EqualValues(t, 42, e.ID)
			assert.Equal(t, payload, e.Payload)
			assert.Empty(t, e.Type, "a PONG carries no type")
			assert.Empty(t, e.Metadata, "a PONG carries no metadata")

			p.Send(t, hdEnv(wire.KindPing, 0, "", ""))
			e = p.Next(t)
			assert.Equal(t, wire.KindPong, e.Kind)
			assert.Zero(t, e.ID)
			assert.Empty(t, e.Payload)

			p.Send(t, hdEnv(wire.KindPong, 7, "", "x"))
			p.NoEnvelope(t, 200*time.Millisecond)
			ptEcho(t, p, 1)
			assert.Nil(t, ss.Err())
		})
	}
}

// A page cannot answer WebSocket pings itself (the browser does) nor see
// them: a peer that ignores them and sends a PING envelope every interval is
// alive for the server's receive timeout, and when it falls silent the
// server closes it as lost. The peer, for its part, hears a PONG for every
// PING within its own timeout.
func TestProtocolPingEnvelopeKeepsSilentPeerAlive(t *testing.T) {
	t.Parallel()
	const (
		interval = 50 * time.Millisecond
		timeout  = 600 * time.Millisecond
	)
	srv := hdStartServer(t, netmsg.WithHeartbeat(interval, timeout))
	hdEchoHandler(srv.Srv)
	p := ptDial(t, srv.URL, "netmsg.v2.json, netmsg.v1.json", false)
	ss := srv.NextOpen(t)

	// Three receive timeouts of PINGs and nothing else.
	end := time.Now().Add(3 * timeout)
	var id uint64
	for time.Now().Before(end) {
		id++
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixNano()))
		p.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindPing, id, "", b[:], 0, nil))
		e := p.Next(t)
		require.Equal(t, wire.KindPong, e.Kind)
		require.Equal(t, id, e.ID)
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(e.Payload)))
		require.Less(t, time.Since(sent), timeout, "a PONG came later than the receive timeout")
		time.Sleep(interval)
	}
	assert.Nil(t, ss.Err(), "the session of a peer sending PING envelopes was closed")
	assert.Greater(t, p.pings.Load(), int64(0), "the server sent WebSocket pings too")
	t.Logf("%d PINGs answered; %d WebSocket pings ignored", id, p.pings.Load())

	// Silence: the server's receive timeout closes the session.
	silent := time.Now()
	c := srv.CloseOf(t, ss)
	assert.Equal(t, netmsg.CloseConnectionLost, c.Err.Reason, "%v", c.Err)
	took := c.At.Sub(silent)
	assert.GreaterOrEqual(t, took, timeout-interval, "closed before the receive timeout")
	t.Logf("closed %v after the last PING (receive timeout %v)", took, timeout)
}

// A REQUEST with id 0 breaks the protocol (its answer could name no
// request): the session is closed with 1002 and no handler runs.
func TestProtocolRequestIDZero(t *testing.T) {
	t.Parallel()
	b := hdNewBad(t)
	called := make(chan struct{}, 1)
	type ptZero struct {
		netmsg.Returns[hdEchoReply]
		N int
	}
	netmsg.AddRequestHandler(b.srv.Srv, func(ctx context.Context, s *netmsg.Session, r ptZero) (hdEchoReply, error) {
		called <- struct{}{}
		return hdEchoReply{}, nil
	})
	p, ss := b.gws(t)
	p.Send(t, hdEnv(wire.KindRequest, 0, netmsg.TypeName(ptZero{}), `{"N":1}`))
	assert.EqualValues(t, 1002, p.NextCloseCode(t), "close code the peer is told")
	ce := b.expectClosed(t, ss, netmsg.CloseProtocolError, 1002)
	assert.Equal(t, "request id 0", ce.Text)
	assert.False(t, ce.Remote)
	select {
	case <-called:
		t.Fatal("the handler ran for a request with id 0")
	default:
	}
}

// A MESSAGE's id is ignored: it is handled as any message, and nothing is
// sent back.
func TestProtocolMessageIDIgnored(t *testing.T) {
	t.Parallel()
	srv := hdStartServer(t)
	hdEchoHandler(srv.Srv)
	got := make(chan string, 1)
	netmsg.AddMessageHandler(srv.Srv, func(ctx context.Context, s *netmsg.Session, m hdText) { got <- m.S })
	p := ptDial(t, srv.URL, "netmsg.v1.json", true)
	srv.NextOpen(t)
	p.Send(t, hdEnv(wire.KindMessage, 77, netmsg.TypeName(hdText{}), `{"S":"hi"}`))
	assert.Equal(t, "hi", itRecv(t, got, "the message"))
	p.NoEnvelope(t, 100*time.Millisecond)
	ptEcho(t, p, 77) // the id is free for a request
}

// A close frame without a status code (RFC 6455 §5.5.1 allows an empty
// body) is a normal close by the peer, on both ends.
func TestProtocolCloseWithoutStatusCode(t *testing.T) {
	t.Parallel()
	t.Run("client closes", func(t *testing.T) {
		t.Parallel()
		srv := hdStartServer(t)
		p := hdDialTCPUpgraded(t, srv.Addr, nil)
		ss := srv.NextOpen(t)
		p.WriteRaw(t, hdFrame(0x88, nil))
		c := srv.CloseOf(t, ss)
		assert.Equal(t, netmsg.ClosePeerNormal, c.Err.Reason, "%v", c.Err)
		assert.EqualValues(t, 1005, c.Err.Code)
		assert.True(t, c.Err.Remote)
		assert.Nil(t, c.Err.Err)
		// The server answers with a close frame, also without a status code.
		b0, payload, err := p.ReadFrame()
		require.NoError(t, err)
		assert.Equal(t, byte(0x88), b0)
		assert.Empty(t, payload)
	})
	t.Run("server closes", func(t *testing.T) {
		t.Parallel()
		up := gws.NewUpgrader(ptServerEvents{}, &gws.ServerOption{SubProtocols: []string{"netmsg.v1.json"}})
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r)
			if err != nil {
				return
			}
			c.ReadLoop() // closes without a status code on the first message

		}))
		defer hs.Close()
		url := "ws://" + hs.Listener.Addr().String() + "/"
		lost := make(chan *netmsg.CloseError, 1)
		cli := netmsg.NewClient(url, netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			select {
			case lost <- ce:
			default:
			}
		}))
		t.Cleanup(func() { _ = cli.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), hdWait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		require.NoError(t, cli.Send(ctx, hdText{S: "close now"}))
		ce := itRecv(t, lost, "the client's disconnect")
		assert.Equal(t, netmsg.ClosePeerNormal, ce.Reason, "%v", ce)
		assert.EqualValues(t, 1005, ce.Code)
		assert.True(t, ce.Remote)
	})
}

// ptServerEvents answers the first message with a close frame without a
// status code.
type ptServerEvents struct{ gws.BuiltinEventHandler }

func (ptServerEvents) OnMessage(c *gws.Conn, m *gws.Message) {
	_ = m.Close()
	_ = c.WriteMessage(gws.OpcodeCloseConnection, nil)
}

// A handler that returns its context's error answers with the context's
// code: 4 "deadline exceeded" when the caller's deadline (timeout_ms) has
// passed, also wrapped; 1 "canceled" for context.Canceled. Other errors stay
// "internal error".
func TestProtocolHandlerReturnsContextError(t *testing.T) {
	t.Parallel()
	srv := hdStartServer(t)
	type ptCtxErr struct {
		netmsg.Returns[hdEchoReply]
		Mode string
	}
	netmsg.AddRequestHandler(srv.Srv, func(ctx context.Context, s *netmsg.Session, r ptCtxErr) (hdEchoReply, error) {
		switch r.Mode {
		case "deadline":
			<-ctx.Done()
			return hdEchoReply{}, ctx.Err()
		case "wrapped":
			<-ctx.Done()
			return hdEchoReply{}, fmt.Errorf("db query: %w", ctx.Err())
		case "canceled":
			inner, cancel := context.WithCancel(ctx)
			cancel()
			return hdEchoReply{}, inner.Err()
		}
		return hdEchoReply{}, errors.New("secret detail")
	})
	p := ptDial(t, srv.URL, "netmsg.v1.json", true)
	srv.NextOpen(t)
	name := netmsg.TypeName(ptCtxErr{})
	cases := []struct {
		mode    string
		timeout uint64
		code    netmsg.Code
		msg     string
	}{
		{"deadline", 50, netmsg.CodeDeadlineExceeded, "deadline exceeded"},
		{"wrapped", 50, netmsg.CodeDeadlineExceeded, "deadline exceeded"},
		{"canceled", 0, netmsg.CodeCanceled, "canceled"},
		{"other", 0, netmsg.CodeInternal, "internal error"},
	}
	for i, tc := range cases {
		id := uint64(i + 1)
		p.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, id, name, []byte(`{"Mode":"`+tc.mode+`"}`), tc.timeout, nil))
		e := p.Next(t)
		require.Equal(t, wire.KindError, e.Kind, tc.mode)
		assert.Equal(t, id, e.ID, tc.mode)
		assert.EqualValues(t, tc.code, e.ErrCode, tc.mode)
		assert.Equal(t, tc.msg, string(e.ErrMsg), tc.mode)
	}
}

// A CANCELled request gets no answer, not even the error its handler
// returns when its context ends; a duplicate id in flight gets ERROR 6 at once and the
// original's answer later, under the same id.
func TestProtocolCancelAndDuplicateID(t *testing.T) {
	t.Parallel()
	b := hdNewBad(t)
	p, _ := b.gws(t)
	hold := netmsg.TypeName(hdHold{})

	p.Send(t, hdEnv(wire.KindRequest, 5, hold, `{"Key":"a"}`))
	p.Send(t, hdEnv(wire.KindRequest, 5, hold, `{"Key":"b"}`))
	e := p.NextEnvelope(t)
	assert.Equal(t, wire.KindError, e.Kind)
	assert.EqualValues(t, 5, e.ID)
	assert.EqualValues(t, netmsg.CodeAlreadyExists, e.ErrCode)
	b.hold.Release()
	e = p.NextEnvelope(t)
	assert.Equal(t, wire.KindResponse, e.Kind)
	assert.EqualValues(t, 5, e.ID)
	assert.JSONEq(t, `{"Text":"released a"}`, string(e.Payload), "the original's answer")

	// A request cancelled while its handler runs is not answered.
	b2 := hdNewBad(t)
	p2, _ := b2.gws(t)
	p2.Send(t, hdEnv(wire.KindRequest, 9, hold, `{"Key":"c"}`))
	assert.Equal(t, "c", itRecv(t, b2.hold.started, "the handler to start"))
	p2.Send(t, hdEnv(wire.KindCancel, 9, "", "")) // the handler returns ctx.Err()
	select {
	case m := <-p2.Msgs:
		var env wire.Envelope
		_ = wire.Decode(m, &env)
		t.Fatalf("the server answered a cancelled request: %+v", env)
	case <-time.After(300 * time.Millisecond):
	}
}
