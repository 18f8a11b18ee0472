package integration_test

// Tests of the rules docs/PROTOCOL.md writes down, seen from a peer that
// speaks the protocol by hand (as a client in another language would).
// Top-level names start with "pt".

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ptDial connects a raw gws peer offering the subprotocol line offer;
// answerPings false stands for a page, which never sees WebSocket pings.
func ptDial(t testing.TB, url, offer string, answerPings bool) *nettest.GwsPeer {
	t.Helper()
	return nettest.DialGws(t, url, nettest.GwsConfig{Offer: offer, NoPong: !answerPings})
}

// ptNoEnvelope asserts that nothing arrives for d.
func ptNoEnvelope(t testing.TB, p *nettest.GwsPeer, d time.Duration) {
	t.Helper()
	nettest.None(t, p.Msgs, d, "an envelope")
}

// ptEcho checks that the session still serves requests.
func ptEcho(t testing.TB, p *nettest.GwsPeer, id uint64) {
	t.Helper()
	p.Send(t, nettest.Envelope(wire.KindRequest, id, netmsg.TypeName(hdEcho{}), `{"Text":"alive"}`))
	e := p.NextEnvelope(t)
	require.Equal(t, wire.KindResponse, e.Kind, "answer to the echo request: %+v", e)
	assert.Equal(t, id, e.ID)
	assert.JSONEq(t, `{"Text":"alive"}`, e.Payload)
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
			hdEchoHandler(srv.Server)
			p := ptDial(t, srv.URL, offer, true)
			require.Equal(t, offer, p.Conn.SubProtocol())
			ss := srv.NextOpen(t)

			payload := []byte{0, 1, 2, 0xff, 'x'}
			md := map[string]string{"ignored": "yes"}
			p.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindPing, 42, "ignored.Type", payload, 99, md))
			e := p.NextEnvelope(t)
			assert.Equal(t, wire.KindPong, e.Kind)
			assert.EqualValues(t, 42, e.ID)
			assert.Equal(t, string(payload), e.Payload)
			assert.Empty(t, e.Type, "a PONG carries no type")
			assert.Empty(t, e.Metadata, "a PONG carries no metadata")

			p.Send(t, nettest.Envelope(wire.KindPing, 0, "", ""))
			e = p.NextEnvelope(t)
			assert.Equal(t, wire.KindPong, e.Kind)
			assert.Zero(t, e.ID)
			assert.Empty(t, e.Payload)

			p.Send(t, nettest.Envelope(wire.KindPong, 7, "", "x"))
			ptNoEnvelope(t, p, 200*time.Millisecond)
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
	hdEchoHandler(srv.Server)
	p := ptDial(t, srv.URL, "netmsg.v2.json, netmsg.v1.json", false)
	ss := srv.NextOpen(t)

	// Three receive timeouts of PINGs and nothing else.
	end := time.Now().Add(3 * timeout)
	var id uint64
	var last time.Time // when the last PING was sent: silence begins there
	for time.Now().Before(end) {
		id++
		last = time.Now()
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixNano()))
		p.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindPing, id, "", b[:], 0, nil))
		e := p.NextEnvelope(t)
		require.Equal(t, wire.KindPong, e.Kind)
		require.Equal(t, id, e.ID)
		sent := time.Unix(0, int64(binary.BigEndian.Uint64([]byte(e.Payload))))
		require.Less(t, time.Since(sent), timeout, "a PONG came later than the receive timeout")
		time.Sleep(interval)
	}
	assert.Nil(t, ss.Err(), "the session of a peer sending PING envelopes was closed")
	assert.NotEmpty(t, p.Pings, "the server sent WebSocket pings too")
	t.Logf("%d PINGs answered; %d WebSocket pings ignored", id, len(p.Pings))

	// Silence: the server's receive timeout closes the session.
	silent := last
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
	netmsg.AddRequestHandler(b.srv.Server, func(ctx context.Context, s *netmsg.Session, r ptZero) (hdEchoReply, error) {
		called <- struct{}{}
		return hdEchoReply{}, nil
	})
	p, ss := b.gws(t)
	p.Send(t, nettest.Envelope(wire.KindRequest, 0, netmsg.TypeName(ptZero{}), `{"N":1}`))
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
	hdEchoHandler(srv.Server)
	got := make(chan string, 1)
	netmsg.AddMessageHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, m hdText) { got <- m.S })
	p := ptDial(t, srv.URL, "netmsg.v1.json", true)
	srv.NextOpen(t)
	p.Send(t, nettest.Envelope(wire.KindMessage, 77, netmsg.TypeName(hdText{}), `{"S":"hi"}`))
	assert.Equal(t, "hi", nettest.Recv(t, got, "the message"))
	ptNoEnvelope(t, p, 100*time.Millisecond)
	ptEcho(t, p, 77) // the id is free for a request
}

