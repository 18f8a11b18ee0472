package netmsg

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/transport"
	"github.com/netmsg/netmsg/internal/wire"
)

// inbound is one received envelope. env aliases msg's pooled buffer, so msg is
// closed (returned to gws's pool) only once the payload has been decoded.
type inbound struct {
	msg  *transport.Message
	env  wire.Envelope
	ctx  context.Context // a message handler's context
	hctx *handlerCtx     // a request handler's, once its handler starts (bindHandlerCtx)
	cost int             // what it holds in memory, counted against MailboxBytes

	deadline int64  // a request's deadline (unix nanoseconds), 0: none
	run      uint64 // the inline run it is handled in, 0: on a dispatcher

	// registered: the request is in the mailbox's inflight table (CANCEL
	// finds it). A request run inline is registered only if handed off.
	registered bool
}

// inboundOverhead is what an envelope costs beyond its frame buffer: the
// inbound, its decoded view and a request's context.
const inboundOverhead = 256

var inboundPool = sync.Pool{New: func() any { return new(inbound) }}

// closeMsg gives the frame's buffer back to gws; env's slices are invalid after.
func (in *inbound) closeMsg() {
	if in.msg != nil {
		_ = in.msg.Close()
		in.msg = nil
	}
}

// recycle releases everything the inbound holds and puts it back in the pool.
func (in *inbound) recycle() {
	in.closeMsg()
	if in.hctx != nil {
		in.hctx.cancel() // the handler has returned
	}
	md := in.env.Metadata[:0]
	*in = inbound{}
	in.env.Metadata = md
	inboundPool.Put(in)
}

// mailbox holds a session's inbound messages and requests until a dispatcher
// handles them, bounded in count (MailboxSize) and in bytes (MailboxBytes):
// when either is reached the read loop waits, which stops reading and pushes
// back through TCP. It also keeps the requests in flight, for CANCEL.
//
// When the session begins to close the mailbox takes nothing new (what
// arrives after is dropped and counted) but what it holds is still handled,
// until DisconnectTimeout after the close began; then the rest is dropped
// and counted. Drained is when that is over.
type mailbox struct {
	s *Session

	mu       sync.Mutex
	room     lazyCond // the read loop waits here for room
	q        []*inbound
	head     int
	bytes    int
	running  int
	held     bool // OnSessionOpen runs: queue, but do not dispatch yet
	closed   bool
	waiting  bool // the read loop waits for room
	gone     bool // the socket is closed: the read loop must not wait for room
	drained  bool
	expired  bool // DisconnectTimeout passed since the close began
	onDrain  func()
	deadline *time.Timer

	inflight map[uint64]*inbound // requests queued or running, by id
}

func (m *mailbox) init(s *Session) {
	m.s = s
	m.room.L = &m.mu
}

// hold keeps dispatchers from starting until release (OnSessionOpen runs).
func (m *mailbox) hold() { m.held = true }

// release lets the dispatchers start on what arrived while held.
func (m *mailbox) release() {
	m.mu.Lock()
	m.held = false
	n := min(m.s.ep.cfg.concurrency-m.running, len(m.q)-m.head)
	m.running += n
	m.mu.Unlock()
	for range n {
		m.s.ep.runDispatch(m.s)
	}
}

// push queues in, waiting for room. It runs on the read loop.
func (m *mailbox) push(in *inbound) {
	cfg := m.s.ep.cfg
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		m.dropLate(in)
		return
	}
	for !m.closed && !m.gone && len(m.q)-m.head > 0 &&
		(len(m.q)-m.head >= cfg.mailboxSize || m.bytes+in.cost > cfg.mailboxBytes) {
		if m.s.out.held.Load() {
			// Answers the read loop holds for its next read must not wait
			// for room with it: a writer takes them.
			m.mu.Unlock()
			m.s.out.releaseHeld()
			m.mu.Lock()
			continue
		}
		m.waiting = true
		m.room.Wait()
	}
	// An envelope that was waiting for room when the close began arrived
	// before it: it is queued, even over the bounds (by one).
	m.waiting = false
	if m.head > 0 && len(m.q) == cap(m.q) {
		n := copy(m.q, m.q[m.head:])
		clear(m.q[n:])
		m.q, m.head = m.q[:n], 0
	}
	m.q = append(m.q, in)
	m.bytes += in.cost
	m.s.ep.active.Add(1)
	start := m.running < cfg.concurrency && !m.held
	if start {
		m.running++
	}
	m.mu.Unlock()
	if start {
		m.s.ep.runDispatch(m.s)
	}
}

