package netmsg

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/wire"
)

// calls are the requests this side sent on a session, waiting for their
// answers. When the session begins to close every one fails at once with
// the *CloseError, and new ones are refused.
//
// Calls without a deadline of their ctx run out at the endpoint's
// RequestTimeout. They need no timer each: one timer per session is armed
// for the earliest such deadline, and when it fires it fails every call whose
// deadline has passed and re-arms itself for the next (see expire). Since
// every such call gets the same timeout, the timer fires about once per
// RequestTimeout while calls keep coming, whatever their rate.
type calls struct {
	mu      sync.Mutex
	pending map[uint64]*call
	closed  *CloseError
	nextID  uint64

	timer *time.Timer
	armed int64 // unix nanoseconds the timer fires at; 0 when it is not armed
	// Ids of calls whose caller gave up, so that their answers, when they
	// come, are counted as late rather than unknown. Bounded: the oldest
	// are forgotten first.
	abandoned     map[uint64]struct{}
	abandonedRing []uint64
	abandonedNext int32

	// waking counts the callers handed their answer (deliver) that have not
	// yet taken it: goroutines made runnable that may be about to send
	// again on this session (outbound.push).
	waking atomic.Int32
}

type callResult struct {
	in  *inbound
	err error
}

type call struct {
	ch       chan callResult
	deadline int64  // unix nanoseconds when the session's timer fails it; 0: its ctx bounds it
	name     string // the request's type name, for the timeout error
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan callResult, 1)} }}

// register adds a pending call and returns its id, or the *CloseError when
// the session is closing. A call with a deadline arms the session's timer
// when it would fire later than that (or not at all).
func (cs *calls) register(s *Session, c *call) (uint64, *CloseError) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed != nil {
		return 0, cs.closed
	}
	cs.nextID++
	if cs.pending == nil {
		cs.pending = make(map[uint64]*call)
	}
	cs.pending[cs.nextID] = c
	if dl := c.deadline; dl != 0 && (cs.armed == 0 || dl < cs.armed) {
		cs.arm(s, dl, time.Now().UnixNano())
	}
	return cs.nextID, nil
}

// arm sets the timer to fire at dl; cs.mu is held.
func (cs *calls) arm(s *Session, dl, now int64) {
	d := time.Duration(max(dl-now, 0))
	if cs.timer == nil {
		cs.timer = time.AfterFunc(d, s.expireCalls)
	} else {
		cs.timer.Reset(d)
	}
	cs.armed = dl
}

// expireCalls runs on the session's call timer: every call whose deadline
// has passed fails with its timeout error, as if its caller had given up,
// and its peer is told to cancel it. The timer is armed again for the
// earliest deadline left.
func (s *Session) expireCalls() {
	cs := &s.calls
	now := time.Now().UnixNano()
	type expired struct {
		id uint64
		c  *call
	}
	var due []expired
	cs.mu.Lock()
	if cs.closed != nil {
		cs.armed = 0
		cs.mu.Unlock()
		return
	}
	next := int64(0)
	for id, c := range cs.pending {
		switch {
		case c.deadline == 0:
		case c.deadline <= now:
			due = append(due, expired{id, c})
		case next == 0 || c.deadline < next:
			next = c.deadline
		}
	}
	for _, e := range due {
		cs.abandonLocked(e.id)
	}
	cs.armed = 0
	if next != 0 {
		cs.arm(s, next, now)
	}
	cs.mu.Unlock()
	for _, e := range due {
		e.c.ch <- callResult{err: callError(context.DeadlineExceeded, e.c.name)}
		s.sendCancel(e.id)
	}
}

// fail fails every pending call with ce, at once, and refuses new ones.
func (cs *calls) fail(ce *CloseError) {
	cs.mu.Lock()
	pending := cs.pending
	cs.pending, cs.closed = nil, ce
	if cs.timer != nil {
		cs.timer.Stop()
		cs.armed = 0
	}
	cs.mu.Unlock()
	for _, c := range pending {
		c.ch <- callResult{err: ce}
	}
}

func (cs *calls) remove(id uint64) bool {
	cs.mu.Lock()
	_, ok := cs.pending[id]
	delete(cs.pending, id)
	cs.mu.Unlock()
	return ok
}

// maxAbandoned bounds how many given-up call ids a session remembers.
const maxAbandoned = 1024

