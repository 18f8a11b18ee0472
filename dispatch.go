package netmsg

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg/internal/wire"
)

// inbound is one received envelope. env aliases msg's pooled buffer, so msg is
// closed (returned to gws's pool) only once the payload has been decoded.
type inbound struct {
	msg  *gws.Message
	env  wire.Envelope
	ctx  context.Context // the handler's context: s.ctx for messages, hctx for requests
	hctx *handlerCtx     // requests

	// cancelFn is in.cancelRequest, bound once per pooled inbound (a method
	// value allocates): s.inflight holds it for CANCEL.
	cancelFn context.CancelFunc
}

var inboundPool = sync.Pool{New: func() any {
	in := new(inbound)
	in.cancelFn = in.cancelRequest
	return in
}}

// cancelRequest cancels the request's handler context. It runs only from
// s.inflight, with s.imu held: every path removes the id from s.inflight
// (under s.imu) before it recycles the inbound, so hctx is still this
// request's.
func (in *inbound) cancelRequest() {
	if in.hctx != nil {
		in.hctx.cancel()
	}
}

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
	md, fn := in.env.Metadata[:0], in.cancelFn
	*in = inbound{}
	in.env.Metadata, in.cancelFn = md, fn
	inboundPool.Put(in)
}

// onMessage runs on the gws read loop for every data frame.
func (s *Session) onMessage(msg *gws.Message) {
	if msg.Opcode != gws.OpcodeBinary {
		_ = msg.Close()
		s.protocolError(fmt.Errorf("netmsg: received a %s frame; envelopes travel in binary frames", opcodeName(msg.Opcode)))
		return
	}
	in := inboundPool.Get().(*inbound)
	in.msg = msg
	if err := wire.Decode(msg.Bytes(), &in.env); err != nil {
		in.recycle()
		s.protocolError(err)
		return
	}
	switch in.env.Kind {
	case wire.KindResponse, wire.KindError:
		s.deliver(in)
	case wire.KindCancel:
		s.cancelInflight(in.env.ID)
		in.recycle()
	case wire.KindMessage:
		if s.ep.draining.Load() {
			// Shutdown has begun: like a request (answered CodeUnavailable),
			// a message arriving now is not taken on, so that steady traffic
			// cannot hold the drain open. Counted, not silently lost.
			s.ep.drainDropped.Add(1)
			s.ep.cfg.logger.Debug("netmsg: dropped a message arriving during shutdown", "type", string(in.env.Type), "session", s.id)
			in.recycle()
			return
		}
		in.ctx = s.ctx
		s.push(in)
	case wire.KindRequest:
		s.acceptRequest(in)
	}
}

func opcodeName(op gws.Opcode) string {
	if op == gws.OpcodeText {
		return "text"
	}
	return fmt.Sprintf("opcode %d", op)
}

// acceptRequest sets up the handler's context, registers the request for
// CANCEL and queues it. Requests that cannot be served are answered at once.
func (s *Session) acceptRequest(in *inbound) {
	id := in.env.ID
	if s.ep.draining.Load() {
		s.replyError(id, CodeUnavailable, "server is shutting down", false)
		in.recycle()
		return
	}
	in.hctx = newHandlerCtx(s.ctx, msDuration(in.env.TimeoutMs))
	in.ctx = in.hctx
	s.imu.Lock()
	if _, dup := s.inflight[id]; dup {
		s.imu.Unlock()
		s.replyError(id, CodeAlreadyExists, fmt.Sprintf("request id %d is already in flight", id), false)
		in.recycle()
		return
	}
	if s.inflight == nil {
		s.inflight = make(map[uint64]context.CancelFunc)
	}
	s.inflight[id] = in.cancelFn
	s.imu.Unlock()
	s.push(in)
}

// cancelInflight cancels request id's handler context. The cancel runs with
// s.imu held (see inbound.cancelRequest); it takes only the context's own lock.
func (s *Session) cancelInflight(id uint64) {
	s.imu.Lock()
	defer s.imu.Unlock()
	if cancel := s.inflight[id]; cancel != nil {
		delete(s.inflight, id)
		cancel()
	}
}

// finishInflight removes id and reports whether it was still there (false:
// the caller cancelled it).
func (s *Session) finishInflight(id uint64) bool {
	s.imu.Lock()
	_, ok := s.inflight[id]
	delete(s.inflight, id)
	s.imu.Unlock()
	return ok
}

// ---- mailbox ----

// push queues in for the handlers. When the mailbox is full the read loop
// waits here, which stops reading and pushes back through TCP.
func (s *Session) push(in *inbound) {
	s.mmu.Lock()
	for !s.mstop && len(s.mq)-s.mhead >= s.ep.cfg.mailboxSize {
		s.rxBlocked.Store(true)
		s.mcond.Wait()
	}
	s.rxBlocked.Store(false)
	if s.mstop {
		s.mmu.Unlock()
		s.dropInbound(in)
		return
	}
	if s.mhead > 0 && len(s.mq) == cap(s.mq) {
		n := copy(s.mq, s.mq[s.mhead:])
		clear(s.mq[n:])
		s.mq, s.mhead = s.mq[:n], 0
	}
	s.mq = append(s.mq, in)
	s.ep.active.Add(1)
	if s.running < s.ep.cfg.concurrency && !s.mheld {
		s.running++
		s.mmu.Unlock()
		s.ep.runDispatch(s)
		return
	}
	s.mmu.Unlock()
}

// releaseMailbox lets the dispatchers start on what arrived while the mailbox
// was held (during OnSessionOpen).
func (s *Session) releaseMailbox() {
	s.mmu.Lock()
	s.mheld = false
	n := min(s.ep.cfg.concurrency-s.running, len(s.mq)-s.mhead)
	s.running += n
	s.mmu.Unlock()
	for range n {
		s.ep.runDispatch(s)
	}
}

