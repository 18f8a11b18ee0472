package nettest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Frame opcodes and the FIN bit, for the first byte of a frame header.
const (
	Fin      = 0x80
	OpCont   = 0x0
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPing   = 0x9
	OpPong   = 0xa
)

// DialTCP dials addr; the connection is closed when the test ends. tune, if
// set, runs before anything is written (buffer sizes).
func DialTCP(t testing.TB, addr string, tune func(*net.TCPConn)) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, Wait)
	require.NoError(t, err)
	if tc, ok := c.(*net.TCPConn); ok && tune != nil {
		tune(tc)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// WSDial configures DialWS.
type WSDial struct {
	// Header adds to or replaces the upgrade request's headers
	// (Sec-WebSocket-Protocol is Subprotocol unless set here).
	Header http.Header
	// First is written in the same write as the upgrade request, before
	// the answer (a client that does not wait for the 101).
	First []byte
	// Tune runs on the socket before the handshake (buffer sizes).
	Tune func(*net.TCPConn)
}

// WSPeer is a plain TCP connection that did the WebSocket handshake by hand:
// the test writes frames byte by byte (any header, any length, any pace) and
// reads the other side's frames when and as fast as it chooses.
type WSPeer struct {
	net.Conn
	br   *bufio.Reader
	Resp *http.Response // the handshake answer
	Body string         // its body, when it is not 101

	rmu    sync.Mutex
	reader *Reader
}

// DialWS dials addr and sends a WebSocket upgrade request. It returns after
// reading the answer's header; check Resp.StatusCode (or use DialWSUpgraded).
func DialWS(t testing.TB, addr string, d WSDial) *WSPeer {
	t.Helper()
	c := DialTCP(t, addr, d.Tune)
	p := &WSPeer{Conn: c, br: bufio.NewReader(c)}
	t.Cleanup(p.stopReader)
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	require.NoError(t, err)
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	req.Header.Set("Sec-WebSocket-Protocol", Subprotocol)
	for k, v := range d.Header {
		req.Header[k] = v
	}
	_ = c.SetDeadline(time.Now().Add(Wait))
	var out bytes.Buffer
	require.NoError(t, req.Write(&out))
	out.Write(d.First)
	_, err = c.Write(out.Bytes())
	require.NoError(t, err)
	resp, err := http.ReadResponse(p.br, req)
	require.NoError(t, err, "reading the handshake answer")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		p.Body = string(b)
	}
	_ = resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	p.Resp = resp
	return p
}

// DialWSUpgraded is DialWS that requires the upgrade to succeed.
func DialWSUpgraded(t testing.TB, addr string, d WSDial) *WSPeer {
	t.Helper()
	p := DialWS(t, addr, d)
	require.Equal(t, http.StatusSwitchingProtocols, p.Resp.StatusCode, "handshake: %s", p.Body)
	return p
}

// BufReader returns the buffered reader the peer reads through, for reading
// what is not a frame (a second HTTP answer on a refused connection).
func (p *WSPeer) BufReader() *bufio.Reader { return p.br }

// MaskKey is the masking key of the frames FrameHeader and Frame build.
var MaskKey = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}

// FrameHeader returns a masked client frame header: first byte b0 (FIN, RSV
// bits, opcode) and the declared payload length n, in its shortest form.
func FrameHeader(b0 byte, n uint64) []byte {
	h := []byte{b0}
	switch {
	case n <= 125:
		h = append(h, 0x80|byte(n))
	case n <= 0xffff:
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h = append(h, 0x80|127)
		h = binary.BigEndian.AppendUint64(h, n)
	}
	return append(h, MaskKey[:]...)
}

// Frame returns a whole masked client frame.
func Frame(b0 byte, payload []byte) []byte {
	f := FrameHeader(b0, uint64(len(payload)))
	for i, c := range payload {
		f = append(f, c^MaskKey[i%4])
	}
	return f
}

// WriteRaw writes b within Wait and fails the test if it cannot.
func (p *WSPeer) WriteRaw(t testing.TB, b []byte) {
	t.Helper()
	require.NoError(t, p.WriteBy(b, time.Now().Add(Wait)))
}

// WriteBy writes b with a deadline and returns the error: for floods, where
// the other side may close the connection at any moment.
func (p *WSPeer) WriteBy(b []byte, deadline time.Time) error {
	_ = p.SetWriteDeadline(deadline)
	_, err := p.Conn.Write(b)
	return err
}

