package transport_test

// Pins of the gws v1.9.1 behaviours the adapter relies on. Each test drives
// a real connection, upgraded by the adapter, from a hand-framed peer
// (nettest.WSPeer), and states the behaviour it pins in its comment. When a
// gws upgrade changes one of them, the test that fails names the adapter
// code to revisit.

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/transport"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pinEvents records what a connection reads.
type pinEvents struct {
	onMsg  func(m *transport.Message) // default: copy, then Close
	msgs   chan []byte
	pings  chan []byte
	closed chan error
}

func newPinEvents() *pinEvents {
	return &pinEvents{msgs: make(chan []byte, 64), pings: make(chan []byte, 64), closed: make(chan error, 1)}
}

func (e *pinEvents) OnMessage(m *transport.Message) {
	if e.onMsg != nil {
		e.onMsg(m)
		return
	}
	e.msgs <- bytes.Clone(m.Bytes())
	_ = m.Close()
}
func (e *pinEvents) OnPing(p []byte) { e.pings <- bytes.Clone(p) }
func (e *pinEvents) OnPong([]byte)   {}
func (e *pinEvents) OnClose(err error) {
	e.closed <- err
}

// pinServer upgrades every request with the adapter and runs its read loop.
type pinServer struct {
	addr   string
	conns  chan *transport.Conn
	panics chan any
}

// servePins starts a server accepting netmsg.v1.json (and the protos given)
// whose connections report to ev.
func servePins(t *testing.T, o transport.Options, ev *pinEvents, protos ...string) *pinServer {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 1 << 20
	}
	up := transport.NewUpgrader(o, append(protos, nettest.Subprotocol), time.Second)
	ps := &pinServer{conns: make(chan *transport.Conn, 4), panics: make(chan any, 4)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []*transport.Conn
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, "pin-session")
		if err != nil {
			return
		}
		c.Bind(ev)
		mu.Lock()
		all = append(all, c)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.ReadLoop(func(r any) { ps.panics <- r })
		}()
		ps.conns <- c
	}))
	ps.addr = strings.TrimPrefix(hs.URL, "http://")
	t.Cleanup(func() {
		hs.Close()
		mu.Lock()
		for _, c := range all {
			c.Kill()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ps
}

func (ps *pinServer) next(t *testing.T) *transport.Conn {
	t.Helper()
	return nettest.Recv(t, ps.conns, "the adapter to upgrade a connection")
}

// deflateHeader offers permessage-deflate without context takeover, so each
// compressed frame inflates on its own.
func deflateHeader() http.Header {
	h := http.Header{}
	h.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover; server_no_context_takeover")
	return h
}

// deflate compresses p as permessage-deflate does (a raw deflate stream
// ending in a sync flush, whose 00 00 ff ff tail is dropped).
func deflate(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestCompression)
	require.NoError(t, err)
	_, _ = w.Write(p)
	require.NoError(t, w.Flush())
	out := b.Bytes()
	require.True(t, bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}))
	return bytes.Clone(out[:len(out)-4])
}

// closeOf returns the code and text of a close frame's payload.
func closeOf(p []byte) (uint16, string) {
	if len(p) < 2 {
		return 0, ""
	}
	return binary.BigEndian.Uint16(p), string(p[2:])
}

