package transport

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
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
	iov     []iovec // WriteFramesNow's
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
	_, err := c.writeFrames(fs, false)
	return err
}

// CanWriteNow reports whether WriteFramesNow can be used: the library frames
// the connection's writes itself (no compression) on a plain TCP socket, on
// a system where it makes non-blocking vectored writes (Linux).
func (c *Conn) CanWriteNow() bool {
	if c.compress || !canWriteNow {
		return false
	}
	_, ok := c.nc.Conn.(*net.TCPConn)
	return ok
}

// WriteFramesNow writes frames like WriteFrames, but only as far as the
// socket takes them at once: it never waits for the peer. What the socket did
// not take is kept (a copy) and written before anything else by the next
// write of any kind; pending reports whether there is such a rest, which a
// WriteFrames (of no frames, if need be) then writes. Only when CanWriteNow.
func (c *Conn) WriteFramesNow(fs []Frame) (pending bool, err error) {
	return c.writeFrames(fs, true)
}

// PendingBytes returns the size of the rest a WriteFramesNow left to be
// written, 0 if there is none.
func (c *Conn) PendingBytes() int {
	c.nc.wmu.Lock()
	defer c.nc.wmu.Unlock()
	if c.nc.nw == nil {
		return 0
	}
	return len(c.nc.nw.tail)
}

// writeTail writes what a non-blocking write left, waiting for the socket;
// wmu is held.
func (c *netConn) writeTail() error {
	if c.nw == nil || len(c.nw.tail) == 0 {
		return nil
	}
	n, err := c.Conn.Write(c.nw.tail)
	c.tx.Add(uint64(n))
	if err != nil {
		c.nw.tail = c.nw.tail[n:]
		return err
	}
	c.nw.tail = nil
	return nil
}

func (c *Conn) writeFrames(fs []Frame, now bool) (pending bool, err error) {
	if c.compress {
		for _, f := range fs {
			if err := c.gc.WriteMessage(f.Op, f.B); err != nil {
				return false, err
			}
		}
		return false, nil
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
		if now {
			pending, err = c.writeNow(w, bufs, size)
			clear(bufs)
			return pending, err
		}
		if err := c.nc.writeTail(); err != nil {
			clear(bufs)
			return false, err
		}
		w.nb = bufs
		n, err := w.nb.WriteTo(c.nc.Conn) // writev; consumes w.nb
		w.nb = nil
		c.nc.tx.Add(uint64(n))
		clear(bufs)
		return false, err
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
	return false, err
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
