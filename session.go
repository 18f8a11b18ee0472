package netmsg

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// Session is one live connection, on either end. Both ends send messages and
// requests through it and receive them through the handlers of the Server or
// Client that owns it.
//
// All methods may be called concurrently. Inbound messages and requests of one
// session are handled one at a time in arrival order unless
// WithSessionConcurrency allows more; handlers never run on the goroutine that
// reads the socket, so responses and heartbeats are read while handlers work.
type Session struct {
	id     string
	ep     *endpoint
	conn   *gws.Conn
	ser    serializer.Serializer
	remote net.Addr
	ctx    context.Context
	cancel context.CancelCauseFunc

	closeErr atomic.Pointer[CloseError]
	done     chan struct{}
	reading  atomic.Bool   // the read loop has started; Close may wait for it
	readerID atomic.Uint64 // the read loop's goroutine, which Close must not wait on
	hardStop atomic.Bool   // closed without a handshake: write nothing more

	// Outbound queue: frames waiting for the one goroutine that writes.
	wmu       sync.Mutex
	wq        []*frame
	wspare    []*frame
	queued    int
	flushing  bool
	wstate    uint8 // writeOpen, writeClosing (only queued frames go out), writeClosed
	killTimer *time.Timer
	wdeadline time.Time // owned by the flushing goroutine

	// Requests this side sent, waiting for their answers.
	pmu     sync.Mutex
	pending map[uint64]*call
	pclosed bool
	nextID  uint64
	// Ids of calls whose caller gave up, so that their answers, when they
	// come, are counted as late rather than unknown. Bounded: the oldest
	// are forgotten first.
	abandoned     map[uint64]struct{}
	abandonedRing []uint64
	abandonedNext int

	// Requests the peer sent that are queued or running, for CANCEL.
	imu      sync.Mutex
	inflight map[uint64]context.CancelFunc

	// Mailbox of inbound messages and requests.
	mmu     sync.Mutex
	mcond   sync.Cond
	mq      []*inbound
	mhead   int
	running int
	mstop   bool
	mheld   bool // OnSessionOpen runs: queue, but do not dispatch yet

	opened chan struct{} // closed when OnSessionOpen has returned; nil without one

	// Liveness.
	nc        *sessionConn // counts the bytes received
	rxBlocked atomic.Bool  // the read loop waits for room in the mailbox
	rtt       atomic.Int64
	hb        heartbeat
}

const (
	writeOpen uint8 = iota
	writeClosing
	writeClosed
)

var (
	sessionSeq    atomic.Uint64
	sessionPrefix = strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
)

func newSession(ep *endpoint, conn *gws.Conn, ser serializer.Serializer, base context.Context) *Session {
	s := &Session{
		id:     sessionPrefix + "-" + strconv.FormatUint(sessionSeq.Add(1), 36),
		ep:     ep,
		conn:   conn,
		ser:    ser,
		remote: conn.RemoteAddr(),
		nc:     conn.NetConn().(*sessionConn),
		done:   make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancelCause(base)
	s.mcond.L = &s.mmu
	conn.Session().(*sessionSlot).s = s
	return s
}

// ID returns an identifier unique within this process.
func (s *Session) ID() string { return s.id }

// Context returns the session's base context: it carries the values the
// server's Authorize function returned and is cancelled, with the
// *CloseError as its cause, when the session closes.
func (s *Session) Context() context.Context { return s.ctx }

// RemoteAddr returns the peer's network address.
func (s *Session) RemoteAddr() net.Addr { return s.remote }

// Serializer returns the serializer negotiated for this session.
func (s *Session) Serializer() serializer.Serializer { return s.ser }

// RTT returns the round-trip time of the last heartbeat, or 0 before the first.
func (s *Session) RTT() time.Duration { return time.Duration(s.rtt.Load()) }

// Done returns a channel that is closed when the session has closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session closed, or nil while it is open.
func (s *Session) Err() *CloseError {
	select {
	case <-s.done:
		return s.closeErr.Load()
	default:
		return nil
	}
}

// Close closes the session gracefully: frames already queued are written,
// then a close frame 1000 with reason, and Close waits up to the
// DisconnectTimeout for the peer to answer before it drops the connection.
// Handlers still running see their ctx cancelled. Close is idempotent.
func (s *Session) Close(reason string) error {
	s.closeWith(&CloseError{Reason: CloseNormal, Code: closeCodeNormal, Text: reason}, true)
	s.waitClosed()
	return nil
}

// Kick closes the session with close code 1008 (ClosePolicyViolation): a
// client receiving it does not reconnect.
func (s *Session) Kick(reason string) error {
	s.closeWith(&CloseError{Reason: ClosePolicyViolation, Code: closeCodePolicy, Text: reason}, true)
	s.waitClosed()
	return nil
}

func (s *Session) waitClosed() {
	if !s.reading.Load() {
		return // the read loop has not started (Close from OnSessionOpen)
	}
	if id := s.readerID.Load(); id != 0 && id == goroutineID() {
		// Called on the read loop (OnError, OnDisconnect): it cannot read
		// the peer's answer while it waits here, so do not wait.
		return
	}
	t := time.NewTimer(s.ep.cfg.disconnectTimeout + time.Second)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
	}
}

