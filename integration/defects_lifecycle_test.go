package integration_test

// Regression tests for the lifecycle defects of the session core (issue 9,
// defects 2, 3, 7 and 8), each written as a user hit it.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dfSeq is one of a run of numbered messages.
type dfSeq struct{ N int }

// dfCounter is a dfSeq handler that does a little work per message and
// counts each number once.
type dfCounter struct {
	mu   sync.Mutex
	seen map[int]int
}

func dfAddCounter(r netmsg.Registrar) *dfCounter {
	c := &dfCounter{seen: make(map[int]int)}
	netmsg.AddMessageHandler(r, func(_ context.Context, _ *netmsg.Session, m dfSeq) {
		time.Sleep(time.Millisecond) // some work: the close arrives while it is under way
		c.mu.Lock()
		c.seen[m.N]++
		c.mu.Unlock()
	})
	return c
}

// handled returns how many distinct numbers were handled and how many
// numbers were handled more than once.
func (c *dfCounter) handled() (n, twice int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.seen {
		if k > 1 {
			twice++
		}
	}
	return len(c.seen), twice
}

// waitAll waits up to 3 drain times for all n to be handled.
func (c *dfCounter) waitAll(t testing.TB, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * dfDrain)
	for {
		got, twice := c.handled()
		if got == n {
			assert.Zero(t, twice, "%s: messages handled twice", what)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: handled %d of %d", what, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// dfDrain is the receivers' DisconnectTimeout, which bounds their drain:
// ample for 200 handlers of 1 ms each, also on a loaded machine.
const dfDrain = 10 * time.Second

// ---- defect 2: graceful close keeps what arrived ----

// TestDefectGracefulCloseHandlesWhatArrived: a side sends 200 messages (each
// Send returned nil), then closes gracefully. On the old core the receiver
// handled 0-1 of them: the close cancelled everything at once and dropped
// the rest silently. Now every message that arrived before the close frame
// is handled (within DisconnectTimeout), and nothing is counted as dropped.
func TestDefectGracefulCloseHandlesWhatArrived(t *testing.T) {
	t.Parallel()
	const n = 200
	send := func(t *testing.T, s *netmsg.Session) {
		for i := range n {
			require.NoError(t, s.Send(context.Background(), dfSeq{N: i}))
		}
	}

	t.Run("client sends, then Client.Close", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions(netmsg.WithDisconnectTimeout(dfDrain))...)
		got := dfAddCounter(srv)
		c := nettest.Connect(t, srv.URL)
		rec.NextOpen(t)
		send(t, c.Session())
		require.NoError(t, c.Close())
		got.waitAll(t, n, "server")
		nettest.AssertClose(t, rec.NextClose(t).Err, netmsg.ClosePeerNormal, 1000, true)
		assert.Zero(t, srv.Stats().DroppedInbound)
	})

	t.Run("server sends, then Session.Close", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		c := nettest.NewClient(t, srv.URL, rec.ClientOptions(netmsg.WithDisconnectTimeout(dfDrain))...)
		got := dfAddCounter(c)
		require.NoError(t, c.Connect(context.Background()))
		ss := rec.NextOpen(t)
		send(t, ss)
		require.NoError(t, ss.Close("done"))
		got.waitAll(t, n, "client")
		nettest.AssertClose(t, rec.NextDisconnect(t), netmsg.ClosePeerNormal, 1000, true)
		assert.Zero(t, c.Stats().DroppedInbound)
	})

	t.Run("server broadcasts, then Shutdown", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		c := nettest.NewClient(t, srv.URL, rec.ClientOptions(netmsg.WithDisconnectTimeout(dfDrain))...)
		got := dfAddCounter(c)
		require.NoError(t, c.Connect(context.Background()))
		rec.NextOpen(t)
		for i := range n {
			require.NoError(t, srv.Broadcast(context.Background(), dfSeq{N: i}))
		}
		require.NoError(t, srv.Stop(t, 10*time.Second))
		got.waitAll(t, n, "client")
		nettest.AssertClose(t, rec.NextDisconnect(t), netmsg.CloseServerShutdown, 1001, true)
		assert.Zero(t, c.Stats().DroppedInbound)
	})
}

// ---- defect 3: a client wedged Connected ----

