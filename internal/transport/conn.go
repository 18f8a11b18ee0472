// Package transport is netmsg's one adapter to github.com/lxzan/gws: it
// dials and upgrades connections, wraps the net.Conn gws reads and writes
// through, repairs the close frames gws gets wrong, recovers the panics gws
// does not, and classifies how a connection ended. Nothing else in the
// library imports gws; gws_pin_test.go pins every gws behaviour relied on.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/lxzan/gws"
)

// Opcode is a WebSocket frame opcode.
type Opcode = gws.Opcode

// The opcodes the library writes or sees.
const (
	OpText   = gws.OpcodeText
	OpBinary = gws.OpcodeBinary
	OpClose  = gws.OpcodeCloseConnection
	OpPing   = gws.OpcodePing
	OpPong   = gws.OpcodePong
)

// Message is one received data frame. Its bytes come from a pool: Close
// returns them, after which Bytes must not be used.
type Message = gws.Message

// Events receives what a connection reads, all on its read loop.
type Events interface {
	OnMessage(m *Message)
	OnPing(payload []byte)
	OnPong(payload []byte)
	// OnClose runs once when the connection has ended, with gws's reason.
	OnClose(err error)
}

// Conn is one WebSocket connection.
type Conn struct {
	gc       *gws.Conn
	ev       Events
	server   bool
	compress bool
	nc       netConn
}

// slot is the gws session storage of a connection; it points back to the
// Conn so the read loop finds it without a map lookup.
type slot struct{ c *Conn }

func (*slot) Len() int                     { return 0 }
func (*slot) Load(string) (any, bool)      { return nil, false }
func (*slot) Delete(string)                {}
func (*slot) Store(string, any)            {}
func (*slot) Range(func(string, any) bool) {}

// handler routes gws's callbacks to the Conn's Events. Every event ends a
// frame, which resets the frame clock.
type handler struct{}

func connOf(c *gws.Conn) *Conn { return c.Session().(*slot).c }

func (handler) OnOpen(*gws.Conn) {}
func (handler) OnClose(c *gws.Conn, err error) {
	cc := connOf(c)
	if code := cc.nc.refused.Load(); code != 0 {
		// gws refused a compressed frame and hands over only the
		// inflater's error, which for a stream cut short is
		// io.ErrUnexpectedEOF, the same as a socket that ended mid-frame.
		var ce *gws.CloseError
		if !errors.As(err, &ce) {
			err = &inflateRefused{code: uint16(code), err: err}
		}
	}
	cc.ev.OnClose(err)
}

func (handler) OnPing(c *gws.Conn, p []byte) {
	cc := connOf(c)
	cc.nc.frameDone()
	cc.ev.OnPing(p)
}
func (handler) OnPong(c *gws.Conn, p []byte) {
	cc := connOf(c)
	cc.nc.frameDone()
	cc.ev.OnPong(p)
}
func (handler) OnMessage(c *gws.Conn, m *gws.Message) {
	cc := connOf(c)
	cc.nc.frameDone()
	cc.ev.OnMessage(m)
}

// inflateRefused is the error of a compressed frame gws refused, with the
// close code sent for it (after fixInflateClose).
type inflateRefused struct {
	code uint16
	err  error
}

func (e *inflateRefused) Error() string  { return e.err.Error() }
func (e *inflateRefused) Unwrap() error  { return e.err }
func (e *inflateRefused) Uint16() uint16 { return e.code }

// logger forwards gws's own error logs (recovered panics) to slog.
type logger struct{ l *slog.Logger }

func (l logger) Error(v ...any) { l.l.Error("gws: " + fmt.Sprint(v...)) }

// Bind sets the receiver of the connection's events; call it before ReadLoop.
func (c *Conn) Bind(ev Events) { c.ev = ev }

// BeforeRead sets f to run on the read loop each time it is about to read
// from the socket (gws's buffer is empty): the moment to write what the read
// loop produced meanwhile, so answers to pipelined requests leave together.
// Call it before ReadLoop.
func (c *Conn) BeforeRead(f func()) { c.nc.beforeRead = f }

// SubProtocol returns the negotiated subprotocol.
func (c *Conn) SubProtocol() string { return c.gc.SubProtocol() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.gc.RemoteAddr() }

// Received returns the number of bytes read from the peer so far.
func (c *Conn) Received() uint64 { return c.nc.rx.Load() }

// Sent returns the number of bytes written to the peer so far.
func (c *Conn) Sent() uint64 { return c.nc.tx.Load() }

// FrameAge returns how long the frame being read has been arriving, or 0
// when none is in progress.
func (c *Conn) FrameAge(now time.Time) time.Duration {
	start := c.nc.frameStart.Load()
	if start == 0 {
		return 0
	}
	return time.Duration(now.UnixNano() - start)
}