// Send sends a one-way message. It returns once the message is queued for
// writing (it may write it itself when nothing else is being written), or
// with an error if msg cannot be encoded, is larger than MaxMessageSize, or
// the session is closed; nothing is written then. ctx is checked before
// encoding; a message once queued is not recalled.
func (s *Session) Send(ctx context.Context, msg any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := s.encode(wire.KindMessage, 0, TypeName(msg), msg, 0, outgoingMetadata(ctx))
	if err != nil {
		return err
	}
	return s.enqueue(f, true)
}

func (s *Session) sessionFor(context.Context, time.Time) (*Session, error) { return s, nil }

func (s *Session) defaultRequestTimeout() time.Duration { return s.ep.cfg.requestTimeout }

// closedErr is what calls on a closed or closing session return.
func (s *Session) closedErr() error {
	if ce := s.closeErr.Load(); ce != nil {
		return ce
	}
	return ErrClosed
}

// ---- encoding ----

// frame is one encoded WebSocket frame payload waiting to be written. A
// broadcast frame is shared by many sessions; refs counts them.
type frame struct {
	op   gws.Opcode
	b    []byte
	refs atomic.Int32
}

var framePool = sync.Pool{New: func() any { return &frame{b: make([]byte, 0, 512)} }}

func getFrame(op gws.Opcode) *frame {
	f := framePool.Get().(*frame)
	f.op = op
	f.refs.Store(1)
	return f
}

func (f *frame) release() {
	if f.refs.Add(-1) != 0 {
		return
	}
	if cap(f.b) > 64<<10 {
		return // let big buffers go
	}
	f.b = f.b[:0]
	framePool.Put(f)
}

var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// encode builds the frame for an envelope carrying v.
func (s *Session) encode(kind wire.Kind, id uint64, name string, v any, timeoutMs uint64, md map[string]string) (*frame, error) {
	return encodeFrame(s.ser, s.ep.cfg.maxMessageSize, kind, id, name, v, timeoutMs, md)
}

