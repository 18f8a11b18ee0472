package netmsg

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// Broadcast sends msg to every open session of the server except those
// listed in except. It works like Group.Broadcast: encoded once per
// serializer in use, queued for each session without waiting for any
// socket, no goroutine per session; a session whose queue would overflow is
// closed as a slow consumer. It fails if ctx has ended, and returns an error
// when msg cannot be encoded with one of the serializers in use (the
// sessions using the others still get it).
func (srv *Server) Broadcast(ctx context.Context, msg any, except ...*Session) error {
	return srv.broadcast(ctx, fanTarget{all: true}, msg, except)
}

// broadcast is where Group.Broadcast and Server.Broadcast meet.
func (srv *Server) broadcast(ctx context.Context, t fanTarget, msg any, except []*Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if srv.ep.ix != nil {
		return srv.ep.broadcastIntercepted(ctx, t.group, msg, func(ctx context.Context, msg any) error {
			return srv.broadcastValue(ctx, t, msg, except)
		})
	}
	return srv.broadcastValue(ctx, t, msg, except)
}

// broadcastValue is broadcast past its interceptors. In a cluster the
// message is encoded once per serializer of the server, for this node's
// sessions and the other nodes alike, and published to the others after it
// is queued here.
func (srv *Server) broadcastValue(ctx context.Context, t fanTarget, msg any, except []*Session) error {
	m := fanMsg{name: TypeName(msg), v: msg, md: outgoingMetadata(ctx), limit: srv.cfg.maxMessageSize}
	if srv.node == nil {
		_, err := srv.fanOut(t, &m, exceptSet{sessions: except})
		return err
	}
	data := srv.node.encodeBroadcast(t, &m)
	_, err := srv.fanOut(t, &m, exceptSet{sessions: except})
	return errors.Join(err, srv.node.publishBroadcast(ctx, t, data))
}

// fanTarget says who a broadcast is for: the members of one group, or every
// session of the server.
type fanTarget struct {
	group string
	all   bool
}

// exceptSet is who a broadcast skips: sessions of this server, or session
// ids (a broadcast from another node names its exceptions by id).
type exceptSet struct {
	sessions []*Session
	ids      []string
}

func (e *exceptSet) has(s *Session) bool {
	for _, x := range e.sessions {
		if x == s {
			return true
		}
	}
	for _, id := range e.ids {
		if id == s.id {
			return true
		}
	}
	return false
}

// fanMsg is one broadcast on its way to this server's sessions. It holds
// either the value, encoded the first time a member needs it with each
// serializer, or envelopes already encoded per serializer name (a broadcast
// in a cluster, from this node or another); then v is unused, and a
// serializer whose encoding failed has its error in encodeErrs.
type fanMsg struct {
	name       string
	v          any
	md         map[string]string
	limit      int
	encoded    map[string][]byte
	encodeErrs map[string]error

	// One entry per serializer met so far. Three fit without allocating;
	// a server rarely offers more.
	frames [3]serFrame
	more   []serFrame
	n      int
}

type serFrame struct {
	name string
	f    *frame
	err  error
}

// frameFor returns the frame for sessions using ser, encoding it on first
// need. The frame belongs to m; a caller that queues it takes a reference.
func (m *fanMsg) frameFor(ser serializer.Serializer) (*frame, error) {
	name := ser.Name()
	for i := range min(m.n, len(m.frames)) {
		if m.frames[i].name == name {
			return m.frames[i].f, m.frames[i].err
		}
	}
	for i := range m.more {
		if m.more[i].name == name {
			return m.more[i].f, m.more[i].err
		}
	}
	sf := serFrame{name: name}
	switch {
	case m.encoded != nil:
		b, ok := m.encoded[name]
		switch {
		case m.encodeErrs[name] != nil:
			sf.err = m.encodeErrs[name]
		case !ok:
			sf.err = errors.New("netmsg: a broadcast from another node carries no " + name + " encoding (give every node the same serializers)")
		case len(b) > m.limit:
			sf.err = fmt.Errorf("%w: %s encodes to %d bytes, over the limit of %d", ErrMessageTooLarge, m.name, len(b), m.limit)
		default:
			sf.f = getFrame()
			sf.f.b = append(sf.f.b[:0], b...)
		}
	default:
		sf.f, sf.err = encodeFrame(ser, m.limit, wire.KindMessage, 0, m.name, m.v, 0, m.md)
	}
	if m.n < len(m.frames) {
		m.frames[m.n] = sf
	} else {
		m.more = append(m.more, sf)
	}
	m.n++
	return sf.f, sf.err
}