// TestGwsPinMessageBuffer pins how gws hands a data frame over: its bytes
// are in a pooled buffer whose capacity is the next power of two at or above
// the payload length plus 9 (gws reserves room for its 9-byte deflate tail),
// at least 128 (the mailbox's byte bound counts that capacity); and
// Message.Close gives the buffer back, so a later frame may be read into the
// same memory (the library decodes, or copies, before Close).
func TestGwsPinMessageBuffer(t *testing.T) {
	t.Parallel()
	ev := newPinEvents()
	type got struct {
		n, cap int
		first  *byte
	}
	gotc := make(chan got, 64)
	ev.onMsg = func(m *transport.Message) {
		b := m.Bytes()
		gotc <- got{n: len(b), cap: cap(b), first: &b[:1][0]}
		_ = m.Close()
	}
	ps := servePins(t, transport.Options{}, ev)
	p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
	ps.next(t)
	for _, tc := range []struct{ n, cap int }{
		{1, 128}, {119, 128}, {120, 256}, {1015, 1024}, {1016, 2048}, {100 << 10, 128 << 10},
	} {
		p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpBinary, make([]byte, tc.n)))
		g := nettest.Recv(t, gotc, "the frame")
		assert.Equal(t, tc.n, g.n)
		assert.Equal(t, tc.cap, g.cap, "capacity of the buffer of a %d-byte frame", tc.n)
	}
	// Reuse after Close: the pool may drop a buffer (it does at random under
	// -race), so some of 50 frames of one size must land in memory a
	// previous one used.
	seen := make(map[*byte]bool)
	reused := 0
	for range 50 {
		p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpBinary, make([]byte, 500)))
		g := nettest.Recv(t, gotc, "the frame")
		if seen[g.first] {
			reused++
		}
		seen[g.first] = true
	}
	assert.Positive(t, reused, "no frame was read into a buffer given back by Message.Close")
}

// TestGwsPinPeerClose pins how gws handles the peer's close frame: OnClose
// gets a *gws.CloseError with the code and text (code 0 for a close frame
// without a status code, which Classify reports as 1005), and gws answers
// with a close frame of its own: the same code for an application code, 1000
// for the codes 1000-1015 it accepts, an empty one for an empty one.
func TestGwsPinPeerClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		payload   []byte
		code      uint16 // what OnClose sees
		classCode uint16 // what Classify reports
		answer    uint16 // gws's answer
	}{
		{"application code", append([]byte{0x0f, 0xa1}, "bye"...), 4001, 4001, 4001},
		{"going away", append([]byte{0x03, 0xe9}, "bye"...), 1001, 1001, 1000},
		{"no status code", nil, 0, 1005, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := newPinEvents()
			ps := servePins(t, transport.Options{}, ev)
			p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
			ps.next(t)
			p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpClose, tc.payload))
			answer, _ := closeOf(p.NextFrame(t, nettest.OpClose))
			assert.Equal(t, tc.answer, answer, "gws's answer")
			err := nettest.Recv(t, ev.closed, "OnClose")
			var ce *gws.CloseError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.code, ce.Code)
			end := transport.Classify(err)
			assert.Equal(t, transport.EndPeerClose, end.Kind)
			assert.Equal(t, tc.classCode, end.Code)
			assert.True(t, end.Remote)
		})
	}
}