// abandon removes the pending call id because its caller gave up, and
// remembers the id so a late answer is told apart from an unknown one. It
// reports whether the call was still pending.
func (cs *calls) abandon(id uint64) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.pending[id]; !ok {
		return false
	}
	cs.abandonLocked(id)
	return true
}

// abandonLocked is abandon of a pending id with cs.mu held.
func (cs *calls) abandonLocked(id uint64) {
	delete(cs.pending, id)
	if cs.abandoned == nil {
		cs.abandoned = make(map[uint64]struct{})
	}
	if len(cs.abandonedRing) < maxAbandoned {
		cs.abandonedRing = append(cs.abandonedRing, id)
	} else {
		delete(cs.abandoned, cs.abandonedRing[cs.abandonedNext])
		cs.abandonedRing[cs.abandonedNext] = id
		cs.abandonedNext = (cs.abandonedNext + 1) % maxAbandoned
	}
	cs.abandoned[id] = struct{}{}
}

// take removes and returns the call waiting for id; late reports an id whose
// caller gave up.
func (cs *calls) take(id uint64) (c *call, late bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c = cs.pending[id]
	if c != nil {
		delete(cs.pending, id)
	} else if _, late = cs.abandoned[id]; late {
		delete(cs.abandoned, id) // its slot in the ring is reused in turn
	}
	return c, late
}

// took notes that a caller has taken its result: one fewer is waking if
// deliver handed it over.
func (cs *calls) took(r callResult) {
	if r.in != nil {
		cs.waking.Add(-1)
	}
}

func (cs *calls) len() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.pending)
}

// deliver hands a RESPONSE or ERROR, on the read loop, to the call waiting
// for it.
func (s *Session) deliver(in *inbound) {
	c, late := s.calls.take(in.env.ID)
	if c == nil {
		if late {
			s.ep.stats.lateResponses.Add(1)
		} else {
			s.ep.stats.unknownResponses.Add(1)
		}
		in.recycle()
		return
	}
	s.calls.waking.Add(1)
	c.ch <- callResult{in: in}
}

// call sends a request and waits for its answer until ctx ends or, when
// deadline is not zero, the deadline passes. The returned inbound holds the
// response payload; the caller recycles it.
func (s *Session) call(ctx context.Context, req any, deadline time.Time) (*inbound, error) {
	return s.callNamed(ctx, TypeName(req), req, outgoingMetadata(ctx), deadline)
}

// callNamed is call with the type name and metadata given: req may be a
// rawPayload, already encoded with the session's serializer (a request
// another node of the cluster forwards).
func (s *Session) callNamed(ctx context.Context, name string, req any, md map[string]string, deadline time.Time) (*inbound, error) {
	if err := ctx.Err(); err != nil {
		return nil, callError(err, name) // over before it began: send nothing
	}
	var timeoutMs uint64
	c := callPool.Get().(*call)
	c.deadline, c.name = 0, name
	if dl, ok := ctx.Deadline(); ok {
		timeoutMs = uint64(max(time.Until(dl).Milliseconds(), 1))
	} else if !deadline.IsZero() {
		// The session's call timer bounds it (calls.expire); no timer of
		// its own.
		d := time.Until(deadline)
		timeoutMs = uint64(max(d.Milliseconds(), 1))
		c.deadline = deadline.UnixNano()
	}
	id, ce := s.calls.register(s, c)
	if ce != nil {
		callPool.Put(c)
		return nil, ce
	}

	f, err := s.encode(wire.KindRequest, id, name, req, timeoutMs, md)
	if err == nil {
		err = s.out.push(f)
	}
	if err != nil {
		if s.calls.remove(id) {
			callPool.Put(c)
			return nil, err
		}
		r := <-c.ch // the session closed meanwhile and answered the call
		callPool.Put(c)
		s.calls.took(r)
		return nil, r.err
	}

	var cause error
	select {
	case r := <-c.ch:
		callPool.Put(c)
		s.calls.took(r)
		return r.result()
	case <-ctx.Done():
		cause = ctx.Err()
	}
	if s.calls.abandon(id) {
		callPool.Put(c)
		s.sendCancel(id)
		return nil, callError(cause, name)
	}
	r := <-c.ch // an answer is being delivered; it is late
	callPool.Put(c)
	s.calls.took(r)
	if r.in != nil {
		s.ep.stats.lateResponses.Add(1)
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

func (s *Session) sendCancel(id uint64) {
	f := getFrame()
	f.b = wire.AppendHeaderAndPayload(f.b[:0], wire.KindCancel, id, "", nil, 0, nil)
	_ = s.out.push(f)
}