// defaultWorkerIdle is how long a dispatcher goroutine that has run out of work
// waits for another session's (or the same session's next) work before it
// exits. It keeps back-to-back requests from starting, and growing the stack
// of, a goroutine each, and still lets an idle endpoint hold no goroutine
// beyond its read loops shortly after the traffic stops.
const defaultWorkerIdle = 250 * time.Millisecond

// runDispatch runs s.dispatch on a parked worker of the endpoint, or on a new
// one when none is parked. The caller has counted it in s.running.
func (ep *endpoint) runDispatch(s *Session) {
	select {
	case ep.work <- s:
	default:
		ep.wg.Add(1)
		go ep.worker(s)
	}
}

// worker dispatches s, then parks for up to ep.workerIdle waiting for another
// session to dispatch, until the endpoint stops.
func (ep *endpoint) worker(s *Session) {
	defer ep.wg.Done()
	if ep.client {
		// Known by id (read once per worker, which is pooled, not per
		// request), so that Client.Close called from a handler does not wait
		// for itself. A server has no such call to answer.
		id := goroutineID()
		ep.workerIDs.Store(id, struct{}{})
		defer ep.workerIDs.Delete(id)
	}
	var idle *time.Timer
	for {
		s.dispatch()
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

// dropInbound discards an envelope that arrived while the session closes.
func (s *Session) dropInbound(in *inbound) {
	if in.env.Kind == wire.KindRequest {
		s.finishInflight(in.env.ID)
	}
	in.recycle()
}

// stopMailbox refuses further envelopes and wakes a read loop waiting for room.
func (s *Session) stopMailbox() {
	s.mmu.Lock()
	s.mstop = true
	s.mcond.Broadcast()
	s.mmu.Unlock()
}

// dispatch runs handlers while the mailbox has work, then returns: an idle
// session holds no dispatcher goroutine (the worker goes back to the
// endpoint's pool, and exits when that stays idle).
func (s *Session) dispatch() {
	for {
		s.mmu.Lock()
		if s.mhead >= len(s.mq) {
			if cap(s.mq) > 64 {
				s.mq = nil
			} else {
				s.mq = s.mq[:0]
			}
			s.mhead = 0
			s.running--
			s.mmu.Unlock()
			return
		}
		in := s.mq[s.mhead]
		s.mq[s.mhead] = nil
		s.mhead++
		s.mcond.Signal()
		s.mmu.Unlock()

		s.handle(in)
		s.ep.done1()
	}
}

func (s *Session) handle(in *inbound) {
	defer in.recycle()
	if len(in.env.Metadata) > 0 {
		in.ctx = withIncoming(in.ctx, in.env.Metadata)
	}
	if in.env.Kind == wire.KindRequest {
		s.handleRequest(in)
		return
	}
	e := s.ep.reg.lookup(in.env.Type)
	if e == nil || e.messages == nil {
		s.ep.unhandled(s, string(in.env.Type))
		return
	}
	defer s.recoverHandler(e.name)
	if err := e.messages.dispatch(in.ctx, s, in); err != nil {
		s.ep.reportError(s, fmt.Errorf("netmsg: dropped a %s message that does not decode: %w", e.name, err))
	}
}

func (s *Session) handleRequest(in *inbound) {
	id := in.env.ID
	if in.ctx.Err() != nil {
		// Cancelled or timed out while queued: the caller has stopped waiting.
		s.finishInflight(id)
		return
	}
	e := s.ep.reg.lookup(in.env.Type)
	if e == nil || e.request == nil {
		s.finishInflight(id)
		s.replyError(id, CodeUnimplemented, "no handler for "+string(in.env.Type), true)
		return
	}
	resp, err := s.invoke(e, in)
	if !s.finishInflight(id) {
		return // the caller cancelled; nobody waits for the answer
	}
	if err != nil {
		code, text := wireError(err)
		if _, ok := err.(*Error); !ok && code == CodeInternal {
			s.ep.reportError(s, fmt.Errorf("netmsg: %s handler: %w", e.name, err))
		}
		s.replyError(id, code, text, true)
		return
	}
	f, err := s.encode(wire.KindResponse, id, "", resp, 0, nil)
	if err != nil {
		s.ep.reportError(s, fmt.Errorf("netmsg: %s handler's response: %w", e.name, err))
		s.replyError(id, CodeInternal, "internal error", true)
		return
	}
	_ = s.enqueue(f, true)
}

// invoke runs a request handler, turning a panic into CodeInternal.
func (s *Session) invoke(e *entry, in *inbound) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.ep.cfg.logger.Error("netmsg: request handler panicked", "type", e.name, "session", s.id, "panic", r, "stack", string(debug.Stack()))
			s.ep.reportError(s, fmt.Errorf("netmsg: %s handler panicked: %v", e.name, r))
			resp, err = nil, NewError(CodeInternal, "internal error")
		}
	}()
	return e.request(in.ctx, s, in)
}

func (s *Session) recoverHandler(name string) {
	if r := recover(); r != nil {
		s.ep.cfg.logger.Error("netmsg: message handler panicked", "type", name, "session", s.id, "panic", r, "stack", string(debug.Stack()))
		s.ep.reportError(s, fmt.Errorf("netmsg: %s handler panicked: %v", name, r))
	}
}

// replyError answers request id with an ERROR envelope.
func (s *Session) replyError(id uint64, code Code, msg string, inline bool) {
	f := getFrame(gws.OpcodeBinary)
	f.b = wire.AppendError(f.b[:0], id, "", uint32(code), msg)
	_ = s.enqueue(f, inline)
}