// A close frame without a status code (RFC 6455 §5.5.1 allows an empty
// body) is a normal close by the peer, on both ends.
func TestProtocolCloseWithoutStatusCode(t *testing.T) {
	t.Parallel()
	t.Run("client closes", func(t *testing.T) {
		t.Parallel()
		srv := hdStartServer(t)
		p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
		ss := srv.NextOpen(t)
		p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpClose, nil))
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
		rs := nettest.StartGwsServer(t, nettest.GwsConfig{OnMessage: func(c *gws.Conn, _ []byte) {
			_ = c.WriteMessage(gws.OpcodeCloseConnection, nil) // on the first message
		}})
		url := rs.URL
		lost := make(chan *netmsg.CloseError, 1)
		cli := netmsg.NewClient(url, netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			select {
			case lost <- ce:
			default:
			}
		}))
		t.Cleanup(func() { _ = cli.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		require.NoError(t, cli.Send(ctx, hdText{S: "close now"}))
		ce := nettest.Recv(t, lost, "the client's disconnect")
		assert.Equal(t, netmsg.ClosePeerNormal, ce.Reason, "%v", ce)
		assert.EqualValues(t, 1005, ce.Code)
		assert.True(t, ce.Remote)
	})
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
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, r ptCtxErr) (hdEchoReply, error) {
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
		e := p.NextEnvelope(t)
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

	p.Send(t, nettest.Envelope(wire.KindRequest, 5, hold, `{"Key":"a"}`))
	p.Send(t, nettest.Envelope(wire.KindRequest, 5, hold, `{"Key":"b"}`))
	e := p.NextEnvelope(t)
	assert.Equal(t, wire.KindError, e.Kind)
	assert.EqualValues(t, 5, e.ID)
	assert.EqualValues(t, netmsg.CodeAlreadyExists, e.ErrCode)
	b.hold.Release()
	e = p.NextEnvelope(t)
	assert.Equal(t, wire.KindResponse, e.Kind)
	assert.EqualValues(t, 5, e.ID)
	assert.JSONEq(t, `{"Text":"released a"}`, e.Payload, "the original's answer")

	// A request cancelled while its handler runs is not answered.
	b2 := hdNewBad(t)
	p2, _ := b2.gws(t)
	p2.Send(t, nettest.Envelope(wire.KindRequest, 9, hold, `{"Key":"c"}`))
	assert.Equal(t, "c", nettest.Recv(t, b2.hold.started, "the handler to start"))
	p2.Send(t, nettest.Envelope(wire.KindCancel, 9, "", "")) // the handler returns ctx.Err()
	ptNoEnvelope(t, p2, 300*time.Millisecond)
}

// timeout_ms 0 gives the handler no deadline; otherwise its deadline is
// timeout_ms after the request arrived.
func TestProtocolTimeoutMs(t *testing.T) {
	t.Parallel()
	srv := hdStartServer(t)
	type ptDeadline struct {
		netmsg.Returns[hdEchoReply]
	}
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, r ptDeadline) (hdEchoReply, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return hdEchoReply{Text: "none"}, nil
		}
		return hdEchoReply{Text: time.Until(dl).Round(time.Second).String()}, nil
	})
	p := ptDial(t, srv.URL, "netmsg.v1.json", true)
	srv.NextOpen(t)
	name := netmsg.TypeName(ptDeadline{})
	for i, tc := range []struct {
		timeoutMs uint64
		want      string
	}{{0, "none"}, {30_000, "30s"}} {
		id := uint64(i + 1)
		p.Send(t, wire.AppendHeaderAndPayload(nil, wire.KindRequest, id, name, []byte(`{}`), tc.timeoutMs, nil))
		e := p.NextEnvelope(t)
		require.Equal(t, wire.KindResponse, e.Kind)
		assert.JSONEq(t, `{"Text":"`+tc.want+`"}`, e.Payload, "timeout_ms %d", tc.timeoutMs)
	}
}