// dropLate drops an envelope that arrived after the close began, counted.
func (m *mailbox) dropLate(in *inbound) {
	m.finish(in) // a request admitted just before the close began
	m.s.ep.stats.droppedInbound.Add(1)
	m.s.ep.cfg.logger.Debug("netmsg: dropped an envelope that arrived after the session began to close",
		"type", string(in.env.Type), "session", m.s.id)
	in.recycle()
}

// socketGone wakes a read loop waiting for room once the socket is closed:
// its next read fails and ends the session with the right cause. What it
// holds is queued over the bounds (by one), as when the close begins.
func (m *mailbox) socketGone() {
	m.mu.Lock()
	m.gone = true
	m.room.Broadcast()
	m.mu.Unlock()
}

// isWaiting reports whether the read loop waits for room (the peer is
// sending; the session just is not reading).
func (m *mailbox) isWaiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting
}

// closeBegan stops taking envelopes, wakes a read loop waiting for room and
// starts the drain's deadline.
func (m *mailbox) closeBegan() {
	m.mu.Lock()
	m.closed = true
	m.room.Broadcast()
	m.deadline = time.AfterFunc(m.s.ep.cfg.disconnectTimeout, m.expire)
	fire := m.checkDrained()
	m.mu.Unlock()
	if fire != nil {
		fire()
	}
}

// whenDrained runs f once the drain is over (at once if it is).
func (m *mailbox) whenDrained(f func()) {
	m.mu.Lock()
	m.onDrain = f
	fire := m.checkDrained()
	m.mu.Unlock()
	if fire != nil {
		fire()
	}
}

// checkDrained returns the drain callback to run when the drain has just
// ended; m.mu is held.
func (m *mailbox) checkDrained() func() {
	if m.drained || !m.closed || m.onDrain == nil {
		return nil
	}
	if !m.expired && (m.head < len(m.q) || m.running > 0) {
		return nil
	}
	return m.finishDrain()
}

func (m *mailbox) finishDrain() func() {
	m.drained = true
	if m.deadline != nil {
		m.deadline.Stop()
	}
	f := m.onDrain
	m.onDrain = nil
	return f
}

// expire ends the drain at DisconnectTimeout after the close began: what is
// still queued is dropped and counted; a handler still running is reported.
func (m *mailbox) expire() {
	m.mu.Lock()
	m.expired = true
	dropped := m.q[m.head:]
	m.q, m.head, m.bytes = nil, 0, 0
	running := m.running
	for _, in := range dropped {
		m.forget(in)
	}
	fire := m.checkDrained()
	m.mu.Unlock()
	if n := len(dropped); n > 0 {
		m.s.ep.stats.droppedInbound.Add(uint64(n))
		m.s.ep.active.Add(-int64(n))
		m.s.ep.cfg.logger.Warn("netmsg: dropped envelopes not handled within DisconnectTimeout of the close",
			"envelopes", n, "session", m.s.id)
		for _, in := range dropped {
			in.recycle()
		}
	}
	if running > 0 {
		m.s.ep.cfg.logger.Warn("netmsg: handlers still running DisconnectTimeout after the session began to close",
			"handlers", running, "session", m.s.id)
	}
	if fire != nil {
		fire()
	}
}

// next takes the next envelope for a dispatcher, or returns nil (and counts
// the dispatcher out) when there is none.
func (m *mailbox) next() (*inbound, func()) {
	m.mu.Lock()
	if m.head >= len(m.q) {
		if cap(m.q) > 64 {
			m.q = nil
		} else {
			m.q = m.q[:0]
		}
		m.head = 0
		m.running--
		fire := m.checkDrained()
		m.mu.Unlock()
		return nil, fire
	}
	in := m.q[m.head]
	m.q[m.head] = nil
	m.head++
	m.bytes -= in.cost
	m.room.Signal()
	m.mu.Unlock()
	return in, nil
}

func (m *mailbox) queuedLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.q) - m.head
}

// ---- requests in flight, for CANCEL ----

