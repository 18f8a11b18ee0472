package netmsg

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// handlerCtx is a request handler's context: the session's context (its
// values, and cancelled when the session closes) with the caller's deadline,
// cancelled also by the caller's CANCEL and when the handler returns.
//
// Most handlers never wait on ctx.Done(), so a handlerCtx starts as one small
// object that answers Deadline, Err and Value from its deadline, a flag and
// its parent, with no timer and no link into the parent. The first Done(), or
// an Err or Value that finds it over (cancelled, past its deadline, or the
// session gone), creates the standard context (context.WithDeadline or
// WithCancel on the parent) and from then on delegates everything to it. So
// the answers are those of the standard library: context.Cause, AfterFunc and
// contexts derived from it (registered as children, no goroutine) included.
type handlerCtx struct {
	parent   context.Context
	deadline time.Time // zero: none

	mu       sync.Mutex
	canceled bool                   // cancel ran before std existed
	std      atomic.Pointer[stdCtx] // set once, under mu

	// s and run: the handler runs inline, as run run of s's read loop
	// (inline.go); Done hands the reading off first. nil otherwise.
	s   *Session
	run uint64
}

// stdCtx is the standard context a handlerCtx delegates to once it exists.
type stdCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// newHandlerCtx returns the context of a request that the caller allows
// timeout to answer (0: no deadline).
func newHandlerCtx(parent context.Context, timeout time.Duration) *handlerCtx {
	c := &handlerCtx{parent: parent}
	if timeout > 0 {
		c.deadline = time.Now().Add(timeout)
	}
	return c
}

func (c *handlerCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *handlerCtx) Done() <-chan struct{} {
	if c.s != nil && c.s.rl.Load().word.Load() == c.run<<2|rlInline {
		c.s.handoff(c.run)
	}
	return c.materialize().Done()
}

func (c *handlerCtx) Err() error {
	if std := c.std.Load(); std != nil {
		return std.ctx.Err()
	}
	if c.over() {
		// Latch the answer: a later Err must not change its mind when a
		// second reason (the session closing after the deadline) comes along.
		return c.materialize().Err()
	}
	return nil
}

func (c *handlerCtx) Value(key any) any {
	if std := c.std.Load(); std != nil {
		return std.ctx.Value(key)
	}
	if c.isCanceled() || c.expired() {
		// context.Cause finds the nearest cancelled context through Value
		// (before Go 1.26 without asking Err first); the standard context
		// answers with this one's own cause.
		return c.materialize().Value(key)
	}
	return c.parent.Value(key)
}

func (c *handlerCtx) String() string { return "netmsg.handlerCtx" }

// cancel cancels the context with context.Canceled: the caller sent CANCEL or
// the handler has returned. Before the standard context exists it only sets a
// flag, and not even that when the parent ended first (then the parent's error
// and cause are the answer, as with the standard library).
func (c *handlerCtx) cancel() {
	c.mu.Lock()
	std := c.std.Load()
	if std == nil && c.parent.Err() == nil {
		c.canceled = true
	}
	c.mu.Unlock()
	if std != nil {
		std.cancel()
	}
}

// over reports whether the context has ended while its standard context does
// not exist yet: cancelled, past the deadline, or the parent done.
func (c *handlerCtx) over() bool {
	return c.isCanceled() || c.expired() || c.parent.Err() != nil
}

func (c *handlerCtx) isCanceled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.canceled
}

func (c *handlerCtx) expired() bool {
	return !c.deadline.IsZero() && !time.Now().Before(c.deadline)
}

// materialize returns the standard context, creating it on first use. A
// context cancelled before then is created cancelled, detached from the parent
// (whose later end must not become its cause) but with the parent's values.
// Otherwise WithDeadline decides: the parent's error when the parent has
// ended, DeadlineExceeded when the deadline has passed (at once, no timer).
// The one answer that can differ from a standard context with a timer: a
// parent that ended after the deadline passed unobserved is taken to have
// ended first; both are true of such a request.
func (c *handlerCtx) materialize() context.Context {
	if std := c.std.Load(); std != nil {
		return std.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if std := c.std.Load(); std != nil {
		return std.ctx
	}
	std := new(stdCtx)
	switch {
	case c.canceled:
		std.ctx, std.cancel = context.WithCancel(context.WithoutCancel(c.parent))
		std.cancel()
	case c.deadline.IsZero():
		std.ctx, std.cancel = context.WithCancel(c.parent)
	default:
		std.ctx, std.cancel = context.WithDeadline(c.parent, c.deadline)
	}
	c.std.Store(std)
	return std.ctx
}