func encodeFrame(ser serializer.Serializer, limit int, kind wire.Kind, id uint64, name string, v any, timeoutMs uint64, md map[string]string) (*frame, error) {
	if len(md) > wire.MaxMetadataEntries {
		return nil, fmt.Errorf("netmsg: cannot send %s with %d metadata entries: at most %d", name, len(md), wire.MaxMetadataEntries)
	}
	var payload []byte
	var pb *[]byte
	var err error
	if am, ok := ser.(serializer.AppendMarshaler); ok {
		pb = payloadPool.Get().(*[]byte)
		payload, err = am.MarshalAppend((*pb)[:0], v)
	} else {
		payload, err = ser.Marshal(v)
	}
	if err != nil {
		if pb != nil {
			payloadPool.Put(pb)
		}
		return nil, fmt.Errorf("netmsg: cannot encode %s with the %s serializer: %w", name, ser.Name(), err)
	}
	f := getFrame(gws.OpcodeBinary)
	f.b = wire.AppendHeaderAndPayload(f.b[:0], kind, id, name, payload, timeoutMs, md)
	if pb != nil {
		if cap(payload) <= 64<<10 {
			*pb = payload[:0]
		}
		payloadPool.Put(pb)
	}
	if len(f.b) > limit {
		n := len(f.b)
		f.release()
		return nil, fmt.Errorf("%w: %s encodes to %d bytes, over the limit of %d", ErrMessageTooLarge, name, n, limit)
	}
	return f, nil
}

// ---- writing ----

// flushHandoff bounds how many frames a caller that writes inline writes for
// others before it hands the rest to a goroutine of their own.
const flushHandoff = 64

// enqueue queues f for writing. With inline set and no write in progress the
// caller writes the queue itself; otherwise a goroutine does.
func (s *Session) enqueue(f *frame, inline bool) error {
	n := len(f.b)
	s.wmu.Lock()
	if s.wstate != writeOpen {
		s.wmu.Unlock()
		f.release()
		return s.closedErr()
	}
	if s.queued > 0 && s.queued+n > s.ep.cfg.maxQueuedBytes {
		would := s.queued + n
		s.wmu.Unlock()
		f.release()
		ce := &CloseError{Reason: CloseSlowConsumer, Code: closeCodeTryAgainLater,
			Text: "outbound queue full", Err: fmt.Errorf("netmsg: %d bytes queued, limit %d", would, s.ep.cfg.maxQueuedBytes)}
		s.abort(ce)
		return s.closedErr()
	}
	s.wq = append(s.wq, f)
	s.queued += n
	if s.flushing {
		s.wmu.Unlock()
		return nil
	}
	s.flushing = true
	s.wmu.Unlock()
	if inline {
		s.flush(flushHandoff)
	} else {
		s.goFlush()
	}
	return nil
}

// enqueueControl queues a ping or pong; it never writes on the caller's goroutine.
func (s *Session) enqueueControl(op gws.Opcode, payload []byte) {
	f := getFrame(op)
	f.b = append(f.b[:0], payload...)
	_ = s.enqueue(f, false)
}

func (s *Session) goFlush() {
	s.ep.wg.Add(1)
	go func() {
		defer s.ep.wg.Done()
		s.flush(0)
	}()
}

// flush writes queued frames until the queue is empty. The caller must have
// set s.flushing. A limit > 0 hands the rest to a new goroutine after that
// many frames.
func (s *Session) flush(limit int) {
	written := 0
	for {
		s.wmu.Lock()
		if len(s.wq) == 0 || s.wstate == writeClosed {
			s.flushing = false
			s.wmu.Unlock()
			return
		}
		if limit > 0 && written >= limit {
			s.wmu.Unlock()
			s.goFlush()
			return
		}
		batch := s.wq
		s.wq, s.wspare = s.wspare, nil
		s.wmu.Unlock()

		var err error
		n := 0
		for i, f := range batch {
			if err == nil {
				err = s.write(f)
			}
			n += len(f.b)
			f.release()
			batch[i] = nil
		}
		written += len(batch)

		s.wmu.Lock()
		s.queued -= n
		if cap(batch) <= 4*flushHandoff {
			s.wspare = batch[:0]
		}
		if err != nil {
			s.flushing = false
			s.wmu.Unlock()
			s.onWriteError(err)
			return
		}
		s.wmu.Unlock()
	}
}

