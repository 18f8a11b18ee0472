package netmsg

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// endpoint is what a Server and a Client share: configuration, handlers, and
// the goroutines their sessions start.
type endpoint struct {
	cfg    *config
	reg    registry
	client bool // this end is a Client: its peers are servers

	// wg counts every goroutine started for sessions: read loops, dispatcher
	// workers and writers. Server.Shutdown and Client.Close wait for it.
	wg sync.WaitGroup

	// work hands a session to a parked dispatcher worker; stopping, closed
	// by stop, tells parked workers to exit at once.
	work       chan *Session
	stopping   chan struct{}
	stopOnce   sync.Once
	workerIdle time.Duration // 0: workers exit as soon as they run out of work
	workerIDs  sync.Map      // client only: goroutine ids of the running workers

	// active counts envelopes queued or being handled, for the drain.
	active   atomic.Int64
	draining atomic.Bool

	// detached is called once per session, on its read loop, when it has
	// closed, before its Done channel closes: the owner's bookkeeping.
	detached func(*Session, *CloseError)
	// closed is called next, after Done has closed: the user's callbacks.
	closed func(*Session, *CloseError)

	lateResponses    atomic.Uint64
	unknownResponses atomic.Uint64
	drainDropped     atomic.Uint64
}

func (ep *endpoint) handlerRegistry() *registry { return &ep.reg }

// init makes the endpoint's channels; NewServer and NewClient call it.
func (ep *endpoint) init(cfg *config) {
	ep.cfg = cfg
	ep.work = make(chan *Session)
	ep.stopping = make(chan struct{})
	ep.workerIdle = defaultWorkerIdle
}

// onWorker reports whether the calling goroutine is one of the endpoint's
// dispatcher workers, that is, runs in a handler.
func (ep *endpoint) onWorker(id uint64) bool {
	_, ok := ep.workerIDs.Load(id)
	return ok
}

// stop makes parked dispatcher workers exit; workers still busy exit when
// they run out of work. Called before waiting for ep.wg.
func (ep *endpoint) stop() { ep.stopOnce.Do(func() { close(ep.stopping) }) }

func (ep *endpoint) done1() { ep.active.Add(-1) }

func (ep *endpoint) reportError(s *Session, err error) {
	ep.cfg.logger.Warn(err.Error(), "session", s.id)
	if f := ep.cfg.onError; f != nil {
		ep.callback("OnError", func() { f(s, err) })
	}
}

func (ep *endpoint) unhandled(s *Session, typ string) {
	ep.cfg.logger.Debug("netmsg: no handler for message", "type", typ, "session", s.id)
	if f := ep.cfg.onUnhandled; f != nil {
		ep.callback("OnUnhandled", func() { f(s, typ) })
	}
}

// callback runs a user callback and recovers its panic: a bug in an event
// callback is logged with its stack and must not skip the library's own
// bookkeeping around it (closing Done, reconnecting) or kill the process.
func (ep *endpoint) callback(name string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			ep.cfg.logger.Error("netmsg: "+name+" callback panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// sessionEnded runs the owner's hooks for a closed session and closes its
// Done channel between them, so that inside OnSessionClose and OnDisconnect
// the session already looks closed and is no longer registered.
func (ep *endpoint) sessionEnded(s *Session, ce *CloseError) {
	if ep.detached != nil {
		ep.detached(s, ce)
	}
	close(s.done)
	if ep.closed != nil {
		ep.closed(s, ce)
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
}

func (ep *endpoint) stats() Stats {
	return Stats{
		LateResponses:         ep.lateResponses.Load(),
		UnknownResponses:      ep.unknownResponses.Load(),
		DroppedDuringShutdown: ep.drainDropped.Load(),
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

// gwsEvents routes gws's callbacks to the Session stored in the connection.
type gwsEvents struct{}

func sessionOf(c *gws.Conn) *Session { return c.Session().(*sessionSlot).s }

func (gwsEvents) OnOpen(*gws.Conn)                      {}
func (gwsEvents) OnClose(c *gws.Conn, err error)        { sessionOf(c).onClose(err) }
func (gwsEvents) OnPing(c *gws.Conn, p []byte)          { sessionOf(c).onPing(p) }
func (gwsEvents) OnPong(c *gws.Conn, p []byte)          { sessionOf(c).onPong(p) }
func (gwsEvents) OnMessage(c *gws.Conn, m *gws.Message) { sessionOf(c).onMessage(m) }

// gwsLogger forwards gws's own error logs (recovered panics) to slog.
type gwsLogger struct{ ep *endpoint }

func (l gwsLogger) Error(v ...any) { l.ep.cfg.logger.Error("gws: " + fmt.Sprint(v...)) }

// startReading runs the session's read loop on a goroutine the endpoint owns.
// The caller has counted it in ep.wg already.
func (ep *endpoint) startReading(s *Session) {
	s.reading.Store(true)
	s.startHeartbeat()
	go func() {
		defer ep.wg.Done()
		s.readerID.Store(goroutineID())
		defer func() {
			if r := recover(); r != nil {
				s.readLoopPanicked(r)
			}
		}()
		s.conn.ReadLoop()
	}()
}

// readLoopPanicked ends a session whose read loop panicked inside gws. gws
// recovers panics in the event handlers, not in its own frame parser, and a
// peer can make that panic: gws v1.9.1 turns a 64-bit frame length with the
// top bit set (RFC 6455 forbids it) into a negative int and slices with it.
// Left alone that panic would kill the process and every session in it; here
// it closes this one session as a protocol error. gws's OnClose never runs
// after such a panic, so the session's own close path runs instead.
func (s *Session) readLoopPanicked(r any) {
	err := fmt.Errorf("netmsg: the WebSocket reader failed on the peer's input: %v", r)
	// protocolErrorText logs err and reports it to OnError; the stack is only
	// for whoever debugs gws.
	s.ep.cfg.logger.Debug("netmsg: read loop panic", "session", s.id, "stack", string(debug.Stack()))
	s.protocolErrorText(err, "malformed frame")
	_ = s.conn.NetConn().Close()
	s.onClose(s.closedErr())
}