// finish drops m's own reference to its frames and returns the encoding
// errors, one per serializer that failed.
func (m *fanMsg) finish() error {
	var errs []error
	each := func(sf *serFrame) {
		if sf.f != nil {
			sf.f.release()
			sf.f = nil
		}
		if sf.err != nil {
			errs = append(errs, sf.err)
		}
	}
	for i := range min(m.n, len(m.frames)) {
		each(&m.frames[i])
	}
	for i := range m.more {
		each(&m.more[i])
	}
	return errors.Join(errs...)
}

var (
	sessionListPool  = sync.Pool{New: func() any { return new([]*Session) }}
	outboundListPool = sync.Pool{New: func() any { return new([]*outbound) }}
)

// fanOut delivers m to this server's sessions in t, except those in except,
// and returns how many sessions it was queued for and the encoding errors.
// It is the local half of every broadcast: Group.Broadcast and
// Server.Broadcast call it with their value, and a broadcast that arrives
// from another node (through a broker) calls it with the envelopes that node
// encoded.
//
// The members are copied under the group lock into a pooled slice and the
// lock is released before anything is queued: queueing takes each session's
// outbound lock, and may close a slow member. Sessions that need a writer
// are handed to the endpoint's fan-out writers in chunks (fanAdd), not each
// to a goroutine of its own.
func (srv *Server) fanOut(t fanTarget, m *fanMsg, except exceptSet) (int, error) {
	lp := sessionListPool.Get().(*[]*Session)
	list := (*lp)[:0]
	if t.all {
		srv.mu.Lock()
		for _, s := range srv.sessions {
			list = append(list, s)
		}
		srv.mu.Unlock()
	} else {
		list = srv.groups.snapshot(t.group, list)
	}
	sp := outboundListPool.Get().(*[]*outbound)
	starts := (*sp)[:0]
	sent := 0
	for _, s := range list {
		if except.has(s) {
			continue
		}
		f, err := m.frameFor(s.ser)
		if err != nil {
			continue
		}
		f.refs.Add(1)
		start, ok := s.out.enqueue(f)
		if !ok {
			continue
		}
		sent++
		if start {
			starts = append(starts, &s.out)
			if len(starts) == fanChunk {
				// Writers start on the first members while the rest
				// are queued.
				srv.ep.fanAdd(starts)
				starts = starts[:0]
			}
		}
	}
	srv.ep.fanAdd(starts)
	clear(list)
	clear(starts)
	if cap(list) <= 1<<16 {
		*lp = list[:0]
		sessionListPool.Put(lp)
		*sp = starts[:0]
		outboundListPool.Put(sp)
	}
	return sent, m.finish()
}

// ---- writers for fan-out ----

// fanQueue hands the sessions a broadcast has queued frames for to the
// endpoint's writers. A broadcast to ten thousand sessions must not start ten
// thousand writers (each a goroutine and its stack): the sessions whose
// queue had no writer wait here in order, and a few writers take them one at
// a time, each flushing one session's queue and taking the next.
//
// A writer can block in one member's flush (a peer that does not read) for
// up to the write timeout. A watchdog runs while sessions wait or writers
// flush: a writer whose flush has lasted fanStallCheck counts as stuck, and
// writers are brought in for the waiting sessions as if it were not there.
// A stuck member so delays the others by fanStallCheck at most, once.
type fanQueue struct {
	mu      sync.Mutex
	q       []*outbound
	head    int
	writers int           // writers woken or started for the queue, not yet done with it
	stuck   int           // of those, how many are stuck in one flush
	active  []*fanWriting // writers of the queue now in a flush

	watch    *time.Timer
	watching bool
	stopped  bool
}

// fanWriting is a writer's flush in progress, for the watchdog; guarded by
// fanQueue.mu. Each writer goroutine has one, made when it first serves the
// queue.
type fanWriting struct {
	since time.Time
	at    int // index in fanQueue.active
	stuck bool
}

const (
	// fanPerWriter is how many waiting sessions justify one more writer.
	fanPerWriter = 64
	// fanChunk is how many sessions a large broadcast hands to the writers
	// at a time.
	fanChunk = 2 * fanPerWriter
	// fanStallCheck is how long one flush may last before its writer counts
	// as stuck.
	fanStallCheck = 5 * time.Millisecond
)

