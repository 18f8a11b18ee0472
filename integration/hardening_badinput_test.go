package integration_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hdBad is a server with a well-behaved bystander, ready for a misbehaving
// peer. Each bad-input case gets its own.
type hdBad struct {
	srv       *hdServer
	by        *hdBystander
	hold      *hdHolder
	errs      chan error
	unhandled chan string
}

func hdNewBad(t testing.TB, opts ...netmsg.ServerOption) *hdBad {
	t.Helper()
	b := &hdBad{errs: make(chan error, 64), unhandled: make(chan string, 64)}
	opts = append([]netmsg.ServerOption{
		netmsg.WithOnError(func(_ *netmsg.Session, err error) { b.errs <- err }),
		netmsg.WithOnUnhandled(func(_ *netmsg.Session, typ string) { b.unhandled <- typ }),
	}, opts...)
	b.srv = hdStartServer(t, opts...)
	hdEchoHandler(b.srv.Server)
	netmsg.AddMessageHandler(b.srv.Server, func(context.Context, *netmsg.Session, hdText) {})
	b.hold = hdAddHold(b.srv.Server)
	t.Cleanup(b.hold.Release)
	b.by = hdNewBystander(t, b.srv)
	return b
}

// gws connects a raw gws peer and returns it with its server session.
func (b *hdBad) gws(t testing.TB) (*nettest.GwsPeer, *netmsg.Session) {
	t.Helper()
	p := nettest.DialGws(t, b.srv.URL, nettest.GwsConfig{})
	return p, b.srv.NextOpen(t)
}

// tcp connects a hand-framing TCP peer and returns it with its server session.
func (b *hdBad) tcp(t testing.TB, hdr http.Header) (*nettest.WSPeer, *netmsg.Session) {
	t.Helper()
	p := nettest.DialWSUpgraded(t, b.srv.Addr, nettest.WSDial{Header: hdr})
	return p, b.srv.NextOpen(t)
}

// expectClosed checks how the bad session ended, that the bystander is fine
// and that the server holds only the bystander's session.
func (b *hdBad) expectClosed(t testing.TB, ss *netmsg.Session, reason netmsg.CloseReason, code uint16) *netmsg.CloseError {
	t.Helper()
	ce := b.srv.CloseOf(t, ss).Err
	assert.Equal(t, reason.String(), ce.Reason.String(), "close reason of %v", ce)
	if code != 0 {
		assert.Equal(t, code, ce.Code, "close code of %v", ce)
	}
	assert.ErrorIs(t, ce, netmsg.ErrClosed)
	b.expectHealthy(t, 1)
	return ce
}

// expectHealthy checks that the bystander is fine and that the server holds
// the given number of sessions (1: only the bystander's).
func (b *hdBad) expectHealthy(t testing.TB, sessions int) {
	t.Helper()
	b.by.AssertFine(t)
	assert.Eventually(t, func() bool { return b.srv.Server.SessionCount() == sessions }, nettest.Wait, 5*time.Millisecond,
		"sessions: %d, want %d", b.srv.Server.SessionCount(), sessions)
}

// hdExpectAlive checks that the bad peer's session still answers a request.
func hdExpectAlive(t testing.TB, p *nettest.GwsPeer, ss *netmsg.Session) {
	t.Helper()
	p.Send(t, nettest.Envelope(wire.KindRequest, 900, netmsg.TypeName(hdEcho{}), `{"Text":"ok"}`))
	e := p.NextEnvelope(t)
	assert.Equal(t, wire.KindResponse, e.Kind)
	assert.EqualValues(t, 900, e.ID)
	assert.JSONEq(t, `{"Text":"ok"}`, string(e.Payload))
	assert.Nil(t, ss.Err(), "the session closed")
}