// A peer that floods PINGs and never reads the PONGs runs into the outbound
// queue's bound like any peer that does not read: it is closed as a slow
// consumer, and the PONGs it made the server queue stay within the bound.
func TestProtocolPingFloodWithoutReading(t *testing.T) {
	t.Parallel()
	const queued = 256 << 10
	srv := hdStartServer(t, netmsg.WithMaxQueuedBytes(queued), netmsg.WithWriteTimeout(2*time.Second))
	hdEchoHandler(srv.Server)
	by := hdNewBystander(t, srv)
	p := nettest.DialGws(t, srv.URL, nettest.GwsConfig{Offer: "netmsg.v2.json", NoRead: true})
	require.Equal(t, "netmsg.v2.json", p.Conn.SubProtocol())
	ss := srv.NextOpen(t)

	cost := nettest.Measure(t, "a PING flood that never reads")
	ping := wire.AppendHeaderAndPayload(nil, wire.KindPing, 1, "", make([]byte, 4<<10), 0, nil)
	sent := 0
	for sent < 256<<20 && ss.Err() == nil {
		if p.Conn.WriteMessage(gws.OpcodeBinary, ping) != nil {
			break
		}
		sent += len(ping)
	}
	c := srv.CloseOf(t, ss)
	used := cost.Stop()
	t.Logf("sent %s of PINGs before the close", nettest.MiB(uint64(sent)))
	assert.Equal(t, netmsg.CloseSlowConsumer, c.Err.Reason, "%v", c.Err)
	// Unbounded, the PONGs of the 256 MiB flood would all be held.
	assert.Less(t, used.HeapPeak, uint64(32<<20), "heap used during the flood")
	by.AssertFine(t)
}

// How a peer's close frame is answered, and what the session reports: the
// tables of docs/PROTOCOL.md §6.
func TestProtocolCloseAnswers(t *testing.T) {
	t.Parallel()
	closeBody := func(code uint16, text string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), text...)
	}
	cases := []struct {
		name   string
		body   []byte
		answer []byte // the close frame's body the server answers with
		reason netmsg.CloseReason
	}{
		{"1000", closeBody(1000, "bye"), closeBody(1000, ""), netmsg.ClosePeerNormal},
		{"1001 from a client", closeBody(1001, ""), closeBody(1000, ""), netmsg.ClosePeerNormal},
		{"1008", closeBody(1008, "no"), closeBody(1000, ""), netmsg.ClosePolicyViolation},
		{"1011", closeBody(1011, ""), closeBody(1000, ""), netmsg.CloseInternalError},
		{"4001 application", closeBody(4001, "app"), closeBody(4001, ""), netmsg.ClosePeerNormal},
		{"3000", closeBody(3000, ""), closeBody(3000, ""), netmsg.CloseProtocolError},
		// Codes RFC 6455 reserves for "no code" and "no close frame" are
		// refused in the answer, and read as what they stand for.
		{"1005 in a frame", closeBody(1005, ""), closeBody(1002, ""), netmsg.ClosePeerNormal},
		{"1006 in a frame", closeBody(1006, ""), closeBody(1002, ""), netmsg.CloseNetworkError},
		{"999", closeBody(999, ""), closeBody(1002, ""), netmsg.CloseProtocolError},
		{"2000", closeBody(2000, ""), closeBody(1002, ""), netmsg.CloseProtocolError},
		{"one byte", []byte{3}, closeBody(1002, ""), netmsg.CloseProtocolError},
		{"text not UTF-8", closeBody(1000, "\xff\xfe"), closeBody(1000, ""), netmsg.ClosePeerNormal}, // not checked
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := hdStartServer(t)
			p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
			ss := srv.NextOpen(t)
			p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpClose, tc.body))
			b0, answer, err := p.ReadFrame()
			require.NoError(t, err)
			assert.Equal(t, byte(nettest.Fin|nettest.OpClose), b0)
			assert.Equal(t, tc.answer, answer, "the close frame the server answered with")
			c := srv.CloseOf(t, ss)
			assert.Equal(t, tc.reason.String(), c.Err.Reason.String(), "%v", c.Err)
			assert.True(t, c.Err.Remote)
		})
	}
}
