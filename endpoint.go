package netmsg

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// endpoint is what a Server and a Client share: configuration, handlers, the
// goroutines their sessions start, and the counters.
type endpoint struct {
	cfg    *config
	reg    registry
	client bool          // this end is a Client: its peers are servers
	ix     *interception // nil without interceptors

	// wg counts every goroutine started for sessions: read loops, writers,
	// dispatcher workers and callback runners. goroutines counts the same
	// ones, readably; inUser counts those running user code right now.
	wg         sync.WaitGroup
	goroutines atomic.Int64
	inUser     atomic.Int64

	// work hands a session to a parked dispatcher worker; stopping, closed
	// by stop, tells parked workers to exit at once.
	work       chan *Session
	flushes    chan *outbound
	fanWake    chan struct{} // wakes a parked writer for the fan-out queue
	fan        fanQueue
	stopping   chan struct{}
	stopOnce   sync.Once
	workerIdle time.Duration // 0: workers exit as soon as they run out of work
	workers    workerSet
	inl        inlineWatch // handlers running inline on read loops

	// active counts envelopes queued or being handled, for the drain.
	active   atomic.Int64
	draining atomic.Bool

	// detached is called once per session, on its read loop, when the
	// connection has ended, before Done closes: the owner's bookkeeping.
	detached func(*Session, *CloseError)
	// closed is called once the session's inbound drain is over: the
	// owner's report (OnSessionClose).
	closed func(*Session, *CloseError)

	// groups is the server's group membership; nil on a client.
	groups *groupSet

	// hbw ticks the sessions' heartbeats; nil when they are off.
	hbw *hbWheel

	stats endpointStats
}

type endpointStats struct {
	lateResponses    atomic.Uint64
	unknownResponses atomic.Uint64
	drainDropped     atomic.Uint64
	droppedInbound   atomic.Uint64
	droppedOutbound  atomic.Uint64
	slowConsumers    atomic.Uint64
}

func (ep *endpoint) handlerRegistry() *registry { return &ep.reg }

// init makes the endpoint's channels; NewServer and NewClient call it.
func (ep *endpoint) init(cfg *config) {
	ep.cfg = cfg
	ep.ix = newInterception(cfg.interceptors)
	ep.work = make(chan *Session)
	ep.flushes = make(chan *outbound)
	ep.fanWake = make(chan struct{})
	ep.stopping = make(chan struct{})
	ep.workerIdle = defaultWorkerIdle
	ep.hbw = newHBWheel(ep)
	ep.inl.ep = ep
}

// spawn runs f on a goroutine the endpoint owns and waits for.
func (ep *endpoint) spawn(f func()) {
	ep.wg.Add(1)
	ep.goroutines.Add(1)
	go func() {
		defer ep.wg.Done()
		defer ep.goroutines.Add(-1)
		f()
	}()
}

// stop makes parked dispatcher workers exit; workers still busy exit when
// they run out of work. Called before waiting for the goroutines.
func (ep *endpoint) stop() {
	ep.stopOnce.Do(func() {
		close(ep.stopping)
		ep.fanStop()
	})
}

func (ep *endpoint) reportError(s *Session, err error) {
	ep.cfg.logger.Warn(err.Error(), "session", s.id)
	if f := ep.cfg.onError; f != nil {
		s.cbq.post("OnError", func() { f(s, err) })
	}
}

func (ep *endpoint) unhandled(s *Session, typ string) {
	ep.cfg.logger.Debug("netmsg: no handler for message", "type", typ, "session", s.id)
	if f := ep.cfg.onUnhandled; f != nil {
		s.cbq.post("OnUnhandled", func() { f(s, typ) })
	}
}

