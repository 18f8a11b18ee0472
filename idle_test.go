package netmsg

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An idle session's memory is mostly its Session struct, allocated in one
// piece: 512 bytes is a size class of the Go allocator, and the next one up
// is 576. Something only a busy or closing session needs belongs behind a
// pointer made on first use (as sessionExt, callbackState, lazyCond and the
// Done channel are), so that idle sessions do not pay for it.
func TestSessionSize(t *testing.T) {
	var s Session
	t.Logf("Session %d B: outbound %d, mailbox %d, calls %d, heartbeat %d, callbacks %d",
		unsafe.Sizeof(s), unsafe.Sizeof(s.out), unsafe.Sizeof(s.mbox), unsafe.Sizeof(s.calls), unsafe.Sizeof(s.hb), unsafe.Sizeof(s.cbq))
	assert.LessOrEqual(t, unsafe.Sizeof(s), uintptr(512), "the Session struct of every idle session (bench/README.md, idle memory)")
}

func TestSessionDoneMadeOnDemand(t *testing.T) {
	var s Session
	assert.False(t, s.isDone())
	ch := s.doneChan()
	assert.Equal(t, ch, s.doneChan(), "one channel")
	select {
	case <-ch:
		t.Fatal("closed before the connection ended")
	default:
	}
	s.markDone()
	<-ch
	assert.True(t, s.isDone())
	<-s.doneChan()

	var never Session // nobody asked before the end
	never.markDone()
	assert.True(t, never.isDone())
	<-never.doneChan()
}

// The wheel's bookkeeping: slots, indexes after swap-removal, and its timer
// armed only while it has sessions.
func TestHeartbeatWheelSlots(t *testing.T) {
	w := &hbWheel{period: time.Hour, d: int64(time.Hour) / hbSlots} // never fires here
	ss := make([]*Session, 5)
	now := time.Now()
	for i := range ss {
		ss[i] = new(Session)
		w.add(ss[i], now)
	}
	require.True(t, w.armed)
	defer w.timer.Stop()
	cur := monoNanos(now) / w.d
	assert.Equal(t, cur+hbSlots, w.target, "the first tick a period after the first session joined")
	slot := ss[0].hb.slot
	for i, s := range ss {
		assert.True(t, s.hb.inWheel)
		assert.Equal(t, slot, s.hb.slot, "joined within one slot")
		assert.Equal(t, int32(i), s.hb.idx)
	}
	// A later session joins the slot of its own time, and must not come
	// before the timer's target.
	later := new(Session)
	w.add(later, now.Add(time.Hour/hbSlots*3))
	assert.Equal(t, uint8((cur+3)%hbSlots), later.hb.slot)
	w.remove(later)

	w.remove(ss[1])
	assert.False(t, ss[1].hb.inWheel)
	q := w.slots[slot]
	require.Len(t, q, 4)
	for i, s := range q {
		assert.Equal(t, int32(i), s.hb.idx, "indexes follow the swap")
	}
	assert.Same(t, ss[4], q[1])
	w.remove(ss[1]) // twice: nothing
	for _, s := range []*Session{ss[0], ss[2], ss[3], ss[4]} {
		w.remove(s)
	}
	assert.Zero(t, w.n)
	assert.Nil(t, w.slots[slot], "an emptied slot keeps no array")
	assert.False(t, w.armed, "no timer without sessions")
}

// The base context is made on first use; one made after the close began is
// cancelled with the close's cause, like one that existed then.
func TestSessionContextMadeOnDemand(t *testing.T) {
	type key struct{}
	s := &Session{base: context.WithValue(context.Background(), key{}, 1)}
	assert.Nil(t, s.lazyCtx.Load(), "none before it is asked for")
	ctx := s.Context()
	assert.Equal(t, ctx, s.Context(), "one context")
	assert.Equal(t, 1, ctx.Value(key{}))
	assert.NoError(t, ctx.Err())

	ce := &CloseError{Reason: CloseNormal, Code: closeCodeNormal, Text: "bye"}
	late := &Session{base: context.Background()}
	late.cause.Store(ce)
	ctx = late.Context()
	require.Error(t, ctx.Err())
	assert.Same(t, ce, context.Cause(ctx))
}