// write writes one frame with the write deadline. Only the flushing goroutine
// calls it. The deadline is refreshed when an eighth of it has passed, so a
// stuck peer is detected within 7/8 to 8/8 of WriteTimeout.
func (s *Session) write(f *frame) error {
	if f.op == gws.OpcodeCloseConnection {
		_ = s.conn.NetConn().SetWriteDeadline(time.Now().Add(s.ep.cfg.disconnectTimeout))
		s.wdeadline = time.Time{}
		// WriteClose, not WriteMessage: it marks the connection closed, so
		// gws does not send a second close frame when the peer answers.
		return s.conn.WriteClose(uint16(f.b[0])<<8|uint16(f.b[1]), f.b[2:])
	}
	if s.hardStop.Load() {
		// Closed at once: the short deadline set for the close frame must
		// not be pushed out by the refresh below.
		return net.ErrClosed
	}
	wt := s.ep.cfg.writeTimeout
	if now := time.Now(); now.Sub(s.wdeadline) > wt/8 {
		_ = s.conn.NetConn().SetWriteDeadline(now.Add(wt))
		s.wdeadline = now
	}
	return s.conn.WriteMessage(f.op, f.b)
}

func (s *Session) onWriteError(err error) {
	ce := classifyGwsClose(err, s.ep.client)
	if ce.Reason == CloseNetworkError {
		ce.Remote = false
	}
	s.abort(ce)
}

// ---- closing ----

// closeWith starts closing the session for the reason in ce; the first reason
// recorded wins. graceful writes the frames already queued and then a close
// frame, and drops the connection if the peer has not answered within the
// DisconnectTimeout; otherwise the close frame is written at once (bounded by
// a short deadline) and the connection dropped.
func (s *Session) closeWith(ce *CloseError, graceful bool) {
	if !s.closeErr.CompareAndSwap(nil, ce) {
		return
	}
	s.stopMailbox()
	// Handlers' contexts are cancelled and pending calls failed (released)
	// only once the write state refuses new frames, so that nothing a
	// cancelled handler answers can slip out before the close frame.
	released := func() { s.cancel(ce); s.failPending(ce) }
	payload := make([]byte, 2, 2+len(ce.Text))
	payload[0], payload[1] = byte(ce.Code>>8), byte(ce.Code)
	payload = append(payload, closeText(ce.Text)...)
	if !graceful {
		s.hardStop.Store(true)
		s.wmu.Lock()
		s.wstate = writeClosed
		s.wmu.Unlock()
		released()
		// Bound the close frame's write (and any write in progress) so a peer
		// that does not read cannot hold this up.
		_ = s.conn.NetConn().SetWriteDeadline(time.Now().Add(min(time.Second, s.ep.cfg.writeTimeout)))
		_ = s.conn.WriteClose(ce.Code, payload[2:])
		return
	}
	f := getFrame(gws.OpcodeCloseConnection)
	f.b = append(f.b[:0], payload...)
	s.wmu.Lock()
	if s.wstate != writeOpen {
		s.wmu.Unlock()
		f.release()
		released()
		return
	}
	s.wstate = writeClosing
	s.wq = append(s.wq, f)
	s.killTimer = time.AfterFunc(s.ep.cfg.disconnectTimeout, func() { _ = s.conn.NetConn().Close() })
	start := !s.flushing
	s.flushing = true
	s.wmu.Unlock()
	released()
	if start {
		s.goFlush()
	}
}

// abort records ce (if no reason was recorded before) and drops the
// connection without a close handshake.
func (s *Session) abort(ce *CloseError) {
	if !s.closeErr.CompareAndSwap(nil, ce) {
		ce = s.closeErr.Load()
	}
	s.hardStop.Store(true)
	s.stopMailbox()
	s.wmu.Lock()
	s.wstate = writeClosed
	s.wmu.Unlock()
	s.cancel(ce)
	s.failPending(ce)
	_ = s.conn.NetConn().Close()
}

// protocolError closes the session because the peer sent something malformed.
func (s *Session) protocolError(err error) {
	s.protocolErrorText(err, "malformed envelope")
}