// callback runs a user callback and recovers its panic: a bug in an event
// callback is logged with its stack and must not skip the library's own
// bookkeeping around it or kill the process.
func (ep *endpoint) callback(name string, f func()) {
	ep.inUser.Add(1)
	defer func() {
		ep.inUser.Add(-1)
		if r := recover(); r != nil {
			ep.cfg.logger.Error("netmsg: "+name+" callback panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// detach runs the owner's bookkeeping for a session whose connection ended.
func (ep *endpoint) detach(s *Session, ce *CloseError) {
	if ep.detached != nil {
		ep.detached(s, ce)
	}
}

// sessionClosed runs once a closed session's drain is over.
// The session's per-session values are dropped after the close callbacks
// it has queued, so OnSessionClose can still read them.
func (ep *endpoint) sessionClosed(s *Session, ce *CloseError) {
	ep.observeClose(s, ce)
	if ep.closed != nil {
		ep.closed(s, ce)
	}
	s.releaseExt()
}

// waitGoroutines waits until every goroutine the endpoint started has exited,
// or until the timeout, and then reports what is still running. One case
// ends the wait early, with settled set: when only goroutines running user
// code are left, no more of them than the callers waiting here from inside
// the library's handlers and callbacks, for half the DisconnectTimeout. Such
// a caller (Close called from a handler) cannot return while it waits, and
// handlers that respect their ctx return well within that time after the
// close cancelled it. A caller from anywhere else is not counted: with a
// handler that ignores its ctx it waits the whole timeout and gets the
// error naming that handler.
func (ep *endpoint) waitGoroutines(timeout time.Duration, waiters *atomic.Int64) (settled bool, err error) {
	if calledFromUserCode() {
		waiters.Add(1)
		defer waiters.Add(-1)
		// The caller may be a handler running on a read loop of this
		// endpoint, which must go on reading for the close to complete.
		ep.inl.handoffAll()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	const step = 2 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	grace := max(ep.cfg.disconnectTimeout/2, 50*step)
	var since time.Time
	for {
		if ep.goroutines.Load() == 0 {
			ep.wg.Wait() // each is past its last statement
			return false, nil
		}
		select {
		case <-deadline.C:
			return false, fmt.Errorf("netmsg: goroutines still running %v after the close: %s", timeout, ep.running())
		case now := <-tick.C:
			n, user := ep.goroutines.Load(), ep.inUser.Load()
			if n > 0 && n <= user && user <= waiters.Load() {
				if since.IsZero() {
					since = now
				} else if now.Sub(since) >= grace {
					return true, nil
				}
			} else {
				since = time.Time{}
			}
		}
	}
}

// userCodeGates are the functions through which the library runs user code:
// every handler runs under Session.handle and every callback under
// endpoint.callback.
var userCodeGates = [...]string{
	"github.com/netmsg/netmsg.(*Session).handle",
	"github.com/netmsg/netmsg.(*endpoint).callback",
}

// calledFromUserCode reports whether the calling goroutine is running a
// handler or callback of some endpoint: whether one of userCodeGates is on
// its call stack. It reads only the caller's own stack (no goroutine id), and
// only when Close or Shutdown is about to wait.
func calledFromUserCode() bool {
	pcs := make([]uintptr, 512)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		for _, g := range userCodeGates {
			if f.Function == g {
				return true
			}
		}
		if !more {
			return false
		}
	}
}

// running describes the handlers still running, for Close's error.
func (ep *endpoint) running() string {
	names := ep.workers.busy()
	if len(names) == 0 {
		return fmt.Sprintf("%d goroutines (callbacks or handlers that ignore their ctx)", ep.goroutines.Load())
	}
	return strings.Join(names, ", ")
}

// workerSet is the endpoint's dispatcher workers, for reporting.
type workerSet struct {
	mu sync.Mutex
	m  map[*worker]struct{}
}

func (ws *workerSet) add(w *worker) {
	ws.mu.Lock()
	if ws.m == nil {
		ws.m = make(map[*worker]struct{})
	}
	ws.m[w] = struct{}{}
	ws.mu.Unlock()
}

func (ws *workerSet) remove(w *worker) {
	ws.mu.Lock()
	delete(ws.m, w)
	ws.mu.Unlock()
}

func (ws *workerSet) busy() []string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var names []string
	for w := range ws.m {
		if e, s := w.e.Load(), w.s.Load(); e != nil && s != nil {
			names = append(names, e.name+" handler (session "+s.id+")")
		}
	}
	sort.Strings(names)
	return names
}

// callbackQueue runs a session's event callbacks (OnSessionOpen, OnError,
// OnUnhandled, OnSessionClose) one at a time, in the order they were posted,
// on a goroutine that runs while there are callbacks and exits after. No
// callback runs on a read loop or under a library lock. Its state is made
// on the first post: many sessions never have a callback to run until they
// close.
type callbackQueue struct {
	ep *endpoint
	st atomic.Pointer[callbackState]
}

type callbackState struct {
	mu      sync.Mutex
	q       []namedFunc
	running bool
}

type namedFunc struct {
	name string
	f    func()
}

func (q *callbackQueue) init(ep *endpoint) { q.ep = ep }

func (q *callbackQueue) post(name string, f func()) {
	st := q.st.Load()
	if st == nil {
		q.st.CompareAndSwap(nil, new(callbackState))
		st = q.st.Load()
	}
	st.mu.Lock()
	st.q = append(st.q, namedFunc{name, f})
	start := !st.running
	st.running = true
	st.mu.Unlock()
	if start {
		q.ep.spawn(func() { q.run(st) })
	}
}

func (q *callbackQueue) run(st *callbackState) {
	for {
		st.mu.Lock()
		if len(st.q) == 0 {
			st.q = nil
			st.running = false
			st.mu.Unlock()
			return
		}
		nf := st.q[0]
		st.q[0] = namedFunc{}
		st.q = st.q[1:]
		st.mu.Unlock()
		q.ep.callback(nf.name, nf.f)
	}
}

// Stats are counters of an endpoint, for monitoring.
type Stats struct {
	// LateResponses counts responses that arrived after their caller gave up.
	LateResponses uint64
	// UnknownResponses counts responses for ids never asked or already answered.
	UnknownResponses uint64
	// DroppedDuringShutdown counts messages that arrived after Server.Shutdown
	// began and were not handled (requests get CodeUnavailable instead).
	DroppedDuringShutdown uint64
	// DroppedInbound counts envelopes received but not handled because their
	// session was closing: those that arrived after the close began, those
	// still queued DisconnectTimeout after it, and requests whose caller had
	// already failed with the close.
	DroppedInbound uint64
	// DroppedOutbound counts frames queued but not written because their
	// session closed first (a hard close, or a graceful one that ran out of
	// time).
	DroppedOutbound uint64
	// SlowConsumers counts sessions closed because the peer did not read:
	// the outbound queue overflowed or a write timed out.
	SlowConsumers uint64
}

func (ep *endpoint) statsSnapshot() Stats {
	st := &ep.stats
	return Stats{
		LateResponses:         st.lateResponses.Load(),
		UnknownResponses:      st.unknownResponses.Load(),
		DroppedDuringShutdown: st.drainDropped.Load(),
		DroppedInbound:        st.droppedInbound.Load(),
		DroppedOutbound:       st.droppedOutbound.Load(),
		SlowConsumers:         st.slowConsumers.Load(),
	}
}

// msDuration converts a timeout in milliseconds, capping absurd values.
func msDuration(ms uint64) time.Duration {
	const maxMs = uint64(1<<63-1) / uint64(time.Millisecond)
	if ms > maxMs {
		ms = maxMs
	}
	return time.Duration(ms) * time.Millisecond
}

// startReading runs the session's read loop on a goroutine the endpoint owns.
func (ep *endpoint) startReading(s *Session) {
	s.conn.Bind(s)
	s.conn.BeforeRead(s.out.flushHeld)
	s.startHeartbeat()
	ep.spawn(func() { s.conn.ReadLoop(s.readLoopPanicked) })
}
