package netmsg_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netmsg/netmsg"
)

// Calls without a ctx deadline share the session's one call timer: each
// still fails at its own RequestTimeout (not before, not much later), its
// handler on the peer is cancelled, answered calls are left alone, and the
// timer is disarmed once nothing waits.
func TestDefaultTimeoutsShareOneTimer(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	cancelled := make(chan time.Time, 4)
	_, cli := pair(t, []netmsg.ServerOption{netmsg.WithSessionConcurrency(4)},
		[]netmsg.ClientOption{netmsg.WithRequestTimeout(timeout)},
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, p Slow) (Pong, error) {
				select {
				case <-ctx.Done():
					cancelled <- time.Now()
					// The handler's own deadline (from timeout_ms) may come a
					// hair before the caller's: answer only once the caller
					// has certainly given up, so the answer is late.
					time.Sleep(timeout)
				case <-time.After(p.D):
				}
				return Pong{N: 1}, nil
			})
		})

	type result struct {
		err     error
		elapsed time.Duration
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	start := func(i int, d time.Duration) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			_, err := netmsg.SendRequest(context.Background(), cli, Slow{D: d})
			results[i] = result{err, time.Since(t0)}
		}()
	}
	start(0, time.Minute)
	time.Sleep(timeout / 2)
	start(1, time.Minute)
	start(2, time.Millisecond) // answered long before its deadline
	wg.Wait()

	for i := range 2 {
		require.ErrorIs(t, results[i].err, context.DeadlineExceeded, "call %d", i)
		assert.Equal(t, netmsg.CodeDeadlineExceeded, netmsg.CodeOf(results[i].err))
		assert.GreaterOrEqual(t, results[i].elapsed, timeout-5*time.Millisecond, "call %d failed early", i)
		assert.Less(t, results[i].elapsed, timeout+3*time.Second, "call %d failed late", i)
		t.Logf("call %d timed out after %v", i, results[i].elapsed)
	}
	require.NoError(t, results[2].err)
	for i := range 2 {
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			t.Fatalf("handler %d was not cancelled", i)
		}
	}
	require.Eventually(t, func() bool {
		pending, armed := netmsg.PendingCallsForTest(cli.Session())
		return pending == 0 && !armed
	}, 5*time.Second, 10*time.Millisecond, "the call timer stays armed with nothing pending")
}

// Every answer handed to a caller is taken back off the session's count of
// waking callers (which makes a sender yield before it writes, so that the
// next requests of callers just answered share its write): answers,
// errors, and answers that raced with their caller giving up.
func TestWakingCallersBalance(t *testing.T) {
	t.Parallel()
	_, cli := pair(t, []netmsg.ServerOption{netmsg.WithSessionConcurrency(8)}, nil,
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				switch p.N % 3 {
				case 1:
					return Pong{}, netmsg.Errorf(netmsg.CodeInvalidArgument, "odd one %d", p.N)
				case 2:
					time.Sleep(time.Duration(p.N%5) * 100 * time.Microsecond)
				}
				return Pong{N: p.N}, nil
			})
		})
	const callers, each = 16, 200
	var answered, failed, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := g*each + i
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if n%4 == 0 {
					// Gives up around the time the answer comes, so some
					// answers race with the abandon.
					ctx, cancel = context.WithTimeout(ctx, time.Duration(n%7)*50*time.Microsecond)
				}
				_, err := netmsg.SendRequest(ctx, cli, Ping{N: n})
				cancel()
				switch {
				case err == nil:
					answered.Add(1)
				case netmsg.CodeOf(err) == netmsg.CodeInvalidArgument:
					failed.Add(1)
				default:
					require.ErrorIs(t, err, context.DeadlineExceeded)
					gaveUp.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("answered %d, errors %d, gave up %d", answered.Load(), failed.Load(), gaveUp.Load())
	assert.Positive(t, answered.Load())
	assert.Positive(t, failed.Load())
	assert.Equal(t, int64(callers*each), answered.Load()+failed.Load()+gaveUp.Load())
	assert.Equal(t, 0, netmsg.WakingCallersForTest(cli.Session()))
}
