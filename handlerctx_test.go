package netmsg

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

// TestHandlerCtx checks that a handlerCtx answers as context.WithDeadline (or
// WithCancel) on the same parent would, whether or not Done was called before
// it ended. Deadlines in the past end it at once, so nothing here waits for a
// clock.
func TestHandlerCtx(t *testing.T) {
	t.Parallel()
	sessionGone := errors.New("session gone")
	cases := []struct {
		name      string
		timeout   time.Duration // 0: none; 1ns: already past when checked
		earlyDone bool          // call Done before ending it
		end       func(c *handlerCtx, parentCancel context.CancelCauseFunc)
		err       error
		cause     error
	}{
		{"open", time.Hour, false, func(*handlerCtx, context.CancelCauseFunc) {}, nil, nil},
		{"open, no deadline", 0, true, func(*handlerCtx, context.CancelCauseFunc) {}, nil, nil},
		{"cancel", time.Hour, false, func(c *handlerCtx, _ context.CancelCauseFunc) { c.cancel() }, context.Canceled, context.Canceled},
		{"cancel after Done", time.Hour, true, func(c *handlerCtx, _ context.CancelCauseFunc) { c.cancel() }, context.Canceled, context.Canceled},
		{"cancel, no deadline", 0, false, func(c *handlerCtx, _ context.CancelCauseFunc) { c.cancel() }, context.Canceled, context.Canceled},
		{"deadline passed", time.Nanosecond, false, func(*handlerCtx, context.CancelCauseFunc) {}, context.DeadlineExceeded, context.DeadlineExceeded},
		{"deadline passed after Done", time.Nanosecond, true, func(*handlerCtx, context.CancelCauseFunc) {}, context.DeadlineExceeded, context.DeadlineExceeded},
		{"session closed", time.Hour, false, func(_ *handlerCtx, pc context.CancelCauseFunc) { pc(sessionGone) }, context.Canceled, sessionGone},
		{"session closed after Done", time.Hour, true, func(_ *handlerCtx, pc context.CancelCauseFunc) { pc(sessionGone) }, context.Canceled, sessionGone},
		{"session closed, then cancel", 0, false, func(c *handlerCtx, pc context.CancelCauseFunc) { pc(sessionGone); c.cancel() }, context.Canceled, sessionGone},
		{"cancel, then session closed", 0, false, func(c *handlerCtx, pc context.CancelCauseFunc) { c.cancel(); pc(sessionGone) }, context.Canceled, context.Canceled},
		{"cancel, then session closed, after Done", 0, true, func(c *handlerCtx, pc context.CancelCauseFunc) { c.cancel(); pc(sessionGone) }, context.Canceled, context.Canceled},
	}
	for _, tc := range cases {
		for _, causeFirst := range []bool{false, true} {
			name := tc.name
			if causeFirst {
				name += ", Cause first"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				parent, parentCancel := context.WithCancelCause(context.WithValue(context.Background(), ctxKey{}, "base"))
				defer parentCancel(nil)
				c := newHandlerCtx(parent, tc.timeout)
				if tc.timeout == time.Nanosecond {
					time.Sleep(time.Millisecond) // let the nanosecond pass
				}
				dl, ok := c.Deadline()
				assert.Equal(t, tc.timeout > 0, ok)
				assert.Equal(t, tc.timeout > 0, !dl.IsZero())
				var done <-chan struct{}
				if tc.earlyDone {
					done = c.Done()
				}
				tc.end(c, parentCancel)
				if tc.err != nil && done != nil {
					<-done // an armed context must close the channel it handed out
				}
				if causeFirst { // Cause asks Value before anything asked Err
					assert.Equal(t, tc.cause, context.Cause(c))
				}
				assert.Equal(t, tc.err, c.Err())
				assert.Equal(t, tc.cause, context.Cause(c))
				assert.Equal(t, tc.err, c.Err(), "Err is stable")
				assert.Equal(t, "base", c.Value(ctxKey{}), "values of the parent")
				select {
				case <-c.Done():
					assert.Error(t, tc.err, "Done closed on an open context")
				default:
					assert.NoError(t, tc.err, "Done not closed on an ended context")
				}
				dl2, ok2 := c.Deadline()
				assert.Equal(t, dl, dl2)
				assert.Equal(t, ok, ok2)
			})
		}
	}
}

// TestHandlerCtxArmed waits for a short deadline through Done, as a handler
// selecting on ctx does, and checks that contexts derived from it follow it.
func TestHandlerCtxArmed(t *testing.T) {
	t.Parallel()
	c := newHandlerCtx(context.Background(), 20*time.Millisecond)
	child, cancel := context.WithCancel(c)
	defer cancel()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	<-c.Done()
	<-child.Done()
	<-ran
	assert.Equal(t, context.DeadlineExceeded, c.Err())
	assert.Equal(t, context.DeadlineExceeded, child.Err())
	assert.Equal(t, context.DeadlineExceeded, context.Cause(child))
	c.cancel() // after the deadline: no change
	assert.Equal(t, context.DeadlineExceeded, c.Err())
}

// TestHandlerCtxConcurrent runs every method at once from several
// goroutines while CANCEL, the session and the handler's return end it; run
// with -race.
func TestHandlerCtxConcurrent(t *testing.T) {
	t.Parallel()
	for range 200 {
		parent, parentCancel := context.WithCancelCause(context.Background())
		c := newHandlerCtx(parent, time.Hour)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch i {
				case 0:
					<-c.Done()
				case 1:
					for c.Err() == nil {
						_ = c.Value(ctxKey{})
					}
				case 2:
					c.cancel()
				case 3:
					parentCancel(errors.New("gone"))
				}
			}()
		}
		wg.Wait()
		require.Error(t, c.Err())
		require.Error(t, context.Cause(c))
		parentCancel(nil)
	}
}