// fanWriters is how many writers serve the queue at most, not counting stuck
// ones: the work is system calls, so a few per core.
var fanWriters = max(2, 2*runtime.GOMAXPROCS(0))

// fanAdd queues the sessions in os, each of which has a frame queued and no
// writer (the caller set its writing flag), and wakes or starts writers for
// them.
func (ep *endpoint) fanAdd(os []*outbound) {
	if len(os) == 0 {
		return
	}
	fq := &ep.fan
	fq.mu.Lock()
	fq.q = append(fq.q, os...)
	more := fq.topUp()
	fq.armWatch(ep)
	fq.mu.Unlock()
	ep.fanStart(more)
}

// topUp counts the writers the waiting sessions need beyond those serving
// the queue and not stuck, and returns how many to wake or start; fq.mu is
// held.
func (fq *fanQueue) topUp() int {
	pending := len(fq.q) - fq.head
	want := min(fanWriters, (pending+fanPerWriter-1)/fanPerWriter)
	more := max(0, want-(fq.writers-fq.stuck))
	fq.writers += more
	return more
}

// armWatch starts the watchdog if it is not running; fq.mu is held.
func (fq *fanQueue) armWatch(ep *endpoint) {
	if fq.watching || fq.stopped {
		return
	}
	fq.watching = true
	if fq.watch == nil {
		fq.watch = time.AfterFunc(fanStallCheck, ep.fanWatch)
	} else {
		fq.watch.Reset(fanStallCheck)
	}
}

// fanStart wakes n parked writers for the queue, or starts them.
func (ep *endpoint) fanStart(n int) {
	for range n {
		select {
		case ep.fanWake <- struct{}{}:
		default:
			ep.spawn(ep.fanWriter)
		}
	}
}

// fanWriter is a writer started for the queue.
func (ep *endpoint) fanWriter() { ep.writer(nil) }

// fanServe flushes the sessions waiting in the queue until it is empty. The
// calling writer was counted in fq.writers by whoever woke or started it; w
// is its flush record.
func (ep *endpoint) fanServe(w *fanWriting) {
	fq := &ep.fan
	fq.mu.Lock()
	for fq.head < len(fq.q) {
		o := fq.q[fq.head]
		fq.q[fq.head] = nil
		fq.head++
		w.since = time.Now()
		w.at = len(fq.active)
		fq.active = append(fq.active, w)
		fq.mu.Unlock()

		o.flush()

		fq.mu.Lock()
		last := len(fq.active) - 1
		moved := fq.active[last]
		fq.active[w.at] = moved
		moved.at = w.at
		fq.active[last] = nil
		fq.active = fq.active[:last]
		if w.stuck {
			w.stuck = false
			fq.stuck--
		}
	}
	fq.writers--
	if fq.writers == 0 {
		// Everything is taken: reuse the slice, unless a burst made it big.
		if cap(fq.q) > 1<<14 {
			fq.q = nil
		} else {
			fq.q = fq.q[:0]
		}
		fq.head = 0
	}
	fq.mu.Unlock()
}

// fanWatch runs every fanStallCheck while sessions wait in the queue or a
// writer of the queue is in a flush that is not yet known to be stuck. It
// marks the writers whose flush has lasted fanStallCheck as stuck and brings
// in writers for the waiting sessions in their place.
func (ep *endpoint) fanWatch() {
	fq := &ep.fan
	fq.mu.Lock()
	now := time.Now()
	unknown := false
	for _, w := range fq.active {
		if !w.stuck {
			if now.Sub(w.since) >= fanStallCheck {
				w.stuck = true
				fq.stuck++
			} else {
				unknown = true
			}
		}
	}
	more := fq.topUp()
	if fq.stopped || (fq.head == len(fq.q) && !unknown) {
		fq.watching = false
	} else {
		fq.watch.Reset(fanStallCheck)
	}
	fq.mu.Unlock()
	ep.fanStart(more)
}

// fanStop stops the watchdog; the endpoint is stopping.
func (ep *endpoint) fanStop() {
	fq := &ep.fan
	fq.mu.Lock()
	fq.stopped = true
	if fq.watch != nil {
		fq.watch.Stop()
	}
	fq.watching = false
	fq.mu.Unlock()
}