// TestGwsPinRefusals pins what gws does with input it refuses: it writes a
// close frame itself (with the code below, after the adapter's rewrite of
// the inflater's 1011) in one write, closes the socket, and hands OnClose an
// error that Classify reports as EndRefused with that code. The truncated and
// the corrupt deflate streams, and the one that inflates past the limit,
// are gws answering 1011 with the inflater's error text, and OnClose getting
// only that error (io.ErrUnexpectedEOF for the truncated stream, which must
// not pass for a failed socket).
func TestGwsPinRefusals(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("a"), 4<<10)
	for _, tc := range []struct {
		name  string
		limit int
		hdr   http.Header
		frame func(t *testing.T) []byte
		code  uint16
	}{
		{"reserved opcode", 0, nil, func(*testing.T) []byte { return nettest.Frame(nettest.Fin|0x3, []byte("x")) }, 1002},
		{"control frame over 125 bytes", 0, nil, func(*testing.T) []byte { return nettest.Frame(nettest.Fin|nettest.OpPing, make([]byte, 126)) }, 1002},
		{"declared length over the limit", 1024, nil, func(*testing.T) []byte { return nettest.FrameHeader(nettest.Fin|nettest.OpBinary, 1025) }, 1009},
		{"RSV1 without deflate", 0, nil, func(*testing.T) []byte { return nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, []byte("x")) }, 1002},
		{"corrupt deflate", 0, deflateHeader(), func(*testing.T) []byte {
			return nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, []byte{0xff, 0xff, 0xff, 0xff})
		}, 1007},
		{"truncated deflate", 0, deflateHeader(), func(t *testing.T) []byte {
			c := deflate(t, []byte(strings.Repeat("netmsg pins gws ", 64)))
			return nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, c[:len(c)/2])
		}, 1007},
		{"deflate stream cut inside a stored block", 0, deflateHeader(), func(t *testing.T) []byte {
			// A stored block (BTYPE 00) announcing 16 bytes, followed by 3.
			return nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, []byte{0x00, 0x10, 0x00, 0xef, 0xff, 'a', 'b', 'c'})
		}, 1007},
		{"deflate past the limit", 1024, deflateHeader(), func(t *testing.T) []byte {
			return nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, deflate(t, big))
		}, 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := newPinEvents()
			ps := servePins(t, transport.Options{MaxMessageSize: tc.limit, Compression: tc.hdr != nil}, ev)
			p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{Header: tc.hdr})
			if tc.hdr != nil {
				require.Contains(t, p.Resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
			}
			ps.next(t)
			p.WriteRaw(t, tc.frame(t))
			code, text := closeOf(p.NextFrame(t, nettest.OpClose))
			assert.Equal(t, tc.code, code, "close code on the wire (text %q)", text)
			p.AssertClosedByServer(t)
			err := nettest.Recv(t, ev.closed, "OnClose")
			t.Logf("close frame %d %q; OnClose got %T %v", code, text, err, err)
			end := transport.Classify(err)
			assert.Equal(t, transport.EndRefused, end.Kind, "Classify(%T %v)", err, err)
			assert.Equal(t, tc.code, end.Code, "Classify(%v)", err)
			assert.False(t, end.Remote)
		})
	}
}

// TestGwsPinTopBitLength pins the panic the adapter recovers: gws v1.9.1
// turns a 64-bit frame length with the top bit set into a negative int,
// which passes its size check, and panics in its frame parser on the read
// loop, outside the callbacks its Recovery option covers. Conn.ReadLoop hands
// the panic to its onPanic, and OnClose never runs.
func TestGwsPinTopBitLength(t *testing.T) {
	t.Parallel()
	ev := newPinEvents()
	ps := servePins(t, transport.Options{}, ev)
	p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
	ps.next(t)
	h := []byte{nettest.Fin | nettest.OpBinary, 0x80 | 127}
	h = binary.BigEndian.AppendUint64(h, 1<<63)
	p.WriteRaw(t, append(append(h, nettest.MaskKey[:]...), "payload"...))
	r := nettest.Recv(t, ps.panics, "the read loop's panic")
	assert.NotNil(t, r)
	nettest.None(t, ev.closed, 100*time.Millisecond, "OnClose after the panic")
}

