package netmsg

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/transport"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// Session is one live connection, on either end. Both ends send messages and
// requests through it and receive them through the handlers of the Server or
// Client that owns it.
//
// All methods may be called concurrently, and none of them waits on the
// peer's socket: Send encodes and queues, and the session's writer does the
// rest. Inbound messages and requests of one session are handled one at a
// time in arrival order unless WithSessionConcurrency allows more; no handler
// stalls the goroutine that reads the socket (see WithInlineHandlers).
//
// A session is made of four parts, each with its own small state and lock:
// the outbound queue (outbound.go), the mailbox of inbound envelopes
// (mailbox.go), the calls waiting for answers (calls.go) and the heartbeat
// (heartbeat.go). They all observe one close state, kept here: the first
// cause recorded wins, and closing, closed and drained happen in that order,
// once each.
//
// An idle session is mostly what it holds here, so the struct is kept small
// (TestSessionSize pins it): whatever only a busy or closing session needs is
// made on first use.
type Session struct {
	id   string
	ep   *endpoint
	conn *transport.Conn
	ser  serializer.Serializer

	// The session's base context (Context) is made on first use, from
	// base: a session that never handles anything holds none.
	base    context.Context
	lazyCtx atomic.Pointer[sessionCtx]

	// The one close state. cause is set once, by the first close. done is
	// the channel Done returns, made when first asked for (doneChan) and
	// closed once the connection has ended (the read loop returned); once
	// that has happened it is closedDone.
	cause atomic.Pointer[CloseError]
	done  atomic.Pointer[chan struct{}]
	began atomic.Int64 // when closing began, unix nanoseconds

	out   outbound
	mbox  mailbox
	calls calls
	hb    heartbeat
	cbq   callbackQueue
	rtt   atomic.Int64
	// rl is the state of handlers run inline on the read loop (inline.go),
	// made by the read loop on first use.
	rl atomic.Pointer[readLoop]

	// ext holds what other parts of the library keep per session (group
	// membership, typed values; key.go): nil until first used, released
	// once the session has drained and its close callbacks have run.
	ext atomic.Pointer[sessionExt]
}

var (
	sessionSeq    atomic.Uint64
	sessionPrefix = strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
)

// newSessionID returns an id unique in this process and, with overwhelming
// likelihood, among the processes started at different times.
func newSessionID() string {
	return sessionPrefix + "-" + strconv.FormatUint(sessionSeq.Add(1), 36)
}

func newSession(ep *endpoint, id string, conn *transport.Conn, ser serializer.Serializer, base context.Context) *Session {
	s := &Session{
		id:   id,
		ep:   ep,
		conn: conn,
		ser:  ser,
	}
	s.base = base
	s.out.init(s)
	s.mbox.init(s)
	s.cbq.init(ep)
	return s
}

// ID returns the session's identifier. Both ends see the same id: the server
// makes it and tells the client in the handshake.
func (s *Session) ID() string { return s.id }

// Context returns the session's base context: it carries the values the
// server's Authorize function returned (none without WithAuthorize) and is
// cancelled, with the *CloseError as its cause, as soon as the session
// begins to close.
func (s *Session) Context() context.Context { return s.context() }

// sessionCtx is a session's base context and its cancel function.
type sessionCtx struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// context returns the session's base context, making it on first use.
func (s *Session) context() context.Context {
	if sc := s.lazyCtx.Load(); sc != nil {
		return sc.ctx
	}
	ctx, cancel := context.WithCancelCause(s.base)
	if !s.lazyCtx.CompareAndSwap(nil, &sessionCtx{ctx, cancel}) {
		cancel(nil)
		return s.lazyCtx.Load().ctx
	}
	// A close that began before the context existed did not cancel it.
	if ce := s.cause.Load(); ce != nil {
		cancel(ce)
	}
	return ctx
}

// RemoteAddr returns the peer's network address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Serializer returns the serializer negotiated for this session.
func (s *Session) Serializer() serializer.Serializer { return s.ser }

// RTT returns the round-trip time of the last heartbeat, or 0 before the first.
func (s *Session) RTT() time.Duration { return time.Duration(s.rtt.Load()) }

// Done returns a channel that is closed when the connection has ended.
//
// A handler waiting on it from the read loop hands the reading to another
// goroutine first (see WithInlineHandlers).
func (s *Session) Done() <-chan struct{} {
	s.handoffNow()
	return s.doneChan()
}

// closedDone is what a session's done becomes once its connection has ended.
var closedDone = func() *chan struct{} { ch := make(chan struct{}); close(ch); return &ch }()