// admit registers a request for CANCEL; false when its id is in flight.
func (m *mailbox) admit(in *inbound) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.inflight[in.env.ID]; dup {
		return false
	}
	if m.inflight == nil {
		m.inflight = make(map[uint64]*inbound)
	}
	m.inflight[in.env.ID] = in
	in.registered = true
	return true
}

// cancel ends request id: its handler's context is cancelled and its result
// will not be sent. A later request may reuse the id.
func (m *mailbox) cancel(id uint64) {
	m.mu.Lock()
	in := m.inflight[id]
	if in != nil {
		delete(m.inflight, id)
		if in.hctx != nil { // else bindHandlerCtx sees it gone
			in.hctx.cancel()
		}
	}
	m.mu.Unlock()
}

// finish removes in from the requests in flight and reports whether it was
// still there, that is, whether its caller still waits for the answer. A
// request cancelled and then reused by a new one finds the new one there,
// not itself.
func (m *mailbox) finish(in *inbound) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.forget(in)
}

// forget is finish with m.mu held. A request run inline and never handed
// off was never registered: nothing could cancel it.
func (m *mailbox) forget(in *inbound) bool {
	if in.env.Kind != wire.KindRequest {
		return false
	}
	if !in.registered {
		return true
	}
	if m.inflight[in.env.ID] != in {
		return false
	}
	delete(m.inflight, in.env.ID)
	return true
}

func (m *mailbox) inflightLen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.inflight)
}

// ---- the read loop's side ----

// OnMessage runs on the read loop for every data frame.
func (s *Session) OnMessage(msg *transport.Message) {
	if msg.Opcode != transport.OpBinary {
		_ = msg.Close()
		s.protocolError(fmt.Errorf("netmsg: received a %s frame; envelopes travel in binary frames", opcodeName(msg.Opcode)), "malformed envelope")
		return
	}
	in := inboundPool.Get().(*inbound)
	in.msg = msg
	if err := wire.Decode(msg.Bytes(), &in.env); err != nil {
		in.recycle()
		s.protocolError(err, "malformed envelope")
		return
	}
	in.cost = cap(msg.Bytes()) + inboundOverhead
	switch in.env.Kind {
	case wire.KindResponse, wire.KindError:
		s.deliver(in)
	case wire.KindCancel:
		s.mbox.cancel(in.env.ID)
		in.recycle()
	case wire.KindMessage:
		if s.ep.draining.Load() {
			// Shutdown has begun: like a request (answered CodeUnavailable),
			// a message arriving now is not taken on, so that steady traffic
			// cannot hold the drain open. Counted, not silently lost.
			s.ep.stats.drainDropped.Add(1)
			s.ep.cfg.logger.Debug("netmsg: dropped a message arriving during shutdown", "type", string(in.env.Type), "session", s.id)
			in.recycle()
			return
		}
		in.ctx = s.context()
		if s.ep.cfg.inline && s.mbox.tryInline() {
			s.runInline(in)
			return
		}
		s.mbox.push(in)
	case wire.KindRequest:
		if in.env.ID == 0 {
			// Its answer could name no request: the peer breaks the protocol.
			in.recycle()
			s.protocolError(fmt.Errorf("netmsg: received a REQUEST with id 0"), "request id 0")
			return
		}
		s.acceptRequest(in)
	case wire.KindPing:
		s.answerPing(in)
	case wire.KindPong:
		// Its bytes have counted as life; nothing else is done with it.
		in.recycle()
	}
}

// answerPing queues a PONG with the PING's id and payload, from the read
// loop. The answer goes through the outbound queue like any frame, so a peer
// that sends PINGs and does not read runs into MaxQueuedBytes.
func (s *Session) answerPing(in *inbound) {
	f := getFrame()
	f.b = wire.AppendHeaderAndPayload(f.b[:0], wire.KindPong, in.env.ID, "", in.env.Payload, 0, nil)
	in.recycle()
	_ = s.out.push(f)
}

func opcodeName(op transport.Opcode) string {
	if op == transport.OpText {
		return "text"
	}
	return fmt.Sprintf("opcode %d", op)
}

