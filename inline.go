package netmsg

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/wire"
)

// Inline handlers.
//
// When a session's mailbox is idle (nothing queued, no handler running,
// OnSessionOpen done), the read loop runs the handler of the envelope it has
// just read itself, instead of handing it to a dispatcher goroutine and
// waking that up: one request in flight per connection then costs no
// goroutine switch on the way in, and the answer is written when the read
// loop next goes to the socket, together with whatever else it answered
// meanwhile.
//
// No handler may stall a read loop, so the moment a handler would wait, the
// reading is handed to a new goroutine (handoff) and the handler's goroutine
// finishes as the session's dispatcher:
//   - a request handler's ctx.Done(), a message handler's ctx.Done() (and so
//     every context derived from them, and every library call waiting on
//     them, SendRequest included), Session.Done, Session.Close and Kick, and
//     Close or Shutdown called from a handler;
//   - anything else (a channel, a lock, a system call, a long computation) is
//     caught by the endpoint's watchdog, which hands off a handler it finds
//     running inline at two ticks in a row (2-4 ms).
//
// The new goroutine calls the transport's ReadLoop again: gws keeps no
// reader state on the stack across OnMessage (internal/transport's
// TestGwsPinReadLoopReentry pins it), so it reads on where the handled frame
// ended. The old goroutine must never return into gws: once the handler has
// returned and the mailbox is empty, it ends with runtime.Goexit, after the
// deferred calls on its stack have run (gws's Recovery, the endpoint's
// goroutine accounting).
//
// A request running inline is registered for CANCEL only when it is handed
// off: until then the read loop, which would read the CANCEL, is busy with it.

// The states of readLoop.word's low bits; the rest counts the inline runs.
const (
	rlIdle   = 0 // no handler runs on the read loop
	rlInline = 1 // a handler runs on the read loop
	rlHanded = 2 // the run was handed off: another goroutine reads now
)

// readLoop is a session's inline-run state.
type readLoop struct {
	// word is run<<2 | state. A handoff wins by swapping the word of the run
	// it saw, so it can never hand off a later run by mistake.
	word atomic.Uint64
	// cur is the envelope of the inline run; a handoff reads it under the
	// mailbox's lock after winning the swap.
	cur *inbound
	// w names the handler of the inline run, for Close's report once it is
	// handed off (the handoff copies it into a registered worker).
	w worker
	// handed is that registered worker, for the old goroutine (mailbox lock).
	handed *worker
	// mctx is the context of message handlers run inline.
	mctx inlineMsgCtx
	// seen is the word the watchdog saw at its last tick; idx is the
	// session's place in the watchdog's list, -1 once it has left it (both:
	// inlineWatch.mu).
	seen uint64
	idx  int
	// canHold: the read loop may write its answers itself, without waiting
	// for the socket (transport.Conn.CanWriteNow).
	canHold bool
}

// readLoopState returns s's inline-run state, making it (on the read loop)
// the first time a handler runs there: a session that never does, holds none.
func (s *Session) readLoopState() *readLoop {
	if rl := s.rl.Load(); rl != nil {
		return rl
	}
	rl := &readLoop{canHold: s.conn.CanWriteNow()}
	rl.mctx.s = s
	s.rl.Store(rl)
	s.ep.inl.add(s)
	return rl
}

// tryInline reports whether the read loop may run the next envelope's
// handler itself, and if so counts it as the running handler.
func (m *mailbox) tryInline() bool {
	m.mu.Lock()
	ok := !m.closed && !m.held && m.running == 0 && m.head == len(m.q)
	if ok {
		m.running = 1
	}
	m.mu.Unlock()
	if ok {
		m.s.ep.active.Add(1)
	}
	return ok
}

// inlineDone counts the inline handler out when it returned on the read
// loop, and returns the drain callback if that ended the drain.
func (m *mailbox) inlineDone() func() {
	m.mu.Lock()
	m.running--
	fire := m.checkDrained()
	m.mu.Unlock()
	return fire
}