// doneChan returns the channel closed when the connection has ended, making
// it on first use: most sessions are never asked.
func (s *Session) doneChan() chan struct{} {
	if p := s.done.Load(); p != nil {
		return *p
	}
	ch := make(chan struct{})
	if s.done.CompareAndSwap(nil, &ch) {
		return ch
	}
	return *s.done.Load() // made by another caller, or the connection has ended
}

// markDone records that the connection has ended and closes the channel
// Done returned, if it was asked for.
func (s *Session) markDone() {
	if p := s.done.Swap(closedDone); p != nil && p != closedDone {
		close(*p)
	}
}

// isDone reports whether the connection has ended.
func (s *Session) isDone() bool { return s.done.Load() == closedDone }

// Err returns why the session closed, or nil while it is open.
func (s *Session) Err() *CloseError {
	if !s.isDone() {
		return nil
	}
	return s.cause.Load()
}

// Close closes the session gracefully: frames already queued are written,
// then a close frame 1000 with reason, and Close waits up to the
// DisconnectTimeout for the peer to answer before it drops the connection.
// Handlers see their ctx cancelled at once; messages and requests that had
// arrived before Close are still handed to their handlers (see the README,
// "Closing"). Close is idempotent and may be called from handlers and
// callbacks.
func (s *Session) Close(reason string) error {
	s.closeWith(&CloseError{Reason: CloseNormal, Code: closeCodeNormal, Text: reason}, closeGraceful)
	s.waitDone()
	return nil
}

// Kick closes the session with close code 1008 (ClosePolicyViolation): a
// client receiving it does not reconnect.
func (s *Session) Kick(reason string) error {
	s.closeWith(&CloseError{Reason: ClosePolicyViolation, Code: closeCodePolicy, Text: reason}, closeGraceful)
	s.waitDone()
	return nil
}

// waitDone waits for the connection to end. The graceful close bounds that
// by DisconnectTimeout (then the connection is dropped); the extra second
// only guards against a bug.
func (s *Session) waitDone() {
	s.handoffNow() // a handler of s, inline, would wait for itself
	t := time.NewTimer(s.ep.cfg.disconnectTimeout + time.Second)
	defer t.Stop()
	select {
	case <-s.doneChan():
	case <-t.C:
	}
}

// Send sends a one-way message. It encodes msg, queues it and returns; it
// never waits for the socket. It fails if ctx has ended, if msg cannot be
// encoded or is larger than MaxMessageSize, or if the session is closed or
// closing (then with its *CloseError). A session whose outbound queue
// overflows is closed as a slow consumer and Send returns that *CloseError.
func (s *Session) Send(ctx context.Context, msg any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.ep.ix != nil {
		return s.sendIntercepted(ctx, msg)
	}
	return s.send(ctx, msg)
}

// send is Send past its interceptors.
func (s *Session) send(ctx context.Context, msg any) error {
	f, err := s.encode(wire.KindMessage, 0, TypeName(msg), msg, 0, outgoingMetadata(ctx))
	if err != nil {
		return err
	}
	return s.out.push(f)
}

func (s *Session) sessionFor(context.Context, time.Time) (*Session, error) { return s, nil }

func (s *Session) defaultRequestTimeout() time.Duration { return s.ep.cfg.requestTimeout }

// closedErr is what calls on a closed or closing session return.
func (s *Session) closedErr() error {
	if ce := s.cause.Load(); ce != nil {
		return ce
	}
	return ErrClosed
}

// isClosing reports whether the session has begun to close.
func (s *Session) isClosing() bool { return s.cause.Load() != nil }

// encode builds the frame for an envelope carrying v.
func (s *Session) encode(kind wire.Kind, id uint64, name string, v any, timeoutMs uint64, md map[string]string) (*frame, error) {
	return encodeFrame(s.ser, s.ep.cfg.maxMessageSize, kind, id, name, v, timeoutMs, md)
}

// ---- the one close state ----

// closeMode says how a close proceeds.
type closeMode uint8

const (
	// closeGraceful writes what is queued, then a close frame, and waits up
	// to DisconnectTimeout for the peer's answer (Close, Kick, Shutdown).
	closeGraceful closeMode = iota
	// closeHard drops what is queued, sends a close frame if the socket takes
	// it within a second, and drops the connection (protocol errors, slow
	// consumers, limits).
	closeHard
	// closeDrop drops the connection without a close frame (connection lost).
	closeDrop
	// closeEnded records a close the connection already made: the peer's
	// close frame or a failed read. Nothing is left to write.
	closeEnded
)

