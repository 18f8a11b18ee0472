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

// The wheel's bookkeeping: which slot a session joins, which sessions a
// firing ticks, when the timer is set for, indexes after swap-removal, and
// a timer only while the wheel has sessions. Slots are an hour/64 long here,
// so the real timer never fires during the test.
func TestHeartbeatWheel(t *testing.T) {
	w := &hbWheel{d: int64(time.Hour) / hbSlots}
	at := func(n int64) time.Time { return monoEpoch.Add(time.Duration(n*w.d + w.d/2)) }
	base := w.slotAt(time.Now()) + 1000
	ss := make([]*Session, 5)
	for i := range ss {
		ss[i] = new(Session)
	}
	w.add(ss[0], at(base))
	require.True(t, w.armed)
	defer w.timer.Stop()
	assert.Equal(t, base+hbSlots, w.target, "the first tick a period after the first session joined")
	w.add(ss[1], at(base))
	// Later sessions join the slot of their own time; the timer stays.
	w.add(ss[2], at(base+3))
	w.add(ss[3], at(base+10))
	assert.Equal(t, base+hbSlots, w.target)
	assert.Equal(t, []uint8{uint8(mod(base)), uint8(mod(base)), uint8(mod(base + 3)), uint8(mod(base + 10))}, w.slot)

	due := w.advance(base+hbSlots, at(base+hbSlots))
	assert.ElementsMatch(t, ss[:2], due, "a period after they joined")
	assert.Equal(t, base+3+hbSlots, w.target, "then the next slot with sessions")
	// Late: two slots' worth have come at once.
	due = w.advance(base+10+hbSlots, at(base+10+hbSlots))
	assert.ElementsMatch(t, ss[2:4], due)
	assert.Equal(t, base+2*hbSlots, w.target, "the first two again, a turn after their last tick")
	// Very late: everyone once.
	due = w.advance(base+5*hbSlots, at(base+5*hbSlots))
	assert.ElementsMatch(t, ss[:4], due)
	// One joining while the timer is set for a later slot counts the empty
	// slots before it as done, so its first tick is a whole turn away.
	w.done, w.target = base+5*hbSlots, base+5*hbSlots+3
	w.add(ss[4], at(base+5*hbSlots+2))
	assert.Equal(t, uint8(mod(base+5*hbSlots+2)), w.slot[4])

	w.remove(ss[1])
	assert.False(t, ss[1].hb.inWheel)
	require.Len(t, w.sessions, 4)
	for i, s := range w.sessions {
		assert.Equal(t, int32(i), s.hb.idx, "indexes follow the swap")
	}
	assert.Same(t, ss[4], w.sessions[1])
	assert.Equal(t, uint8(mod(base+5*hbSlots+2)), w.slot[1], "the slot moves with its session")
	w.remove(ss[1]) // twice: nothing
	for _, s := range []*Session{ss[0], ss[2], ss[3], ss[4]} {
		w.remove(s)
	}
	assert.Nil(t, w.sessions, "an emptied wheel keeps no arrays")
	assert.False(t, w.armed, "no timer without sessions")

	// A clock before monoEpoch (a test's fake clock) still maps to a slot.
	early := monoEpoch.Add(-time.Duration(3*w.d + 1))
	assert.Equal(t, int64(-4), w.slotAt(early))
	assert.Equal(t, int64(hbSlots-4), mod(w.slotAt(early)))
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
