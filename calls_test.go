package netmsg_test

import (
	"context"
	"sync"
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