func (s *Session) protocolErrorText(err error, text string) {
	// Record the reason first: OnError may close the session itself.
	s.closeWith(&CloseError{Reason: CloseProtocolError, Code: closeCodeProtocol, Text: text, Err: err}, false)
	s.ep.reportError(s, err)
}

// closeText cuts a close reason to the 123 bytes a close frame has room for,
// at a character boundary: a reason that is not valid UTF-8 fails the
// connection in browsers.
func closeText(text string) string {
	const room = 123 // control frames carry 125 bytes, 2 of them the code
	if len(text) <= room {
		return text
	}
	cut := room
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut]
}

// failPending fails every call waiting on the session with ce, at once, and
// refuses new ones: a closing session answers nothing more.
func (s *Session) failPending(ce *CloseError) {
	s.pmu.Lock()
	pending := s.pending
	s.pending, s.pclosed = nil, true
	s.pmu.Unlock()
	for _, c := range pending {
		c.ch <- callResult{err: ce}
	}
}

// onClose runs once, on the read loop, when gws has closed the connection. It
// releases everything the session holds and reports the close.
func (s *Session) onClose(err error) {
	ce := classifyGwsClose(err, s.ep.client)
	if !s.closeErr.CompareAndSwap(nil, ce) {
		ce = s.closeErr.Load()
	}
	s.cancel(ce)
	s.hb.stop()

	s.wmu.Lock()
	s.wstate = writeClosed
	drop := s.wq
	s.wq, s.wspare, s.queued = nil, nil, 0
	if s.killTimer != nil {
		s.killTimer.Stop()
	}
	s.wmu.Unlock()
	for _, f := range drop {
		f.release()
	}

	s.failPending(ce)

	s.stopMailbox()
	s.mmu.Lock()
	queued := s.mq[s.mhead:]
	s.mq, s.mhead = nil, 0
	s.mmu.Unlock()
	for _, in := range queued {
		s.dropInbound(in)
	}
	s.ep.active.Add(-int64(len(queued)))

	s.ep.sessionEnded(s, ce)
}

// ---- requests this side sends ----

type callResult struct {
	in  *inbound
	err error
}

type call struct{ ch chan callResult }

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan callResult, 1)} }}

var timerPool sync.Pool

// getTimer returns a stopped-and-reset timer from the pool (Go ≥ 1.23 timer
// semantics: Reset never leaves a stale value in C).
func getTimer(d time.Duration) *time.Timer {
	if t, ok := timerPool.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop()
	timerPool.Put(t)
}

// call sends a request and waits for its answer until ctx ends or, when
// deadline is not zero, the deadline passes. The returned inbound holds the
// response payload; the caller recycles it.
func (s *Session) call(ctx context.Context, req any, deadline time.Time) (*inbound, error) {
	name := TypeName(req)
	if err := ctx.Err(); err != nil {
		return nil, callError(err, name) // over before it began: send nothing
	}
	var timeoutMs uint64
	var expired <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		timeoutMs = uint64(max(time.Until(dl).Milliseconds(), 1))
	} else if !deadline.IsZero() {
		d := time.Until(deadline)
		timeoutMs = uint64(max(d.Milliseconds(), 1))
		t := getTimer(max(d, time.Millisecond))
		defer putTimer(t)
		expired = t.C
	}
	c := callPool.Get().(*call)
	s.pmu.Lock()
	if s.pclosed {
		s.pmu.Unlock()
		callPool.Put(c)
		return nil, s.closedErr()
	}
	s.nextID++
	id := s.nextID
	if s.pending == nil {
		s.pending = make(map[uint64]*call)
	}
	s.pending[id] = c
	s.pmu.Unlock()

	f, err := s.encode(wire.KindRequest, id, name, req, timeoutMs, outgoingMetadata(ctx))
	if err == nil {
		err = s.enqueue(f, true)
	}
	if err != nil {
		if s.removePending(id) {
			callPool.Put(c)
			return nil, err
		}
		r := <-c.ch // the session closed meanwhile and answered the call
		callPool.Put(c)
		return nil, r.err
	}

	var cause error
	select {
	case r := <-c.ch:
		callPool.Put(c)
		return r.result()
	case <-ctx.Done():
		cause = ctx.Err()
	case <-expired:
		cause = context.DeadlineExceeded
	}
	if s.abandon(id) {
		callPool.Put(c)
		s.sendCancel(id)
		return nil, callError(cause, name)
	}
	r := <-c.ch // an answer is being delivered; it is late
	callPool.Put(c)
	if r.in != nil {
		s.ep.lateResponses.Add(1)
		r.in.recycle()
	}
	if r.err != nil {
		return nil, r.err
	}
	return nil, callError(cause, name)
}