// TestDefectClientNotWedgedConnected: the server closes each first session
// 5 ms after it opens; the client's OnConnect takes 50 ms and its
// OnDisconnect 200 ms. On the old core Connect returned nil and the client
// then stayed Connected for ever on the closed session: Session() returned
// it, a second Connect was refused, and with reconnect Send failed at once
// during the backoff. Now the client leaves Connected, Connect works again,
// and with reconnect Send waits for the next connection.
func TestDefectClientNotWedgedConnected(t *testing.T) {
	t.Parallel()
	// start returns a server that closes its first session 5 ms after it opens.
	start := func(t *testing.T) *nettest.Server {
		var opened atomic.Int32
		var wg sync.WaitGroup
		srv := nettest.StartServer(t, netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
			if opened.Add(1) == 1 {
				wg.Add(1)
				time.AfterFunc(5*time.Millisecond, func() { defer wg.Done(); _ = s.Close("go away") })
			}
		}))
		t.Cleanup(wg.Wait)
		itAddWhoAmI(srv)
		return srv
	}
	slow := []netmsg.ClientOption{
		netmsg.WithOnConnect(func(context.Context, *netmsg.Session) error { time.Sleep(50 * time.Millisecond); return nil }),
		netmsg.WithOnDisconnect(func(*netmsg.CloseError) { time.Sleep(200 * time.Millisecond) }),
	}

	t.Run("without reconnect", func(t *testing.T) {
		t.Parallel()
		srv := start(t)
		c := nettest.NewClient(t, srv.URL, slow...)
		err := c.Connect(context.Background())
		t.Logf("first Connect: %v", err)
		nettest.WaitState(t, c, netmsg.StateDisconnected)
		assert.Nil(t, c.Session(), "Session() of a client whose session closed")
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, c.Connect(ctx), "Connect again after the session ended")
		assert.Equal(t, netmsg.StateConnected, c.State())
		itWhoAmIOf(t, c)
	})

	t.Run("with reconnect", func(t *testing.T) {
		t.Parallel()
		srv := start(t)
		b := backoff.NewConstantBackOff(300 * time.Millisecond)
		c := nettest.NewClient(t, srv.URL, append(slow, netmsg.WithReconnect(b))...)
		require.NoError(t, c.Connect(context.Background()))
		// Whatever state the client is in now (in the backoff, or connected
		// again), a request waits for a live session instead of failing.
		itWhoAmIOf(t, c)
		nettest.WaitState(t, c, netmsg.StateConnected)
		s := c.Session()
		require.NotNil(t, s)
		assert.Nil(t, s.Err(), "the current session is live")
	})
}

// ---- defect 7: Client.Close is bounded ----

// dfStuck is handled by a client handler that ignores its ctx.
type dfStuck struct{}

// TestDefectClientCloseBounded: one of the client's handlers ignores its ctx
// and never returns by itself. On the old core Client.Close never returned.
// Now it returns after DisconnectTimeout (plus a second) with an error that
// names the handler still running.
func TestDefectClientCloseBounded(t *testing.T) {
	t.Parallel()
	const disconnect = 300 * time.Millisecond
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	c := netmsg.NewClient(srv.URL, netmsg.WithDisconnectTimeout(disconnect))
	gate, release := nettest.Releaser(t)
	started := make(chan struct{}, 1)
	netmsg.AddMessageHandler(c, func(context.Context, *netmsg.Session, dfStuck) {
		started <- struct{}{}
		<-gate // ignores ctx
	})
	require.NoError(t, c.Connect(context.Background()))
	ss := rec.NextOpen(t)
	require.NoError(t, ss.Send(context.Background(), dfStuck{}))
	nettest.Recv(t, started, "the client's handler to start")

	begin := time.Now()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * (disconnect + time.Second)):
		release() // lets the Close above return, so the test can end
		<-done
		t.Fatalf("Client.Close did not return within %v while a handler ignored its ctx", 5*(disconnect+time.Second))
	}
	took := time.Since(begin)
	release()
	t.Logf("Client.Close returned after %v: %v", took.Round(time.Millisecond), err)
	require.Error(t, err, "Close must say that a handler is still running")
	assert.Contains(t, err.Error(), netmsg.TypeName(dfStuck{}), "the error names the handler")
	assert.GreaterOrEqual(t, took, disconnect, "Close gave the handler DisconnectTimeout")
}

// ---- defect 8: the reconnect hint and the jitter ----

// TestDefectReconnectHintKeepsJitter: 100 clients lose their server to a
// graceful Shutdown, which sends a reconnect hint (500 ms). On the old core
// the hint clamped the jittered delay from below, so about half of them
// chose exactly the hint as their first delay and came back at the same
// moment. Now the hint is a floor and the jittered delay is added on top:
// every first delay is at least the hint, and they are spread.
func TestDefectReconnectHintKeepsJitter(t *testing.T) {
	t.Parallel()
	const (
		clients = 100
		hint    = 500 * time.Millisecond
	)
	srv := nettest.StartServer(t)
	first := make(chan time.Duration, clients)
	for range clients {
		var once sync.Once
		nettest.Connect(t, srv.URL,
			netmsg.WithReconnect(netmsg.DefaultBackOff()),
			netmsg.WithOnReconnectAttempt(func(a netmsg.ReconnectAttempt) {
				once.Do(func() {
					var ce *netmsg.CloseError
					if errors.As(a.Err, &ce) && ce.ReconnectAfter() != hint {
						t.Errorf("first attempt's cause: %v (hint %v)", a.Err, ce.ReconnectAfter())
					}
					first <- a.Delay
				})
			}))
	}
	require.NoError(t, srv.Stop(t, 10*time.Second))
	counts := make(map[time.Duration]int)
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for i := range clients {
		d := nettest.Recv(t, first, "a client's first reconnect attempt")
		counts[d]++
		lo, hi = min(lo, d), max(hi, d)
		_ = i
	}
	most := 0
	for _, k := range counts {
		most = max(most, k)
	}
	t.Logf("first delays of %d clients: %d distinct, from %v to %v, at most %d equal", clients, len(counts), lo, hi, most)
	assert.GreaterOrEqual(t, lo, hint, "a first delay below the server's hint")
	assert.LessOrEqual(t, most, 3, "clients that chose the same first delay")
	assert.Greater(t, hi-lo, 100*time.Millisecond, "the first delays are not spread")
}