func hdExpectError(t testing.TB, e *nettest.Env, id uint64, code netmsg.Code) {
	t.Helper()
	assert.Equal(t, wire.KindError, e.Kind, "envelope kind")
	assert.Equal(t, id, e.ID, "answered id")
	assert.Equal(t, code.String(), netmsg.Code(e.ErrCode).String(), "error code (message %q)", e.ErrMsg)
}

// TestHardeningBadInput sends each kind of bad input from a raw peer and
// checks the outcome documented in docs/RELIABILITY.md: a typed error answer,
// a drop that is counted or reported, or a close with CloseProtocolError;
// never a crash, never a leak (goleak runs after the package), and never an
// effect on another session.
func TestHardeningBadInput(t *testing.T) {
	t.Parallel()
	echo := netmsg.TypeName(hdEcho{})
	text := netmsg.TypeName(hdText{})

	protocolClose := func(send func(t *testing.T, p *nettest.GwsPeer)) func(t *testing.T) {
		return func(t *testing.T) {
			t.Parallel()
			b := hdNewBad(t)
			p, ss := b.gws(t)
			send(t, p)
			b.expectClosed(t, ss, netmsg.CloseProtocolError, 1002)
			assert.EqualValues(t, 1002, p.NextCloseCode(t), "close code the peer is told")
		}
	}

	t.Run("garbage bytes in a binary frame", protocolClose(func(t *testing.T, p *nettest.GwsPeer) {
		p.Send(t, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x13, 0x37})
	}))

	t.Run("truncated envelope", protocolClose(func(t *testing.T, p *nettest.GwsPeer) {
		env := nettest.Envelope(wire.KindRequest, 1, echo, `{"Text":"cut short"}`)
		p.Send(t, env[:len(env)-5])
	}))

	t.Run("unknown kind", protocolClose(func(t *testing.T, p *nettest.GwsPeer) {
		p.Send(t, []byte{0x08, 0x63, 0x10, 0x01}) // kind 99, id 1
	}))

	t.Run("empty binary frame", protocolClose(func(t *testing.T, p *nettest.GwsPeer) {
		p.Send(t, nil) // no kind at all
	}))

	t.Run("text frame", protocolClose(func(t *testing.T, p *nettest.GwsPeer) {
		require.NoError(t, p.Conn.WriteString(`{"kind":"REQUEST"}`))
	}))

	t.Run("garbage bytes instead of a frame", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.tcp(t, nil)
		p.WriteRaw(t, []byte("hello, this is not a WebSocket frame\r\n"))
		b.expectClosed(t, ss, netmsg.CloseProtocolError, 1002)
		assert.EqualValues(t, 1002, p.ReadCloseCode(t))
		p.AssertClosedByServer(t)
	})

	t.Run("truncated frame then end of stream", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.tcp(t, nil)
		env := nettest.Envelope(wire.KindRequest, 1, echo, `{"Text":"never complete"}`)
		f := nettest.Frame(0x82, env)
		p.WriteRaw(t, f[:len(f)-10])
		require.NoError(t, p.Conn.(interface{ CloseWrite() error }).CloseWrite())
		ce := b.expectClosed(t, ss, netmsg.CloseNetworkError, 0)
		assert.True(t, ce.Remote, "a connection that ends mid-frame is the peer's doing")
	})

	t.Run("RESPONSE for an id never asked", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		before := b.srv.Server.Stats().UnknownResponses
		p.Send(t, nettest.Envelope(wire.KindResponse, 4242, "", `{"Text":"unasked"}`))
		p.Send(t, wire.AppendError(nil, 4243, "", uint32(netmsg.CodeInternal), "unasked"))
		hdExpectAlive(t, p, ss)
		assert.Eventually(t, func() bool { return b.srv.Server.Stats().UnknownResponses == before+2 }, nettest.Wait, time.Millisecond,
			"UnknownResponses: %d, want %d", b.srv.Server.Stats().UnknownResponses, before+2)
		b.expectHealthy(t, 2)
	})

	t.Run("duplicate request id", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		p.Send(t, nettest.Envelope(wire.KindRequest, 7, netmsg.TypeName(hdHold{}), `{"Key":"first"}`))
		select {
		case <-b.hold.started:
		case <-time.After(nettest.Wait):
			t.Fatal("the first request's handler did not start")
		}
		p.Send(t, nettest.Envelope(wire.KindRequest, 7, echo, `{"Text":"second"}`))
		e := p.NextEnvelope(t)
		hdExpectError(t, e, 7, netmsg.CodeAlreadyExists)

		b.hold.Release()
		e = p.NextEnvelope(t)
		assert.Equal(t, wire.KindResponse, e.Kind)
		assert.EqualValues(t, 7, e.ID)
		assert.JSONEq(t, `{"Text":"released first"}`, string(e.Payload), "the first request is answered normally")
		hdExpectAlive(t, p, ss)
		b.expectHealthy(t, 2)
	})

	t.Run("request payload that does not decode for its type", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		p.Send(t, nettest.Envelope(wire.KindRequest, 3, echo, `{"Text":7}`))
		hdExpectError(t, p.NextEnvelope(t), 3, netmsg.CodeInvalidArgument)
		p.Send(t, nettest.Envelope(wire.KindRequest, 4, echo, `not json at all`))
		hdExpectError(t, p.NextEnvelope(t), 4, netmsg.CodeInvalidArgument)
		hdExpectAlive(t, p, ss)
		b.expectHealthy(t, 2)
	})

	t.Run("message payload that does not decode for its type", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		p.Send(t, nettest.Envelope(wire.KindMessage, 0, text, `{"S":["not","a","string"]}`))
		select {
		case err := <-b.errs:
			assert.Contains(t, err.Error(), text, "OnError names the type")
		case <-time.After(nettest.Wait):
			t.Fatal("OnError was not called for a message that does not decode")
		}
		hdExpectAlive(t, p, ss)
		b.expectHealthy(t, 2)
	})

	t.Run("request for an unknown type name", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		p.Send(t, nettest.Envelope(wire.KindRequest, 5, "no.such.Type", `{}`))
		e := p.NextEnvelope(t)
		hdExpectError(t, e, 5, netmsg.CodeUnimplemented)
		assert.Contains(t, string(e.ErrMsg), "no.such.Type")
		hdExpectAlive(t, p, ss)
		b.expectHealthy(t, 2)
	})

	t.Run("message of an unknown type name", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		p.Send(t, nettest.Envelope(wire.KindMessage, 0, "no.such.Type", `{}`))
		select {
		case typ := <-b.unhandled:
			assert.Equal(t, "no.such.Type", typ)
		case <-time.After(nettest.Wait):
			t.Fatal("OnUnhandled was not called")
		}
		hdExpectAlive(t, p, ss)
		b.expectHealthy(t, 2)
	})

	t.Run("CANCEL for an unknown id", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.gws(t)
		p.Send(t, nettest.Envelope(wire.KindCancel, 31337, "", ""))
		p.Send(t, nettest.Envelope(wire.KindCancel, 0, "", ""))
		select {
		case m := <-p.Msgs:
			t.Fatalf("the server answered a CANCEL: %x", m)
		case <-time.After(200 * time.Millisecond):
		}
		hdExpectAlive(t, p, ss)
		b.expectHealthy(t, 2)
	})

	// Found by FuzzSessionInbound: gws fails these reads for a protocol
	// reason but hands netmsg only the inner error, which it takes for a
	// network failure.
	t.Run("reserved opcode", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t)
		p, ss := b.tcp(t, nil)
		p.WriteRaw(t, nettest.Frame(0x83, nettest.Envelope(wire.KindMessage, 0, text, `{"S":"x"}`)))
		assert.EqualValues(t, 1002, p.ReadCloseCode(t), "close code the peer is told")
		b.expectClosed(t, ss, netmsg.CloseProtocolError, 1002)
	})

	t.Run("compressed frame that does not inflate", func(t *testing.T) {
		t.Parallel()
		b := hdNewBad(t, netmsg.WithCompression(true))
		hdr := http.Header{}
		hdr.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover; server_no_context_takeover")
		p, ss := b.tcp(t, hdr)
		require.Contains(t, p.Resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
		p.WriteRaw(t, nettest.Frame(0xc2, []byte{0xff, 0xfe, 0xfd, 0xfc, 0x00, 0x01}))
		code := p.ReadCloseCode(t)
		assert.Contains(t, []uint16{1002, 1007}, code, "close code the peer is told (1011 says the server failed)")
		b.expectClosed(t, ss, netmsg.CloseProtocolError, 0)
	})
}

