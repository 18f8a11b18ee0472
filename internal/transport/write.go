package transport

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Frame is one frame to write.
type Frame struct {
	Op Opcode
	B  []byte
}

// maxHeader is the longest frame header: 2 bytes, 8 of length, 4 of mask.
const maxHeader = 14

// writeBufs is WriteFrames's scratch space. It is pooled rather than kept per
// connection, so that an idle connection holds none of it.
type writeBufs struct {
	hdr     []byte
	bufs    [][]byte
	nb      net.Buffers
	scratch []byte
}

var writeBufsPool = sync.Pool{New: func() any { return new(writeBufs) }}

// put returns w to the pool, without what a very large batch made it grow to.
func (w *writeBufs) put() {
	if cap(w.bufs) > 1024 {
		w.hdr, w.bufs = nil, nil
	}
	writeBufsPool.Put(w)
}

// WriteFrames writes frames in order. Without compression the library frames
// them itself and writes them all with one vectored write (one system call
// for everything the session had queued); with compression gws writes each,
// since it keeps the deflate state. A client's frames are masked in place:
// their buffers must belong to this write alone. Only one goroutine may call
// it at a time (the session's writer).
func (c *Conn) WriteFrames(fs []Frame) error {
	_, err := c.writeFrames(fs, time.Time{})
	return err
}

// CanWriteUntil reports whether WriteFramesUntil can hand back an unwritten
// rest: the library frames the connection's writes itself (no compression)
// on a plain TCP socket. A TLS connection cannot go on after a timed-out
// write.
func (c *Conn) CanWriteUntil() bool {
	if c.compress {
		return false
	}
	_, ok := c.nc.Conn.(*net.TCPConn)
	return ok
}

// WriteFramesUntil writes frames like WriteFrames, but waits for the socket
// only until deadline (it must be in the future): what the socket has not
// taken by then is returned as rest, a copy of the frames' remaining bytes,
// to be written with WriteRaw before anything else. Only when CanWriteUntil.
// The write deadline stays set to deadline.
func (c *Conn) WriteFramesUntil(fs []Frame, deadline time.Time) (rest []byte, err error) {
	return c.writeFrames(fs, deadline)
}

// WriteRaw writes bytes that are already framed: the rest WriteFramesUntil
// returned.
func (c *Conn) WriteRaw(b []byte) error {
	c.nc.wmu.Lock()
	defer c.nc.wmu.Unlock()
	n, err := c.nc.Conn.Write(b)
	c.nc.tx.Add(uint64(n))
	return err
}

func (c *Conn) writeFrames(fs []Frame, until time.Time) (rest []byte, err error) {
	if c.compress {
		for _, f := range fs {
			if err := c.gc.WriteMessage(f.Op, f.B); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	w := writeBufsPool.Get().(*writeBufs)
	defer w.put()
	if cap(w.hdr) < maxHeader*len(fs) {
		w.hdr = make([]byte, maxHeader*len(fs))
	}
	hdr := w.hdr[:maxHeader*len(fs)]
	bufs := w.bufs[:0]
	size := 0
	for i, f := range fs {
		h := hdr[i*maxHeader : i*maxHeader+maxHeader]
		n := header(h, f.Op, len(f.B), !c.server)
		if !c.server {
			mask(f.B, h[n-4:n])
		}
		bufs = append(bufs, h[:n], f.B)
		size += n + len(f.B)
	}
	w.bufs = bufs[:0]
	c.nc.wmu.Lock()
	defer c.nc.wmu.Unlock()
	if _, ok := c.nc.Conn.(*net.TCPConn); ok {
		// A field, not a local: a local net.Buffers escapes through
		// WriteTo, one allocation per write.
		if !until.IsZero() {
			_ = c.nc.SetWriteDeadline(until)
		}
		w.nb = bufs
		n, err := w.nb.WriteTo(c.nc.Conn) // writev; consumes w.nb
		w.nb = nil
		c.nc.tx.Add(uint64(n))
		if err != nil && !until.IsZero() && int(n) < size && IsTimeout(err) {
			// The socket did not take it all in time: hand back the rest.
			rest = make([]byte, 0, size-int(n))
			skip := int(n)
			for _, b := range bufs {
				if skip >= len(b) {
					skip -= len(b)
					continue
				}
				rest = append(rest, b[skip:]...)
				skip = 0
			}
			err = nil
		}
		clear(bufs)
		return rest, err
	}
	// TLS and other wrappers write each buffer on its own: copy into one.
	if cap(w.scratch) < size {
		w.scratch = make([]byte, 0, size)
	}
	out := w.scratch[:0]
	for _, b := range bufs {
		out = append(out, b...)
	}
	clear(bufs)
	n, err := c.nc.Conn.Write(out)
	c.nc.tx.Add(uint64(n))
	if cap(w.scratch) > 256<<10 {
		w.scratch = nil
	}
	return nil, err
}

// header writes a final, uncompressed frame header for a payload of n bytes
// into h and returns its length; masked adds a random masking key (a client's
// frames are masked, RFC 6455 §5.3).
func header(h []byte, op Opcode, n int, masked bool) int {
	h[0] = 0x80 | byte(op)
	var l int
	switch {
	case n < 126:
		h[1] = byte(n)
		l = 2
	case n <= 0xffff:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:4], uint16(n))
		l = 4
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:10], uint64(n))
		l = 10
	}
	if masked {
		h[1] |= 0x80
		binary.LittleEndian.PutUint32(h[l:l+4], rand.Uint32())
		l += 4
	}
	return l
}

// mask XORs b with the masking key, in place.
func mask(b []byte, key []byte) {
	k := binary.LittleEndian.Uint32(key)
	k64 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i%4]
	}
}
