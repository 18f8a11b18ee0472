package integration_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaultCloseRacesReconnect breaks the link and calls Close from several
// goroutines after a random pause, so that Close lands in every phase of a
// reconnect: backing off, dialling, in the handshake, inside OnConnect, or
// just connected. Close always returns promptly, nothing fires after it, and
// no connection is left open.
func TestFaultCloseRacesReconnect(t *testing.T) {
	t.Parallel()
	const rounds = 30
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	lcEchoHandler(srv.Server, "")
	relay := lcRelay(t, srv.Addr)
	relay.Delay(2 * time.Millisecond) // a handshake that takes a moment

	for i := range rounds {
		var onConnect, onDisconnect, onReconnecting atomic.Int32
		var closed atomic.Bool
		var after atomic.Int32 // callbacks that started after Close returned
		cli := netmsg.NewClient(lcRelayURL(relay),
			netmsg.WithReconnect(lcConstBackOff()),
			netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
				if closed.Load() {
					after.Add(1)
				}
				onConnect.Add(1)
				select { // a sign-in that takes a little while
				case <-time.After(time.Duration(rand.IntN(10)) * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
				_, err := netmsg.SendRequest(ctx, s, lcEcho{Text: "sign-in"})
				return err
			}),
			netmsg.WithOnDisconnect(func(*netmsg.CloseError) {
				if closed.Load() {
					after.Add(1)
				}
				onDisconnect.Add(1)
			}),
			netmsg.WithOnReconnecting(func(int, time.Duration) {
				if closed.Load() {
					after.Add(1)
				}
				onReconnecting.Add(1)
			}),
		)
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		require.NoError(t, cli.Connect(ctx), "round %d", i)
		cancel()

		relay.Latest().Reset()
		time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)

		var wg sync.WaitGroup
		start := time.Now()
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				assert.NoError(t, cli.Close())
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(nettest.Wait):
			t.Fatalf("round %d: Close did not return (state %v)", i, cli.State())
		}
		closed.Store(true)
		took := time.Since(start)
		assert.Less(t, took, lcCloseBound, "round %d: Close took %v", i, took)
		assert.Equal(t, netmsg.Closed, cli.State(), "round %d", i)
		assert.ErrorIs(t, cli.Err(), netmsg.ErrClosed, "round %d", i)

		time.Sleep(30 * time.Millisecond) // more than one backoff step
		assert.Zero(t, after.Load(), "round %d: callbacks after Close returned", i)
		assert.GreaterOrEqual(t, onDisconnect.Load(), onConnect.Load(),
			"round %d: a session that got OnConnect ended without OnDisconnect", i)
	}

	require.Eventually(t, func() bool { return srv.Server.SessionCount() == 0 }, nettest.Wait, time.Millisecond,
		"connections left open after Close: %d", srv.Server.SessionCount())
	lcSettle()
	rec.AssertClosedOnce(t)
}
