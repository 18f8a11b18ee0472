package netmsg

import (
	"bytes"
	"encoding/binary"
	"net"
)

// gwsInflateOverflow is the reason text gws sends, with code 1011, when a
// compressed frame inflates past ReadMaxPayloadSize.
const gwsInflateOverflow = "gws: message too large"

// fixCloseConn corrects the one close frame gws sends with the wrong code:
// when a compressed frame inflates past the limit, gws answers 1011 (internal
// error) although the peer sent a message that is too large. This wrapper
// rewrites that frame's code to 1009 so the peer learns the real reason.
// Every other write passes through after a one-byte check.
type fixCloseConn struct{ net.Conn }

func (c fixCloseConn) Write(p []byte) (int, error) {
	if len(p) > 4 && p[0] == 0x88 { // FIN + close opcode, a whole frame in one write
		fixInflateClose(p)
	}
	return c.Conn.Write(p)
}

// fixInflateClose rewrites, in place, a close frame carrying 1011 and gws's
// overflow text to carry 1009.
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
	if n > 125 || len(p) != off+n || n != 2+len(gwsInflateOverflow) {
		return
	}
	payload := make([]byte, n)
	copy(payload, p[off:])
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	if binary.BigEndian.Uint16(payload) != closeCodeInternal || !bytes.Equal(payload[2:], []byte(gwsInflateOverflow)) {
		return
	}
	binary.BigEndian.PutUint16(payload, closeCodeTooLarge)
	if masked {
		for i := range payload[:2] {
			payload[i] ^= key[i%4]
		}
	}
	copy(p[off:off+2], payload[:2])
}