// TestGwsPinWriteClose pins the two ways the adapter closes. gws's WriteClose
// writes the close frame and closes the socket at once (which is why a
// graceful close does not use it): the peer reads the frame, then EOF, and a
// later write fails. A code under 1000 is sent as 1000. The library's
// WriteCloseFrame writes the frame and half-closes: the peer's answer is
// still read and reaches OnClose, and gws's reply to it is not delivered.
func TestGwsPinWriteClose(t *testing.T) {
	t.Parallel()
	t.Run("WriteClose", func(t *testing.T) {
		t.Parallel()
		ev := newPinEvents()
		ps := servePins(t, transport.Options{}, ev)
		p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
		c := ps.next(t)
		require.NoError(t, c.WriteClose(999, []byte("under 1000")))
		code, text := closeOf(p.NextFrame(t, nettest.OpClose))
		assert.EqualValues(t, 1000, code)
		assert.Equal(t, "under 1000", text)
		p.AssertClosedByServer(t)
		assert.Error(t, c.Write(transport.OpBinary, []byte("late")), "a write after WriteClose")
		assert.True(t, c.CloseSent())
		nettest.Recv(t, ev.closed, "OnClose")
	})
	t.Run("WriteCloseFrame", func(t *testing.T) {
		t.Parallel()
		ev := newPinEvents()
		ps := servePins(t, transport.Options{}, ev)
		p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
		c := ps.next(t)
		require.NoError(t, c.WriteCloseFrame(1000, []byte("bye")))
		code, _ := closeOf(p.NextFrame(t, nettest.OpClose))
		assert.EqualValues(t, 1000, code)
		// Half-closed: EOF after the close frame, but the server still reads.
		_ = p.SetReadDeadline(time.Now().Add(nettest.Wait))
		_, _, err := p.ReadFrame()
		assert.ErrorIs(t, err, io.EOF, "after the close frame the server's side is shut for writing")
		p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpClose, append([]byte{0x03, 0xe8}, "ok"...)))
		err = nettest.Recv(t, ev.closed, "OnClose with the peer's answer")
		var ce *gws.CloseError
		require.ErrorAs(t, err, &ce)
		assert.EqualValues(t, 1000, ce.Code)
		assert.Equal(t, "ok", string(ce.Reason))
		assert.True(t, c.CloseSent())
	})
}

// TestGwsPinReadLoopEnd pins how ReadLoop ends when the socket does: OnClose
// runs once, with an error Classify reports as EndNetwork (Remote), and
// ReadLoop returns after it.
func TestGwsPinReadLoopEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(p *nettest.WSPeer, c *transport.Conn)
	}{
		{"the peer hangs up", func(p *nettest.WSPeer, _ *transport.Conn) { _ = p.Close() }},
		{"the peer hangs up mid-frame", func(p *nettest.WSPeer, _ *transport.Conn) {
			_, _ = p.Write(nettest.FrameHeader(nettest.Fin|nettest.OpBinary, 100))
			_ = p.Close()
		}},
		{"this side kills the socket", func(_ *nettest.WSPeer, c *transport.Conn) { c.Kill() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := newPinEvents()
			ps := servePins(t, transport.Options{}, ev)
			p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
			c := ps.next(t)
			tc.end(p, c)
			err := nettest.Recv(t, ev.closed, "OnClose")
			end := transport.Classify(err)
			assert.Equal(t, transport.EndNetwork, end.Kind, "Classify(%T %v)", err, err)
			assert.True(t, end.Remote)
			nettest.None(t, ev.closed, 50*time.Millisecond, "a second OnClose")
		})
	}
}

// TestGwsPinPings pins that gws does not answer pings itself (the library's
// outbound queue does, coalescing them): OnPing gets the payload and nothing
// is written back.
func TestGwsPinPings(t *testing.T) {
	t.Parallel()
	ev := newPinEvents()
	ps := servePins(t, transport.Options{}, ev)
	p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{})
	ps.next(t)
	p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpPing, []byte("hello")))
	assert.Equal(t, []byte("hello"), nettest.Recv(t, ev.pings, "OnPing"))
	_ = p.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, _, err := p.ReadFrame()
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "gws answered a ping by itself: %v", err)
}

// TestGwsPinSubprotocol pins gws's choice of subprotocol (the server's
// negotiation mirrors it): the first of the server's list, in the server's
// order, that the client offered on its first Sec-WebSocket-Protocol header
// line; later lines are not read. It also pins that gws writes the 101
// answer in one write, which is where the adapter adds the session id.
func TestGwsPinSubprotocol(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lines []string
		want  string // "" for a refusal
	}{
		{"the server's order wins", []string{"netmsg.v1.json, netmsg.v1.proto"}, "netmsg.v1.proto"},
		{"one the server accepts", []string{"x, netmsg.v1.json"}, "netmsg.v1.json"},
		{"only the first line is read", []string{"x", "netmsg.v1.json"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ps := servePins(t, transport.Options{}, newPinEvents(), "netmsg.v1.proto")
			h := http.Header{"Sec-Websocket-Protocol": tc.lines}
			p := nettest.DialWS(t, ps.addr, nettest.WSDial{Header: h})
			if tc.want == "" {
				assert.NotEqual(t, http.StatusSwitchingProtocols, p.Resp.StatusCode)
				return
			}
			require.Equal(t, http.StatusSwitchingProtocols, p.Resp.StatusCode, p.Body)
			assert.Equal(t, tc.want, p.Resp.Header.Get("Sec-WebSocket-Protocol"))
			assert.Equal(t, "pin-session", p.Resp.Header.Get(transport.SessionHeader))
			assert.Equal(t, tc.want, ps.next(t).SubProtocol())
		})
	}
}