func (r callResult) result() (*inbound, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.in.env.Kind == wire.KindError {
		e := &Error{Code: Code(r.in.env.ErrCode), Message: string(r.in.env.ErrMsg)}
		r.in.recycle()
		return nil, e
	}
	return r.in, nil
}

// callError is what a call that ended by its deadline or cancel returns; it
// matches context.DeadlineExceeded or context.Canceled with errors.Is.
func callError(cause error, name string) error {
	if cause == context.DeadlineExceeded {
		return &Error{Code: CodeDeadlineExceeded, Message: "request " + name + " timed out"}
	}
	return &Error{Code: CodeCanceled, Message: "request " + name + " canceled"}
}

func (s *Session) removePending(id uint64) bool {
	s.pmu.Lock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	s.pmu.Unlock()
	return ok
}

// maxAbandoned bounds how many given-up call ids a session remembers.
const maxAbandoned = 1024

// abandon removes the pending call id because its caller gave up, and
// remembers the id so a late answer is told apart from an unknown one. It
// reports whether the call was still pending.
func (s *Session) abandon(id uint64) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if _, ok := s.pending[id]; !ok {
		return false
	}
	delete(s.pending, id)
	if s.abandoned == nil {
		s.abandoned = make(map[uint64]struct{})
	}
	if len(s.abandonedRing) < maxAbandoned {
		s.abandonedRing = append(s.abandonedRing, id)
	} else {
		delete(s.abandoned, s.abandonedRing[s.abandonedNext])
		s.abandonedRing[s.abandonedNext] = id
		s.abandonedNext = (s.abandonedNext + 1) % maxAbandoned
	}
	s.abandoned[id] = struct{}{}
	return true
}

func (s *Session) sendCancel(id uint64) {
	f := getFrame(gws.OpcodeBinary)
	f.b = wire.AppendHeaderAndPayload(f.b[:0], wire.KindCancel, id, "", nil, 0, nil)
	_ = s.enqueue(f, true)
}

// deliver hands a RESPONSE or ERROR to the call waiting for it.
func (s *Session) deliver(in *inbound) {
	id := in.env.ID
	s.pmu.Lock()
	c := s.pending[id]
	late := false
	if c != nil {
		delete(s.pending, id)
	} else if _, late = s.abandoned[id]; late {
		delete(s.abandoned, id) // its slot in the ring is reused in turn
	}
	s.pmu.Unlock()
	if c == nil {
		if late {
			s.ep.lateResponses.Add(1)
		} else {
			s.ep.unknownResponses.Add(1)
		}
		in.recycle()
		return
	}
	c.ch <- callResult{in: in}
}

// sessionSlot is the gws session storage of a connection; it points back to
// the Session so the read loop finds it without a map lookup.
type sessionSlot struct{ s *Session }

func (*sessionSlot) Len() int                     { return 0 }
func (*sessionSlot) Load(string) (any, bool)      { return nil, false }
func (*sessionSlot) Delete(string)                {}
func (*sessionSlot) Store(string, any)            {}
func (*sessionSlot) Range(func(string, any) bool) {}