// closeWith is where every close of a session begins. The first call records
// ce as the cause; every part of the session then sees the session closing:
// handler contexts are cancelled, pending calls fail with ce at once, the
// mailbox takes nothing new (what arrived before still reaches its handlers)
// and the outbound queue refuses new frames. A later call cannot change the
// cause but can make a graceful close harder (a write that fails while the
// close frame is waiting).
func (s *Session) closeWith(ce *CloseError, mode closeMode) {
	if !s.cause.CompareAndSwap(nil, ce) {
		if mode != closeGraceful {
			s.out.drop()
		}
		return
	}
	s.began.Store(time.Now().UnixNano())
	// The outbound queue refuses new frames first, so that nothing a
	// cancelled handler answers can slip out before the close frame.
	switch mode {
	case closeGraceful:
		s.out.closeGracefully(ce)
	case closeHard:
		s.out.closeHard(ce)
	case closeDrop:
		s.out.drop()
	case closeEnded:
		s.out.stop()
	}
	s.mbox.closeBegan()
	s.calls.fail(ce)
	if sc := s.lazyCtx.Load(); sc != nil {
		sc.cancel(ce) // else context makes it cancelled
	}
}

// abort closes the session at once for a reason of this side's (slow
// consumer, connection lost): no close handshake.
func (s *Session) abort(ce *CloseError) { s.closeWith(ce, closeDrop) }

// protocolError closes the session because the peer sent something malformed.
func (s *Session) protocolError(err error, text string) {
	s.closeWith(&CloseError{Reason: CloseProtocolError, Code: closeCodeProtocol, Text: text, Err: err}, closeHard)
	s.ep.reportError(s, err)
}

// ended runs once, on the read loop, when the connection has ended. It
// records a cause if none was (the peer closed or the link failed), releases
// what the connection held and closes Done; the mailbox drains on its own
// and the close is reported to the owner once it has.
func (s *Session) ended(err error) {
	peer := classifyClose(err, s.ep.client)
	s.closeWith(peer, closeEnded)
	ce := s.cause.Load()
	if ce != peer && peer.Remote && peer.Code != closeCodeAbnormal && !ce.Remote && !s.conn.CloseSent() &&
		(ce.Reason == CloseNormal || ce.Reason == CloseServerShutdown || ce.Reason == ClosePolicyViolation) {
		// This side began a graceful close, but the peer's close frame
		// arrived before this side's could be written: the peer closed
		// first, and that is what the session reports.
		s.cause.Store(peer)
		ce = peer
	}
	s.stopHeartbeat()
	s.out.release()
	if s.rl.Load() != nil {
		s.ep.inl.remove(s)
	}
	s.ep.detach(s, ce)
	s.markDone()
	s.mbox.whenDrained(func() { s.ep.sessionClosed(s, ce) })
}

// drainDeadline is when the inbound drain of a closing session gives up.
func (s *Session) drainDeadline() time.Time {
	return time.Unix(0, s.began.Load()).Add(s.ep.cfg.disconnectTimeout)
}

// readLoopPanicked ends a session whose read loop panicked inside gws (see
// transport.Conn.ReadLoop): the session's own close path runs instead of
// gws's OnClose, which never comes.
func (s *Session) readLoopPanicked(r any) {
	err := fmt.Errorf("netmsg: the WebSocket reader failed on the peer's input: %v", r)
	ce := &CloseError{Reason: CloseProtocolError, Code: closeCodeProtocol, Text: "malformed frame", Err: err}
	s.closeWith(ce, closeEnded)
	s.ep.reportError(s, err)
	// This is the read loop, and the writer is stopped: tell the peer why,
	// bounded by a short deadline, before the connection is dropped.
	if s.cause.Load() == ce {
		s.conn.SetWriteDeadline(time.Now().Add(min(time.Second, s.ep.cfg.writeTimeout)))
		_ = s.conn.WriteClose(ce.Code, []byte(ce.Text))
	}
	s.conn.Kill()
	s.ended(s.closedErr())
}

// debugCounts reports what a session still holds, for tests.
func (s *Session) debugCounts() (inflight, pending, queued int) {
	return s.mbox.inflightLen(), s.calls.len(), s.mbox.queuedLen()
}

// lazyCond is a sync.Cond made on the first Wait: a mailbox's read loop
// rarely has to wait for room, and a sync.Cond is 56 bytes of every session.
// All its methods are called with L held.
type lazyCond struct {
	L *sync.Mutex
	c *sync.Cond
}

func (lc *lazyCond) Wait() {
	if lc.c == nil {
		lc.c = sync.NewCond(lc.L)
	}
	lc.c.Wait()
}

func (lc *lazyCond) Signal() {
	if lc.c != nil {
		lc.c.Signal()
	}
}

func (lc *lazyCond) Broadcast() {
	if lc.c != nil {
		lc.c.Broadcast()
	}
}