// acceptRequest sets up the handler's context, registers the request for
// CANCEL and queues it. Requests that cannot be served are answered at once.
func (s *Session) acceptRequest(in *inbound) {
	id := in.env.ID
	if s.ep.draining.Load() {
		s.replyError(id, CodeUnavailable, "server is shutting down")
		in.recycle()
		return
	}
	if s.isClosing() {
		s.mbox.dropLate(in)
		return
	}
	if in.env.TimeoutMs > 0 {
		in.deadline = time.Now().Add(msDuration(in.env.TimeoutMs)).UnixNano()
	}
	if s.ep.cfg.inline && s.mbox.tryInline() {
		s.runInline(in)
		return
	}
	if !s.mbox.admit(in) {
		s.replyError(id, CodeAlreadyExists, fmt.Sprintf("request id %d is already in flight", id))
		in.recycle()
		return
	}
	s.mbox.push(in)
}

// ---- dispatchers ----

// runDispatch runs s.dispatch on a parked worker of the endpoint, or on a new
// one when none is parked. The caller has counted it in the mailbox's running.
func (ep *endpoint) runDispatch(s *Session) {
	select {
	case ep.work <- s:
	default:
		w := &worker{}
		ep.spawn(func() { ep.worker(w, s) })
	}
}

// worker is a dispatcher goroutine; cur names the handler it runs and its
// session, for Close's report of what is still running.
type worker struct {
	e atomic.Pointer[entry]
	s atomic.Pointer[Session]
}

func (w *worker) set(e *entry, s *Session) {
	w.s.Store(s)
	w.e.Store(e)
}

// defaultWorkerIdle is how long a dispatcher goroutine that has run out of work
// waits for another session's (or the same session's next) work before it
// exits. It keeps back-to-back requests from starting, and growing the stack
// of, a goroutine each, and still lets an idle endpoint hold no goroutine
// beyond its read loops shortly after the traffic stops.
const defaultWorkerIdle = 250 * time.Millisecond

// worker dispatches s, then parks for up to ep.workerIdle waiting for another
// session to dispatch, until the endpoint stops.
func (ep *endpoint) worker(w *worker, s *Session) {
	ep.workers.add(w)
	defer ep.workers.remove(w)
	var idle *time.Timer
	for {
		s.dispatch(w)
		s = nil
		if ep.workerIdle <= 0 {
			return
		}
		if idle == nil {
			idle = time.NewTimer(ep.workerIdle)
		} else {
			idle.Reset(ep.workerIdle)
		}
		select {
		case s = <-ep.work:
			idle.Stop()
		case <-idle.C:
			return
		case <-ep.stopping:
			idle.Stop()
			return
		}
	}
}

// dispatch runs handlers while the mailbox has work, then returns: an idle
// session holds no dispatcher goroutine.
func (s *Session) dispatch(w *worker) {
	for {
		in, drained := s.mbox.next()
		if in == nil {
			if drained != nil {
				drained()
			}
			return
		}
		s.handle(w, in, 0)
		s.ep.active.Add(-1)
	}
}

// handle runs in's handler on a dispatcher, or on the read loop for inline
// run inl (0: not inline).
func (s *Session) handle(w *worker, in *inbound, inl uint64) {
	defer in.recycle()
	if inl != 0 {
		defer s.endInline(inl) // before the recycle: a handoff may read in
	}
	if in.env.Kind == wire.KindRequest {
		s.handleRequest(w, in, inl)
		return
	}
	if len(in.env.Metadata) > 0 {
		in.ctx = withIncoming(in.ctx, in.env.Metadata)
	}
	e := s.ep.reg.lookup(in.env.Type)
	if e == nil || e.messages == nil {
		s.ep.unhandled(s, string(in.env.Type))
		return
	}
	w.set(e, s)
	s.ep.inUser.Add(1)
	defer func() {
		s.ep.inUser.Add(-1)
		w.set(nil, nil)
		if r := recover(); r != nil {
			s.handlerPanicked("message", e.name, r)
		}
	}()
	if err := e.messages.dispatch(in.ctx, s, in); err != nil {
		s.ep.reportError(s, fmt.Errorf("netmsg: dropped a %s message that does not decode: %w", e.name, err))
	}
}

