package netmsg

import (
	"context"
	"sync"
	"time"

	"github.com/netmsg/netmsg/internal/wire"
)

// calls are the requests this side sent on a session, waiting for their
// answers. When the session begins to close every one fails at once with
// the *CloseError, and new ones are refused.
type calls struct {
	mu      sync.Mutex
	pending map[uint64]*call
	closed  *CloseError
	nextID  uint64
	// Ids of calls whose caller gave up, so that their answers, when they
	// come, are counted as late rather than unknown. Bounded: the oldest
	// are forgotten first.
	abandoned     map[uint64]struct{}
	abandonedRing []uint64
	abandonedNext int
}

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

// register adds a pending call and returns its id, or the *CloseError when
// the session is closing.
func (cs *calls) register(c *call) (uint64, *CloseError) {
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
	return cs.nextID, nil
}

// fail fails every pending call with ce, at once, and refuses new ones.
func (cs *calls) fail(ce *CloseError) {
	cs.mu.Lock()
	pending := cs.pending
	cs.pending, cs.closed = nil, ce
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
	return true
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
	id, ce := s.calls.register(c)
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
	if s.calls.abandon(id) {
		callPool.Put(c)
		s.sendCancel(id)
		return nil, callError(cause, name)
	}
	r := <-c.ch // an answer is being delivered; it is late
	callPool.Put(c)
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