// Drip writes b one byte every interval until all is written, a write
// fails, or stop is closed; it returns how many bytes it wrote and the
// write error, if any.
func (p *WSPeer) Drip(b []byte, every time.Duration, stop <-chan struct{}) (int, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := range b {
		if err := p.WriteBy(b[i:i+1], time.Now().Add(Wait)); err != nil {
			return i, err
		}
		if i == len(b)-1 {
			break
		}
		select {
		case <-t.C:
		case <-stop:
			return i + 1, nil
		}
	}
	return len(b), nil
}

// ReadFrame reads one frame from the other side (a server's frames are not
// masked). It must not be used while a Reader runs.
func (p *WSPeer) ReadFrame() (b0 byte, payload []byte, err error) {
	var h [8]byte
	if _, err = io.ReadFull(p.br, h[:2]); err != nil {
		return 0, nil, err
	}
	b0 = h[0]
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err = io.ReadFull(p.br, h[:2]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err = io.ReadFull(p.br, h[:8]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(p.br, payload)
	return b0, payload, err
}

// NextFrame reads frames until one whose opcode is op, within Wait, and
// returns its payload.
func (p *WSPeer) NextFrame(t testing.TB, op byte) []byte {
	t.Helper()
	_ = p.SetReadDeadline(time.Now().Add(Wait))
	defer func() { _ = p.SetReadDeadline(time.Time{}) }()
	for {
		b0, payload, err := p.ReadFrame()
		require.NoError(t, err, "reading a frame of opcode %#x", op)
		if b0&0x0f == op {
			return payload
		}
	}
}

// ReadCloseCode reads frames until a close frame and returns its code, or 0
// when the connection ended without one. It fails after Wait.
func (p *WSPeer) ReadCloseCode(t testing.TB) uint16 {
	t.Helper()
	_ = p.SetReadDeadline(time.Now().Add(Wait))
	defer func() { _ = p.SetReadDeadline(time.Time{}) }()
	for {
		b0, payload, err := p.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the other side neither closed nor sent a close frame within %v", Wait)
			}
			return 0
		}
		if b0&0x0f == OpClose {
			if len(payload) < 2 {
				return 0
			}
			return binary.BigEndian.Uint16(payload)
		}
	}
}

// AssertClosedByServer checks that the other side ends the TCP connection
// (after any close frame) within Wait.
func (p *WSPeer) AssertClosedByServer(t testing.TB) {
	t.Helper()
	_ = p.SetReadDeadline(time.Now().Add(Wait))
	_, err := io.Copy(io.Discard, p.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the other side did not close the connection within %v", Wait)
	}
}

// Reader reads a WSPeer's frames on a goroutine of its own, at a chosen
// pace, and counts them; it ends when the connection does.
type Reader struct {
	Frames atomic.Int64 // frames read
	Bytes  atomic.Int64 // payload bytes read
	Pongs  atomic.Int64 // pong frames read
	// Data receives the payload of each data frame (dropped when full).
	Data chan []byte
	// CloseCode is the code of the close frame read, once the reader ended.
	CloseCode atomic.Uint32
	done      chan struct{}
	err       error
}

// StartReading starts a Reader that sleeps pace after each frame (0: reads
// as fast as frames come). The peer must not read otherwise meanwhile.
func (p *WSPeer) StartReading(pace time.Duration) *Reader {
	r := &Reader{Data: make(chan []byte, 1024), done: make(chan struct{})}
	p.rmu.Lock()
	p.reader = r
	p.rmu.Unlock()
	go func() {
		defer close(r.done)
		for {
			b0, payload, err := p.ReadFrame()
			if err != nil {
				r.err = err
				return
			}
			r.Frames.Add(1)
			r.Bytes.Add(int64(len(payload)))
			switch b0 & 0x0f {
			case OpPong:
				r.Pongs.Add(1)
			case OpBinary, OpText:
				offer(r.Data, payload)
			case OpClose:
				if len(payload) >= 2 {
					r.CloseCode.Store(uint32(binary.BigEndian.Uint16(payload)))
				}
			}
			if pace > 0 {
				time.Sleep(pace)
			}
		}
	}()
	return r
}

// Done is closed when the reader has ended (the connection ended).
func (r *Reader) Done() <-chan struct{} { return r.done }

// Err returns why the reader ended; call it after Done.
func (r *Reader) Err() error { return r.err }

// stopReader closes the connection and waits for a Reader to end.
func (p *WSPeer) stopReader() {
	_ = p.Conn.Close()
	p.rmu.Lock()
	r := p.reader
	p.rmu.Unlock()
	if r != nil {
		<-r.done
	}
}