func (s *Session) handleRequest(w *worker, in *inbound, inl uint64) {
	id := in.env.ID
	if inl == 0 && s.requestOver(in) {
		// Cancelled or timed out while queued: the caller has stopped waiting.
		// Once the session closes its callers have failed with the
		// *CloseError and no answer can be sent: the request is dropped,
		// counted, rather than run for nobody.
		if s.mbox.finish(in) && s.isClosing() {
			s.ep.stats.droppedInbound.Add(1)
		}
		return
	}
	e := s.ep.reg.lookup(in.env.Type)
	if e == nil || e.request == nil {
		if s.mbox.finish(in) {
			s.reply(inl, errorFrame(id, CodeUnimplemented, "no handler for "+string(in.env.Type)))
		}
		return
	}
	w.set(e, s)
	resp, err := s.invoke(e, in)
	w.set(nil, nil)
	if inl != 0 {
		s.endInline(inl) // before finish: a handoff registers the request
	}
	if !s.mbox.finish(in) {
		return // the caller cancelled; nobody waits for the answer
	}
	if err != nil {
		code, text := wireError(err)
		if _, ok := err.(*Error); !ok && code == CodeInternal {
			s.ep.reportError(s, fmt.Errorf("netmsg: %s handler: %w", e.name, err))
		}
		s.reply(inl, errorFrame(id, code, text))
		return
	}
	f, err := s.encode(wire.KindResponse, id, "", resp, 0, nil)
	if err != nil {
		s.ep.reportError(s, fmt.Errorf("netmsg: %s handler's response: %w", e.name, err))
		s.reply(inl, errorFrame(id, CodeInternal, "internal error"))
		return
	}
	s.reply(inl, f)
}

// reply queues an answer produced by a handler of this session: on the read
// loop (inline run inl, not handed off) it waits for the read loop's next
// read, on a dispatcher it goes as replyOwn says.
func (s *Session) reply(inl uint64, f *frame) {
	if inl != 0 && !s.endInline(inl) {
		s.out.pushHeld(f, s.rl.Load().canHold)
		return
	}
	s.replyOwn(f)
}

// requestOver reports whether a queued request need not run: its caller
// cancelled it, its deadline passed or the session is closing.
func (s *Session) requestOver(in *inbound) bool {
	if in.deadline != 0 && time.Now().UnixNano() >= in.deadline || s.isClosing() {
		return true
	}
	m := &s.mbox
	m.mu.Lock()
	defer m.mu.Unlock()
	return in.registered && m.inflight[in.env.ID] != in
}

// bindHandlerCtx sets up hc, allocated with the request's value, as the
// handler's context of in and returns the context the handler gets (with
// the request's metadata). From then on a CANCEL cancels hc; one that came
// before finds it created cancelled.
func (s *Session) bindHandlerCtx(in *inbound, hc *handlerCtx) context.Context {
	hc.parent = s.context()
	if in.deadline != 0 {
		hc.deadline = time.Unix(0, in.deadline)
	}
	if in.run != 0 {
		hc.s, hc.run = s, in.run
	}
	m := &s.mbox
	m.mu.Lock()
	if in.registered && m.inflight[in.env.ID] != in {
		hc.canceled = true
	}
	in.hctx = hc
	m.mu.Unlock()
	if len(in.env.Metadata) > 0 {
		return withIncoming(hc, in.env.Metadata)
	}
	return hc
}

// replyOwn queues an answer produced on this session's dispatcher and, when
// no writer runs, writes it here: the dispatcher has nothing else to do for
// the session meanwhile, and the answer leaves without a goroutine handoff.
//
// When more envelopes wait in the mailbox, the answer is handed to a writer
// instead: it writes while this dispatcher runs the next handler, and the
// answers produced meanwhile join its next write, so pipelined requests are
// answered with one system call for several answers rather than one each.
func (s *Session) replyOwn(f *frame) {
	if !s.out.pushOwn(f) {
		return // a writer runs; the answer joins its next batch
	}
	if s.mbox.queuedLen() > 0 {
		s.ep.startWriter(&s.out)
		return
	}
	s.out.flushOwn()
}

// invoke runs a request handler, turning a panic into CodeInternal.
func (s *Session) invoke(e *entry, in *inbound) (resp any, err error) {
	s.ep.inUser.Add(1)
	defer func() {
		s.ep.inUser.Add(-1)
		if r := recover(); r != nil {
			resp, err = nil, s.handlerPanicked("request", e.name, r)
		}
	}()
	return e.request(s, in)
}

func errorFrame(id uint64, code Code, msg string) *frame {
	f := getFrame()
	f.b = wire.AppendError(f.b[:0], id, "", uint32(code), msg)
	return f
}

// replyError answers request id with an ERROR envelope from the read loop.
func (s *Session) replyError(id uint64, code Code, msg string) {
	_ = s.out.push(errorFrame(id, code, msg))
}
