package netmsg

// FuzzSessionInbound drives the whole inbound path of a server session with
// fuzzed bytes: gws's frame reader (masking, fragmentation, control frames,
// RSV bits, permessage-deflate inflation), netmsg's envelope decoding,
// dispatch, handler decoding, CANCEL and the response path. The session is a
// real one made by Server.ServeHTTP on one end of a net.Pipe; the fuzzer
// writes to the other end.
//
// The input is a list of frames, each
//
//	[b0: FIN|RSV1|RSV2|RSV3|opcode] [b1: 0x80 = send unmasked, low 2 bits = length form] [len: 2 bytes BE] [payload]
//
// The declared length always equals the bytes that follow (capped at what the
// input has left), so the stream never waits for bytes that will not come;
// the length form picks the 7-bit, 16-bit or 64-bit encoding of it. Lying
// length fields are covered by the integration tests (truncated frames, a
// huge declared length).
//
// After the fuzzed frames the harness sends a well-formed request and checks,
// for every input: no panic (also none recovered and logged by gws), the
// request is answered or the session closes, the session then closes
// completely (every goroutine the server started for it exits, its mailbox,
// in-flight and pending tables end empty), and the iteration allocates a
// bounded number of bytes although a compressed frame may claim to inflate
// to any size. Seeds live in testdata/fuzz/FuzzSessionInbound.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/wire"
)

// Contracts the fuzzed session knows.
type fzEcho struct {
	Returns[fzEchoReply]
	N int
}
type fzEchoReply struct{ N int }
type fzFail struct {
	Returns[fzEchoReply]
	N int
}
type fzNote struct{ Text string }

func (fzEcho) MessageType() string      { return "fuzz.Echo" }
func (fzEchoReply) MessageType() string { return "fuzz.EchoReply" }
func (fzFail) MessageType() string      { return "fuzz.Fail" }
func (fzNote) MessageType() string      { return "fuzz.Note" }

const (
	fzMaxMessage = 64 << 10 // the session's MaxMessageSize
	fzSentinelID = 1<<63 + 12345
	fzWait       = 10 * time.Second // "at once", on a slow shared machine
	// An iteration may allocate fzAllocBase (a session, a pipe, the
	// handshake), a small multiple of its input, and per frame a small
	// multiple of MaxMessageSize: a compressed frame of a few bytes may
	// legitimately inflate to the limit, which gws buffers and the handler
	// decodes. What must never happen is an allocation sized by what a frame
	// claims rather than by the limit.
	fzAllocBase     = 4 << 20
	fzAllocPerFrame = 8 * fzMaxMessage
)

// fzLog fails the iteration on an Error-level record from gws: gws recovers
// panics in the callbacks netmsg gives it and only logs them.
type fzLog struct {
	mu  sync.Mutex
	bad []string
}

func (l *fzLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *fzLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.HasPrefix(r.Message, "gws:") {
		l.mu.Lock()
		l.bad = append(l.bad, r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *fzLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *fzLog) WithGroup(string) slog.Handler      { return l }

func (l *fzLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bad
	l.bad = nil
	return b
}

// fzHijacker is a ResponseWriter that hands ServeHTTP one end of a pipe.
type fzHijacker struct {
	h      http.Header
	conn   net.Conn
	status int
	body   bytes.Buffer
}

func (w *fzHijacker) Header() http.Header         { return w.h }
func (w *fzHijacker) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *fzHijacker) WriteHeader(code int)        { w.status = code }
func (w *fzHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(bufio.NewReader(w.conn), bufio.NewWriter(w.conn)), nil
}

type fzHarness struct {
	srv    *Server
	log    *fzLog
	opened chan *Session
}

func newFzHarness() *fzHarness {
	h := &fzHarness{log: &fzLog{}, opened: make(chan *Session, 1)}
	h.srv = NewServer(
		WithCompression(true),
		WithMaxMessageSize(fzMaxMessage),
		WithHeartbeat(0, 0),
		WithWriteTimeout(2*time.Second),
		WithDisconnectTimeout(time.Second),
		WithMailboxSize(16),
		WithSessionConcurrency(2),
		WithLogger(slog.New(h.log)),
		WithOnSessionOpen(func(s *Session) { h.opened <- s }),
	)
	// Each input checks that every goroutine the server started for its
	// session has exited: no parked dispatcher workers.
	h.srv.ep.workerIdle = 0
	AddRequestHandler(h.srv, func(ctx context.Context, s *Session, r fzEcho) (fzEchoReply, error) {
		return fzEchoReply{N: r.N}, nil
	})
	AddRequestHandler(h.srv, func(ctx context.Context, s *Session, r fzFail) (fzEchoReply, error) {
		switch r.N % 3 {
		case 0:
			return fzEchoReply{}, NewError(CodeNotFound, "no such thing")
		case 1:
			return fzEchoReply{}, errors.New("plain error")
		}
		panic("fuzz handler panic")
	})
	AddMessageHandler(h.srv, func(ctx context.Context, s *Session, m fzNote) {})
	return h
}

func (h *fzHarness) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), fzWait)
	defer cancel()
	return h.srv.Shutdown(ctx)
}

