package transport

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// gwsInflateOverflow is the reason text gws sends, with code 1011, when a
// compressed frame inflates past ReadMaxPayloadSize.
const gwsInflateOverflow = "gws: message too large"

// flateErrPrefix starts the errors of gws's inflater (klauspost/compress/flate)
// for corrupt data: "flate: corrupt input before offset N".
const flateErrPrefix = "flate: "

// netConn is the net.Conn gws reads and writes through. It
//   - counts the bytes received, so the heartbeat sees a peer that is sending
//     even while one large frame takes longer than the receive timeout, and
//     the bytes sent, for monitoring;
//   - notes when the frame being read began, so a frame dripped a byte at a
//     time can be cut off (Conn.FrameAge);
//   - corrects the close frames gws sends with the wrong code: when a
//     compressed frame fails to inflate gws answers 1011 (internal error)
//     although the fault is the peer's; past the size limit that becomes 1009,
//     for data that does not inflate 1007;
//   - on a server, adds headers of its own (the session id) to the 101
//     response gws writes, which gws's options cannot do per connection.
type netConn struct {
	net.Conn
	r  io.Reader     // what gws reads: the conn, or bytes read ahead and then the conn
	rx atomic.Uint64 // bytes received
	tx atomic.Uint64 // bytes sent

	// frameStart is when the first byte after the last complete frame
	// arrived (unix nanoseconds), 0 while no frame is in progress.
	frameStart atomic.Int64

	inject string // header lines for the handshake response, written once

	closeSent atomic.Bool // a close frame of this side's own went out

	// refused is the code of a close frame gws wrote with the inflater's
	// 1011 and fixInflateClose corrected (1007 or 1009), 0 if none.
	refused atomic.Uint32

	// wmu serializes whole frames: gws's writes (close frames, and every
	// frame with compression on) come through Write, the library's own
	// batches through Conn.WriteFrames.
	wmu sync.Mutex

	// closeWritten is set (under wmu) once a close frame has been written:
	// a connection carries one, so later ones are dropped.
	closeWritten bool

	// beforeRead, when set, runs on the read loop before each read from the
	// socket (Conn.BeforeRead).
	beforeRead func()
}

// init sets nc up to read and write through c, handing what was read ahead
// of it over first. A netConn lives inside its Conn (one allocation).
func (nc *netConn) init(c net.Conn, ahead []byte) {
	nc.Conn, nc.r = c, c
	if len(ahead) > 0 {
		nc.r = io.MultiReader(bytes.NewReader(ahead), c)
	}
}

func (c *netConn) Read(p []byte) (int, error) {
	if c.beforeRead != nil {
		c.beforeRead()
	}
	n, err := c.r.Read(p)
	if n > 0 {
		c.rx.Add(uint64(n))
		if c.frameStart.Load() == 0 {
			c.frameStart.Store(time.Now().UnixNano())
		}
	}
	return n, err
}

// frameDone notes that a whole frame has been read. Bytes of the next frame
// may already sit in gws's buffer; its clock then starts with the next read,
// which is late by at most the time that read waited, so a frame is never cut
// off early.
func (c *netConn) frameDone() { c.frameStart.Store(0) }

func (c *netConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.inject != "" {
		if i := bytes.Index(p, []byte("\r\n\r\n")); i >= 0 {
			resp := make([]byte, 0, len(p)+len(c.inject))
			resp = append(append(append(resp, p[:i+2]...), c.inject...), p[i+2:]...)
			c.inject = ""
			n, err := c.Conn.Write(resp)
			c.tx.Add(uint64(n))
			if err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	if len(p) >= 2 && p[0] == 0x88 { // FIN + close opcode, a whole frame in one write
		if c.closeWritten {
			// gws answers the peer's close frame on the read loop. When this
			// side's own close went out first (WriteCloseFrame writes it and
			// then half-closes the socket), the peer's answer can be read and
			// answered before the half close: a second close frame, after
			// which a browser fails the connection (1006) instead of
			// reporting the first one's code and text.
			return len(p), nil
		}
		c.closeWritten = true
		if code := fixInflateClose(p); code != 0 {
			c.refused.Store(uint32(code))
		}
	}
	n, err := c.Conn.Write(p)
	c.tx.Add(uint64(n))
	return n, err
}

// fixInflateClose rewrites, in place, a close frame carrying 1011 with one of
// the inflater's texts to carry 1009 (gws's overflow text) or 1007 (a corrupt
// or truncated deflate stream), and returns the new code (0 when p is left
// as it was).
func fixInflateClose(p []byte) uint16 {
	n := int(p[1] & 0x7f)
	masked := p[1]&0x80 != 0
	off := 2
	var key [4]byte
	if masked {
		if len(p) < 6 {
			return 0
		}
		copy(key[:], p[2:6])
		off = 6
	}
	if n > 125 || n < 2 || len(p) != off+n {
		return 0
	}
	var payload [125]byte
	copy(payload[:n], p[off:])
	if masked {
		for i := range n {
			payload[i] ^= key[i%4]
		}
	}
	if binary.BigEndian.Uint16(payload[:2]) != 1011 {
		return 0
	}
	var code uint16
	switch text := payload[2:n]; {
	case bytes.Equal(text, []byte(gwsInflateOverflow)):
		code = 1009
	case bytes.HasPrefix(text, []byte(flateErrPrefix)), bytes.Equal(text, []byte("unexpected EOF")):
		code = 1007
	default:
		return 0
	}
	binary.BigEndian.PutUint16(payload[:2], code)
	if masked {
		for i := range 2 {
			payload[i] ^= key[i%4]
		}
	}
	copy(p[off:off+2], payload[:2])
	return code
}
