package netmsg

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
)

// gwsInflateOverflow is the reason text gws sends, with code 1011, when a
// compressed frame inflates past ReadMaxPayloadSize.
const gwsInflateOverflow = "gws: message too large"

// flateErrPrefix starts the errors of gws's inflater (klauspost/compress/flate)
// for corrupt data: "flate: corrupt input before offset N".
const flateErrPrefix = "flate: "

// sessionConn is the net.Conn gws reads and writes through. It counts the
// bytes received, so that the heartbeat sees a peer that is sending even
// while one large frame takes longer than the receive timeout to arrive; and
// it corrects the close frames gws sends with the wrong code: when a
// compressed frame fails to inflate, gws answers 1011 (internal error)
// although the fault is the peer's. Past the size limit that is rewritten to
// 1009 (too large); for data that does not inflate, to 1007 (invalid data).
// The inflater's frames are told apart by their texts. Every other write
// passes through after a one-byte check.
type sessionConn struct {
	net.Conn
	r  io.Reader     // what gws reads: the conn, or bytes read ahead and then the conn
	rx atomic.Uint64 // bytes received
}

// newSessionConn wraps c; ahead holds bytes already read from c (by net/http,
// before the hijack) that come first.
func newSessionConn(c net.Conn, ahead []byte) *sessionConn {
	sc := &sessionConn{Conn: c, r: c}
	if len(ahead) > 0 {
		sc.r = io.MultiReader(bytes.NewReader(ahead), c)
	}
	return sc
}

func (c *sessionConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.rx.Add(uint64(n))
	}
	return n, err
}

func (c *sessionConn) Write(p []byte) (int, error) {
	if len(p) > 4 && p[0] == 0x88 { // FIN + close opcode, a whole frame in one write
		fixInflateClose(p)
	}
	return c.Conn.Write(p)
}

// fixInflateClose rewrites, in place, a close frame carrying 1011 with one of
// the inflater's texts to carry 1009 (gws's overflow text) or 1007 (a corrupt
// or truncated deflate stream).
func fixInflateClose(p []byte) {
	n := int(p[1] & 0x7f)
	masked := p[1]&0x80 != 0
	off := 2
	var key [4]byte
	if masked {
		if len(p) < 6 {
			return
		}
		copy(key[:], p[2:6])
		off = 6
	}
	if n > 125 || n < 2 || len(p) != off+n {
		return
	}
	var payload [125]byte
	copy(payload[:n], p[off:])
	if masked {
		for i := range n {
			payload[i] ^= key[i%4]
		}
	}
	if binary.BigEndian.Uint16(payload[:2]) != closeCodeInternal {
		return
	}
	var code uint16
	switch text := payload[2:n]; {
	case bytes.Equal(text, []byte(gwsInflateOverflow)):
		code = closeCodeTooLarge
	case bytes.HasPrefix(text, []byte(flateErrPrefix)), bytes.Equal(text, []byte("unexpected EOF")):
		code = closeCodeInvalidData
	default:
		return
	}
	binary.BigEndian.PutUint16(payload[:2], code)
	if masked {
		for i := range 2 {
			payload[i] ^= key[i%4]
		}
	}
	copy(p[off:off+2], payload[:2])
}