// runInline runs in's handler on the read loop (tryInline said so).
func (s *Session) runInline(in *inbound) {
	rl := s.readLoopState()
	run := rl.word.Load()>>2 + 1
	rl.cur = in
	if in.env.Kind == wire.KindRequest {
		in.run = run // bindHandlerCtx links the handler's ctx to the run
	} else {
		in.ctx = &rl.mctx
	}
	rl.word.Store(run<<2 | rlInline)
	s.ep.inl.begin()
	s.handle(&rl.w, in, run)
	handed := s.endInline(run)
	s.ep.active.Add(-1)
	if !handed {
		s.ep.inl.end()
		if fire := s.mbox.inlineDone(); fire != nil {
			fire()
		}
		return
	}
	// Another goroutine reads now. This one finishes as the session's
	// dispatcher (the mailbox counts it as running) and then leaves without
	// returning into gws.
	s.mbox.mu.Lock()
	w := rl.handed
	rl.handed = nil
	s.mbox.mu.Unlock()
	w.set(nil, nil)
	s.dispatch(w)
	s.ep.workers.remove(w)
	runtime.Goexit()
}

// endInline ends inline run run, once its user code has returned, and
// reports whether it was handed off meanwhile. It may be called more than
// once for a run; the answer stays the same.
func (s *Session) endInline(run uint64) (handed bool) {
	rl := s.rl.Load()
	if rl.word.CompareAndSwap(run<<2|rlInline, run<<2|rlIdle) {
		return false
	}
	if rl.word.Load() != run<<2|rlHanded {
		return false
	}
	// The handoff reads the run's envelope under the mailbox's lock after
	// winning the swap: wait for it to be done with it before the envelope
	// is recycled.
	s.mbox.mu.Lock()
	s.mbox.mu.Unlock() //nolint:staticcheck // an empty critical section, as a barrier
	return true
}

// handoff hands the reading to a new goroutine if inline run run is still
// running, and reports whether it did.
func (s *Session) handoff(run uint64) bool {
	rl := s.rl.Load()
	if rl == nil {
		return false
	}
	m := &s.mbox
	m.mu.Lock()
	if !rl.word.CompareAndSwap(run<<2|rlInline, run<<2|rlHanded) {
		m.mu.Unlock()
		return false
	}
	if in := rl.cur; in.env.Kind == wire.KindRequest {
		// From now on a CANCEL can arrive: register the request, as
		// acceptRequest does for a queued one. Nothing else is in flight
		// (the run began with the mailbox idle), so its id is free.
		if m.inflight == nil {
			m.inflight = make(map[uint64]*inbound)
		}
		m.inflight[in.env.ID] = in
		in.registered = true
	}
	w := &worker{}
	w.set(rl.w.e.Load(), s)
	s.ep.workers.add(w)
	rl.handed = w
	m.mu.Unlock()
	s.ep.inl.end() // no longer inline: the watchdog has nothing more to do with it
	s.ep.inl.handoffs.Add(1)
	s.out.releaseHeld()
	s.ep.spawn(func() { s.conn.ReadLoop(s.readLoopPanicked) })
	return true
}

// handoffNow hands off whatever runs inline on s right now, if anything. Used
// where the caller cannot tell which run it is in (or whether it is in one):
// a needless handoff costs a goroutine, never correctness.
func (s *Session) handoffNow() {
	rl := s.rl.Load()
	if rl == nil {
		return
	}
	if w := rl.word.Load(); w&3 == rlInline {
		s.handoff(w >> 2)
	}
}

// inlineMsgCtx is the context of a message handler run inline: the session's
// context, except that Done hands the reading off first.
type inlineMsgCtx struct{ s *Session }

func (c *inlineMsgCtx) Deadline() (time.Time, bool) { return c.s.context().Deadline() }
func (c *inlineMsgCtx) Done() <-chan struct{} {
	c.s.handoffNow()
	return c.s.context().Done()
}
func (c *inlineMsgCtx) Err() error      { return c.s.context().Err() }
func (c *inlineMsgCtx) Value(k any) any { return c.s.context().Value(k) }
func (c *inlineMsgCtx) String() string  { return "netmsg.sessionCtx" }

var _ context.Context = (*inlineMsgCtx)(nil)

// ---- the watchdog ----

// watchdogTick is how often the watchdog looks at the inline runs: a run
// seen at two ticks in a row is handed off, after 2-4 ms.
const watchdogTick = 2 * time.Millisecond