// TestHardeningDeclaredLengthTopBit sends a frame header whose 64-bit length
// has its most significant bit set, which RFC 6455 forbids, to a server and
// to a client. gws converts the length to a negative int, which passes its
// size check and then panics on the read loop's goroutine, where nothing
// recovers it: the whole process dies. Each scenario runs in a child process
// so that a crash fails this test and not the whole package.
func TestHardeningDeclaredLengthTopBit(t *testing.T) {
	t.Parallel()
	t.Run("to a server", func(t *testing.T) { hdInChild(t, hdTopBitToServer) })
	t.Run("to a client", func(t *testing.T) { hdInChild(t, hdTopBitToClient) })
}

// hdInChild runs scenario in a child process (the test binary, running only
// this test) and fails with the child's panic if it dies.
func hdInChild(t *testing.T, scenario func(t *testing.T)) {
	if os.Getenv("HD_CHILD") == t.Name() {
		scenario(t)
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(t.Name()), "/", "$/^") + "$"
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+pattern, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HD_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		s := string(out)
		if i := strings.Index(s, "panic:"); i >= 0 {
			s = s[i:]
		}
		if len(s) > 3000 {
			s = s[:3000] + "\n..."
		}
		t.Fatalf("the process did not survive a frame declaring 2^63 bytes: %v\n%s", err, s)
	}
	require.Contains(t, string(out), "--- PASS: "+t.Name(), "the child ran the scenario")
}

