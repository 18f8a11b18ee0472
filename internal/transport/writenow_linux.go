package transport

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

const canWriteNow = true

type iovec = syscall.Iovec

// nowWriter is what WriteFramesNow keeps per connection, made on first use:
// the raw socket, the callback handed to it (made once: a closure per write
// would be an allocation per write), that callback's arguments and results,
// and the tail a write left unwritten.
type nowWriter struct {
	raw  syscall.RawConn
	fn   func(fd uintptr) bool
	iov  []syscall.Iovec
	n    int64
	err  error
	tail []byte
}

// writeNow writes the tail left by an earlier call and then bufs (size bytes
// in all) with non-blocking writev system calls, as far as the socket takes
// them, and keeps what it did not take as the new tail. It never waits for
// the socket (the callback handed to RawConn.Write always reports done).
// wmu is held.
func (c *Conn) writeNow(wb *writeBufs, bufs [][]byte, size int) (pending bool, err error) {
	w := c.nc.nw
	if w == nil {
		raw, err := c.nc.Conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			return false, err
		}
		w = &nowWriter{raw: raw}
		w.fn = w.write
		c.nc.nw = w
	}
	iov := wb.iov[:0]
	if len(w.tail) > 0 {
		iov = appendIovec(iov, w.tail)
		size += len(w.tail)
	}
	for _, b := range bufs {
		iov = appendIovec(iov, b)
	}
	w.iov, w.n, w.err = iov, 0, nil
	err = w.raw.Write(w.fn)
	clear(iov)
	wb.iov = iov[:0]
	n, werr := int(w.n), w.err
	w.iov, w.err = nil, nil
	c.nc.tx.Add(uint64(n))
	switch {
	case err != nil && !IsTimeout(err):
		return false, err
	case werr != nil:
		return false, werr
	case n == size:
		w.tail = nil
		return false, nil
	}
	// (A write deadline set for an earlier write may have passed: then
	// nothing was tried, and the writer goroutine sets a new one.)
	var tail []byte
	if n < len(w.tail) {
		tail = append(tail, w.tail[n:]...)
		n = 0
	} else {
		n -= len(w.tail)
	}
	tail = slicesConcatFrom(tail, bufs, n)
	w.tail = tail
	return true, nil
}

// slicesConcatFrom appends bufs to dst, skipping their first skip bytes.
func slicesConcatFrom(dst []byte, bufs [][]byte, skip int) []byte {
	for _, b := range bufs {
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		dst = append(dst, b[skip:]...)
		skip = 0
	}
	return dst
}

func appendIovec(iov []syscall.Iovec, b []byte) []syscall.Iovec {
	if len(b) == 0 {
		return iov
	}
	v := syscall.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return append(iov, v)
}

// maxIovecs is the most iovecs one writev takes (IOV_MAX).
const maxIovecs = 1024

// write is the RawConn callback: writev until done or EAGAIN; it always
// returns true (never wait for the socket).
func (w *nowWriter) write(fd uintptr) bool {
	iov := w.iov
	for len(iov) > 0 {
		k := min(len(iov), maxIovecs)
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			if e != syscall.EAGAIN {
				w.err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("writev", e)}
			}
			return true
		}
		if r == 0 {
			return true
		}
		w.n += int64(r)
		m := uint64(r)
		for m > 0 {
			if l := uint64(iov[0].Len); m >= l {
				m -= l
				iov = iov[1:]
			} else {
				iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), m))
				iov[0].SetLen(int(l - m))
				m = 0
			}
		}
	}
	return true
}