// inlineWatch is an endpoint's watchdog over the handlers running inline.
// Its goroutine runs only while some do (and a little after).
type inlineWatch struct {
	ep       *endpoint
	now      atomic.Int64  // inline runs in progress
	running  atomic.Bool   // the watchdog goroutine runs
	runs     atomic.Uint64 // inline runs begun, for tests
	handoffs atomic.Uint64 // of them handed off, for tests
	watched  atomic.Uint64 // of those by the watchdog, for tests

	mu       sync.Mutex
	sessions []*Session // the sessions that have run a handler inline
}

// add puts s in the watchdog's list; on s's read loop, once per session.
func (iw *inlineWatch) add(s *Session) {
	iw.mu.Lock()
	s.rl.Load().idx = len(iw.sessions)
	iw.sessions = append(iw.sessions, s)
	iw.mu.Unlock()
}

// remove takes s off the list once its connection has ended: the last
// session takes its place, so a close costs the same with 10,000 sessions
// in the list as with one.
func (iw *inlineWatch) remove(s *Session) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	rl := s.rl.Load()
	if rl == nil || rl.idx < 0 {
		return
	}
	i, last := rl.idx, len(iw.sessions)-1
	moved := iw.sessions[last]
	iw.sessions[i] = moved
	moved.rl.Load().idx = i
	iw.sessions[last] = nil
	iw.sessions = iw.sessions[:last]
	rl.idx = -1
	if cap(iw.sessions) > 64 && len(iw.sessions) < cap(iw.sessions)/4 {
		iw.sessions = append([]*Session(nil), iw.sessions...)
	}
}

// begin counts an inline run in and makes sure the watchdog runs.
func (iw *inlineWatch) begin() {
	iw.now.Add(1)
	iw.runs.Add(1)
	if !iw.running.Load() && iw.running.CompareAndSwap(false, true) {
		iw.ep.spawn(iw.watch)
	}
}

func (iw *inlineWatch) end() { iw.now.Add(-1) }

// handoffAll hands off every inline run of the endpoint: Close or Shutdown
// is about to wait, called from a handler that may be one of them.
func (iw *inlineWatch) handoffAll() {
	iw.mu.Lock()
	ss := append([]*Session(nil), iw.sessions...)
	iw.mu.Unlock()
	for _, s := range ss {
		s.handoffNow()
	}
}

// watch is the watchdog's goroutine. It exits once no handler has run inline
// for as long as an idle dispatcher waits for work (at most 50 ticks), or at
// once when the endpoint stops and none runs.
func (iw *inlineWatch) watch() {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	linger := min(50, int(iw.ep.workerIdle/watchdogTick))
	idle := 0
	type seen struct {
		s   *Session
		run uint64
	}
	var stuck []seen
	for {
		select {
		case <-t.C:
		case <-iw.ep.stopping:
			if iw.now.Load() > 0 {
				<-t.C
			}
		}
		if iw.now.Load() == 0 {
			idle++
			if idle < linger && !iw.ep.isStopping() {
				continue
			}
			iw.running.Store(false)
			// A run that began after the check above and saw the flag
			// still set has started no watchdog: this one goes on.
			if iw.now.Load() == 0 || !iw.running.CompareAndSwap(false, true) {
				return
			}
		}
		idle = 0
		iw.mu.Lock()
		for _, s := range iw.sessions {
			rl := s.rl.Load()
			w := rl.word.Load()
			if w&3 == rlInline && w == rl.seen {
				stuck = append(stuck, seen{s, w >> 2})
			}
			rl.seen = w
		}
		iw.mu.Unlock()
		for i, x := range stuck {
			if x.s.handoff(x.run) {
				iw.watched.Add(1)
				x.s.ep.cfg.logger.Debug("netmsg: a handler ran on the read loop for more than a watchdog tick; reading goes on on a new goroutine",
					"session", x.s.id)
			}
			stuck[i] = seen{}
		}
		stuck = stuck[:0]
	}
}

func (ep *endpoint) isStopping() bool {
	select {
	case <-ep.stopping:
		return true
	default:
		return false
	}
}