func hdTopBitToServer(t *testing.T) {
	b := hdNewBad(t)
	p, ss := b.tcp(t, nil)
	p.WriteRaw(t, nettest.FrameHeader(0x82, 1<<63)) // no payload
	code := p.ReadCloseCode(t)
	assert.Contains(t, []uint16{1002, 1009}, code, "close code the peer is told")
	ce := b.srv.CloseOf(t, ss).Err
	assert.Contains(t, []string{netmsg.CloseProtocolError.String(), netmsg.CloseMessageTooLarge.String()}, ce.Reason.String())
	b.expectHealthy(t, 1)
}

func hdTopBitToClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n"+
			"Sec-WebSocket-Protocol: netmsg.v1.json\r\n\r\n")
		_, _ = c.Write([]byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}) // server frames are not masked
		_ = c.SetReadDeadline(time.Now().Add(nettest.Wait))
		_, _ = io.Copy(io.Discard, br) // until the client hangs up
	}()
	disc := make(chan *netmsg.CloseError, 1)
	cli := netmsg.NewClient("ws://"+ln.Addr().String()+"/", netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) { disc <- ce }))
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The frame follows the handshake at once, so the session may end before
	// Connect has returned: then Connect fails with the same *CloseError.
	if err := cli.Connect(ctx); err != nil {
		var ce *netmsg.CloseError
		require.ErrorAs(t, err, &ce, "Connect")
		assert.Contains(t, []string{netmsg.CloseProtocolError.String(), netmsg.CloseMessageTooLarge.String()}, ce.Reason.String())
	}
	select {
	case ce := <-disc:
		assert.Contains(t, []string{netmsg.CloseProtocolError.String(), netmsg.CloseMessageTooLarge.String()}, ce.Reason.String())
	case <-time.After(nettest.Wait):
		t.Fatal("the client did not close")
	}
	<-served
}