// ReadLoop reads until the connection ends; Events.OnClose runs at the end.
// gws recovers panics in the event handlers but not in its own frame parser,
// and a peer can make that panic (gws v1.9.1 turns a 64-bit frame length with
// the top bit set into a negative int and slices with it). Such a panic is
// recovered here and handed to onPanic instead; gws's OnClose never runs then.
//
// ReadLoop may be called again, on a new goroutine, from inside
// Events.OnMessage: the new call goes on reading where the frame being
// handled ended (gws v1.9.1 keeps no reader state on the goroutine's stack
// across OnMessage; gws_pin_test.go pins that). The goroutine that called
// OnMessage must then never return into gws: it ends with runtime.Goexit.
func (c *Conn) ReadLoop(onPanic func(any)) {
	defer func() {
		if r := recover(); r != nil {
			onPanic(r)
		}
	}()
	c.gc.ReadLoop()
}

// Write writes one frame. Only one goroutine may write at a time (gws's own
// close answers, on the read loop, take gws's lock).
func (c *Conn) Write(op Opcode, b []byte) error { return c.gc.WriteMessage(op, b) }

// WriteClose writes a close frame and closes the socket. Later writes fail,
// and gws sends no second close frame when the peer answers.
func (c *Conn) WriteClose(code uint16, text []byte) error {
	c.nc.closeSent.Store(true)
	err := c.gc.WriteClose(code, text)
	if err != nil {
		c.nc.closeSent.Store(false)
	}
	return err
}

// CloseSent reports whether a close frame of this side's went out (rather
// than gws's answer to the peer's). It is true from the moment the write
// begins: the peer's answer can arrive, and be read, before the write call
// has returned.
func (c *Conn) CloseSent() bool { return c.nc.closeSent.Load() }

// WriteCloseFrame writes a close frame without closing the socket and then
// half-closes it: the peer's answer is still read, and the close frame gws
// writes in reply to it cannot reach the peer a second time.
func (c *Conn) WriteCloseFrame(code uint16, text []byte) error {
	p := make([]byte, 2, 2+len(text))
	binary.BigEndian.PutUint16(p, code)
	p = append(p, text...)
	c.nc.closeSent.Store(true)
	if err := c.gc.WriteMessage(OpClose, p); err != nil {
		c.nc.closeSent.Store(false)
		return err
	}
	if cw, ok := c.nc.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	return nil
}

// SetWriteDeadline bounds the write in progress and later ones. It never
// blocks, so any goroutine may use it to unblock a stuck writer.
func (c *Conn) SetWriteDeadline(t time.Time) { _ = c.nc.SetWriteDeadline(t) }

// Kill closes the socket at once; the read loop then ends.
func (c *Conn) Kill() { _ = c.nc.Conn.Close() }

// End classifies the error gws hands to OnClose.
type End struct {
	Kind   EndKind
	Code   uint16 // the close code received or sent
	Text   string // the close frame's text, or the error's
	Remote bool   // the peer's close frame ended it
	Err    error  // the underlying error, if any
}

// EndKind says how a connection ended.
type EndKind uint8

// How a connection ends.
const (
	// EndPeerClose: the peer sent a close frame (Code, Text; Code 1005 when
	// the frame had no status code).
	EndPeerClose EndKind = iota
	// EndRefused: gws refused the peer's input and sent Code itself
	// (oversized or malformed frames).
	EndRefused
	// EndWriteTimeout: a write ran out of time: the peer does not read.
	EndWriteTimeout
	// EndNetwork: the link failed or ended without a close frame.
	EndNetwork
)

// statusCoder matches gws's internal close status type, which gws hands to
// OnClose after it failed a read for a protocol reason and sent that code.
type statusCoder interface{ Uint16() uint16 }

// Classify turns the error gws hands to OnClose into an End.
func Classify(err error) End {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		code := ce.Code
		if code == 0 {
			code = 1005 // a close frame without a status code (RFC 6455 §7.1.5)
		}
		if code == 1011 && string(ce.Reason) == gwsInflateOverflow {
			code = 1009 // a peer whose close frame was not corrected
		}
		return End{Kind: EndPeerClose, Code: code, Text: string(ce.Reason), Remote: true}
	}
	var sc statusCoder
	if errors.As(err, &sc) {
		return End{Kind: EndRefused, Code: sc.Uint16(), Text: err.Error(), Err: err}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Reads carry no deadline here, so this is a write that ran out of time.
		return End{Kind: EndWriteTimeout, Code: 1013, Err: err}
	}
	if err != nil && !isNetworkError(err) {
		// gws failed a read on the peer's input and hands over only the inner
		// error: a reserved opcode (it sent 1002), a compressed frame that does
		// not inflate or text that is not UTF-8 (netConn made it 1007).
		if errors.Is(err, gws.ErrMessageTooLarge) {
			return End{Kind: EndRefused, Code: 1009, Text: err.Error(), Err: err}
		}
		code := uint16(1002)
		if strings.HasPrefix(err.Error(), flateErrPrefix) || errors.Is(err, gws.ErrTextEncoding) {
			code = 1007
		}
		return End{Kind: EndRefused, Code: code, Text: err.Error(), Err: err}
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return End{Kind: EndNetwork, Code: 1006, Remote: true, Err: err}
}

// IsTimeout reports whether err is a write deadline running out.
func IsTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// isNetworkError reports whether err is the transport failing (EOF, reset,
// a closed or timed-out socket) rather than gws refusing the peer's bytes.
func isNetworkError(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	var errno syscall.Errno
	return errors.As(err, &ne) || errors.As(err, &errno)
}