// TestGwsPinReadLoopReentry pins what inline handlers rely on (the
// library's readLoop.handoff): from inside OnMessage, a new goroutine may
// call ReadLoop again and go on reading exactly where the frame being handled
// ended, while the goroutine that called OnMessage still runs; that
// goroutine then ends with runtime.Goexit and never returns into gws. gws
// v1.9.1 keeps everything about the next frame on the Conn (its buffered
// reader, frame header, continuation state), not on the stack, and its
// deferred calls on the way out (its Recovery, the pooled buffer of a
// compressed frame) are harmless when they run on Goexit. Each frame is
// handed over once, in order, compressed, fragmented or not; OnClose runs
// once, on the last reader.
func TestGwsPinReadLoopReentry(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "deflate"}[compress], func(t *testing.T) {
			t.Parallel()
			ev := newPinEvents()
			var conn atomic.Pointer[transport.Conn]
			var wg sync.WaitGroup
			t.Cleanup(wg.Wait)            // after servePins's cleanup has killed the socket
			exited := make(chan bool, 64) // true: the old reader went out by Goexit
			var n atomic.Int32
			ev.onMsg = func(m *transport.Message) {
				got := bytes.Clone(m.Bytes())
				_ = m.Close()
				i := n.Add(1)
				ev.msgs <- got
				if i%2 == 0 {
					return
				}
				// Every other frame: hand the reading to a new goroutine and,
				// once it has read the next frame, leave by Goexit.
				wg.Add(1)
				go func() {
					defer wg.Done()
					conn.Load().ReadLoop(func(r any) { t.Errorf("reader panicked: %v", r) })
				}()
				deadline := time.Now().Add(nettest.Wait)
				for n.Load() == i && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				viaGoexit := true
				defer func() { exited <- viaGoexit }()
				runtime.Goexit()
				viaGoexit = false // not reached
			}
			hdr := http.Header(nil)
			if compress {
				hdr = deflateHeader()
			}
			ps := servePins(t, transport.Options{Compression: compress}, ev)
			p := nettest.DialWSUpgraded(t, ps.addr, nettest.WSDial{Header: hdr})
			conn.Store(ps.next(t))
			var want [][]byte
			for i := range 12 {
				body := bytes.Repeat([]byte{byte('a' + i)}, 200+i*300)
				want = append(want, body)
				switch {
				case compress && i%3 == 0:
					p.WriteRaw(t, nettest.Frame(nettest.Fin|0x40|nettest.OpBinary, deflate(t, body)))
				case i%3 == 1: // fragmented: two frames
					p.WriteRaw(t, append(nettest.Frame(nettest.OpBinary, body[:100]), nettest.Frame(nettest.Fin|0x0, body[100:])...))
				default:
					p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpBinary, body))
				}
			}
			for i := range want {
				got := nettest.Recv(t, ev.msgs, "frame "+strconv.Itoa(i))
				require.Equal(t, want[i], got, "frame %d", i)
			}
			for range 6 {
				assert.True(t, nettest.Recv(t, exited, "the old reader to exit"), "an old reader returned from Goexit")
			}
			_ = p.Close()
			nettest.Recv(t, ev.closed, "OnClose")
			nettest.None(t, ev.closed, 50*time.Millisecond, "a second OnClose")
		})
	}
}