// fzFrames turns fuzz input into client frames (see the file comment).
func fzFrames(data []byte) (out []byte, frames int) {
	for len(data) >= 4 {
		frames++
		b0, b1 := data[0], data[1]
		n := int(binary.BigEndian.Uint16(data[2:4]))
		data = data[4:]
		n = min(n, len(data))
		out = fzAppendFrame(out, b0, b1&0x80 == 0, b1&3, data[:n])
		data = data[n:]
	}
	return out, frames
}

// fzAppendFrame appends one frame with first byte b0 and the payload, masked
// with a fixed key when mask is set, its length in the given form.
func fzAppendFrame(out []byte, b0 byte, mask bool, form byte, payload []byte) []byte {
	out = append(out, b0)
	var m byte
	if mask {
		m = 0x80
	}
	n := len(payload)
	switch {
	case form == 2 || (form != 1 && n > 0xffff):
		out = append(out, m|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	case form == 1 || n > 125:
		out = append(out, m|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, m|byte(n))
	}
	if !mask {
		return append(out, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// fzServerFrames reads the server's frames until the pipe closes. It reports
// on answered when the sentinel request gets an answer.
func fzServerFrames(br *bufio.Reader, answered chan<- struct{}) {
	var once sync.Once
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		rsv1, op := hdr[0]&0x40 != 0, hdr[0]&0x0f
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(br, hdr[:2]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(br, hdr[:8]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if n > 4*fzMaxMessage {
			return // a server frame over its own limit: the check below fails
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		if op != 2 {
			continue
		}
		if rsv1 {
			r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
			p, _ = io.ReadAll(io.LimitReader(r, 4*fzMaxMessage))
		}
		var env wire.Envelope
		if wire.Decode(p, &env) == nil && env.ID == fzSentinelID &&
			(env.Kind == wire.KindResponse || env.Kind == wire.KindError) {
			once.Do(func() { close(answered) })
		}
	}
}

// fzSentinel is the well-formed request sent after the fuzzed frames.
func fzSentinel() []byte {
	env := wire.AppendHeaderAndPayload(nil, wire.KindRequest, fzSentinelID, "fuzz.Echo", []byte(`{"N":7}`), 0, nil)
	return fzAppendFrame(nil, 0x82, true, 0, env)
}

func fzHandshake(t testing.TB, h *fzHarness) (net.Conn, *bufio.Reader, *Session) {
	t.Helper()
	cli, srvEnd := net.Pipe()
	req := httptest.NewRequest(http.MethodGet, "http://fuzz.invalid/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "netmsg.v1.json")
	req.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover; client_max_window_bits")
	w := &fzHijacker{h: http.Header{}, conn: srvEnd}
	served := make(chan struct{})
	go func() {
		defer close(served)
		h.srv.ServeHTTP(w, req)
	}()
	_ = cli.SetReadDeadline(time.Now().Add(fzWait))
	br := bufio.NewReader(cli)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = cli.Close()
		<-served
		t.Fatalf("handshake: %v (status %d %q)", err, w.status, w.body.String())
	}
	_ = resp.Body.Close()
	_ = cli.SetReadDeadline(time.Time{})
	<-served
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = cli.Close()
		t.Fatalf("handshake answered %s", resp.Status)
	}
	select {
	case s := <-h.opened:
		return cli, br, s
	case <-time.After(fzWait):
		_ = cli.Close()
		t.Fatal("no session opened")
		return nil, nil, nil
	}
}

// fzWaitGroup reports whether wg's counter reached zero within d.
func fzWaitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// run feeds data to a new session and checks the invariants. It returns
// whether the sentinel request was answered and how the session closed.
func (h *fzHarness) run(t *testing.T, data []byte) (answered bool, ce *CloseError) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	cli, br, s := fzHandshake(t, h)
	answer := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		fzServerFrames(br, answer)
	}()
	stream, frames := fzFrames(data)
	stream = append(stream, fzSentinel()...)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		_, _ = cli.Write(stream) // fails once the server has closed
	}()

	select {
	case <-answer:
	case <-s.Done():
	case <-time.After(fzWait):
		t.Errorf("the session neither answered a well-formed request nor closed within %v", fzWait)
	}
	select {
	case <-answer:
		answered = true
	default:
	}
	ce = s.cause.Load() // the reason recorded before we hang up, if any
	_ = cli.Close()
	<-writerDone
	<-readerDone
	select {
	case <-s.Done():
	case <-time.After(fzWait):
		t.Fatalf("the session did not close within %v after its peer went away", fzWait)
	}
	if s.Err() == nil {
		t.Errorf("closed session without a *CloseError")
	}
	if !fzWaitGroup(&h.srv.ep.wg, fzWait) {
		t.Fatalf("goroutines the server started for the session did not exit within %v", fzWait)
	}
	if n := h.srv.ep.active.Load(); n != 0 {
		t.Errorf("%d envelopes still counted as queued or running", n)
	}
	if n := h.srv.SessionCount(); n != 0 {
		t.Errorf("%d sessions still registered", n)
	}
	inflight, pending, queued := s.debugCounts()
	if inflight != 0 || pending != 0 || queued != 0 {
		t.Errorf("closed session holds %d in-flight requests, %d pending calls, %d queued envelopes", inflight, pending, queued)
	}
	if bad := h.log.take(); len(bad) > 0 {
		t.Errorf("gws recovered a panic in netmsg's callbacks: %s", bad[0])
	}

	runtime.ReadMemStats(&after)
	bound := uint64(fzAllocBase + 64*len(data) + fzAllocPerFrame*(frames+1))
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
		t.Errorf("one iteration allocated %d bytes for %d input bytes in %d frames (bound %d)", alloc, len(data), frames, bound)
	}
	return answered, ce
}

func FuzzSessionInbound(f *testing.F) {
	// A few seeds in code; more (and every crasher found) in testdata.
	frame := func(b0, b1 byte, payload []byte) []byte {
		out := []byte{b0, b1, byte(len(payload) >> 8), byte(len(payload))}
		return append(out, payload...)
	}
	req := wire.AppendHeaderAndPayload(nil, wire.KindRequest, 1, "fuzz.Echo", []byte(`{"N":1}`), 1000, map[string]string{"k": "v"})
	f.Add(frame(0x82, 0, req))
	f.Add(frame(0x82, 0, wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, "fuzz.Note", []byte(`{"Text":"hi"}`), 0, nil)))
	f.Add(append(frame(0x02, 0, req[:5]), frame(0x80, 0, req[5:])...))
	f.Add(frame(0x89, 0, []byte("ping")))

	h := newFzHarness()
	f.Cleanup(func() {
		if err := h.shutdown(); err != nil {
			f.Errorf("Shutdown: %v", err)
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		h.run(t, data)
	})
}

// TestFuzzSessionInboundHarness checks that the harness tells the outcomes
// apart: a well-formed request is answered, bad input closes the session
// with the right reason, and a compressed bomb is refused.
func TestFuzzSessionInboundHarness(t *testing.T) {
	h := newFzHarness()
	defer func() {
		if err := h.shutdown(); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	for _, tc := range []struct {
		seed     string
		answered bool
		reason   CloseReason // when not answered
	}{
		{"request", true, 0},
		{"request_handler_errors", true, 0},
		{"fragmented_request", true, 0},
		{"compressed_near_limit", true, 0},
		{"garbage", false, CloseProtocolError},
		{"text_frame", false, CloseProtocolError},
		{"unmasked", false, CloseProtocolError},
		{"compressed_bomb", false, CloseMessageTooLarge},
		{"close_normal", false, ClosePeerNormal},
	} {
		t.Run(tc.seed, func(t *testing.T) {
			data := fzReadSeed(t, tc.seed)
			answered, ce := h.run(t, data)
			if answered != tc.answered {
				t.Fatalf("answered = %v, want %v (close: %v)", answered, tc.answered, ce)
			}
			if !tc.answered && (ce == nil || ce.Reason != tc.reason) {
				t.Fatalf("closed with %v, want reason %v", ce, tc.reason)
			}
		})
	}
}

// fzReadSeed reads one []byte seed from testdata/fuzz/FuzzSessionInbound.
func fzReadSeed(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzSessionInbound", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimPrefix(string(b), "go test fuzz v1\n[]byte(")
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ")")
	u, err := strconv.Unquote(s)
	if err != nil {
		t.Fatalf("seed %s: %v", name, err)
	}
	return []byte(u)
}
