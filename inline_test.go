package netmsg_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of handlers run inline on the read loop (inline.go): whatever a
// handler does, the read loop goes on reading.

type Gate struct {
	netmsg.Returns[Pong]
	N int
}

// TestInlineBlockedHandlerKeepsReading: a request handler blocks for 1.5 s
// on something the library cannot see (a timer channel, not its ctx). The
// client's heartbeat gives up after 300 ms without a pong, so the session
// survives only if the server's read loop goes on reading (and answering
// pings) while the handler waits: the watchdog hands the reading off.
func TestInlineBlockedHandlerKeepsReading(t *testing.T) {
	hb := netmsg.WithHeartbeat(50*time.Millisecond, 300*time.Millisecond)
	srv, cli := pair(t, []netmsg.ServerOption{hb}, []netmsg.ClientOption{hb}, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, g Gate) (Pong, error) {
			<-time.After(1500 * time.Millisecond)
			return Pong{N: g.N}, nil
		})
	})
	start := time.Now()
	r, err := netmsg.SendRequest(context.Background(), cli, Gate{N: 7})
	require.NoError(t, err, "the session did not survive a handler that blocks")
	assert.Equal(t, 7, r.N)
	runs, handoffs, watched := netmsg.InlineCountsForTest(srv)
	t.Logf("answered after %v; server: %d inline runs, %d handed off, %d by the watchdog", time.Since(start), runs, handoffs, watched)
	assert.GreaterOrEqual(t, watched, uint64(1), "the watchdog handed nothing off")
}

// TestInlineHandlerWaitingOnCtxGetsCancel: a handler that waits on ctx.Done
// hands the reading off at once, so the caller's CANCEL is read and reaches
// it.
func TestInlineHandlerWaitingOnCtxGetsCancel(t *testing.T) {
	got := make(chan error, 1)
	srv, cli := pair(t, nil, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, g Gate) (Pong, error) {
			select {
			case <-ctx.Done():
				got <- ctx.Err()
			case <-time.After(20 * time.Second):
				got <- errors.New("no cancel within 20 s")
			}
			return Pong{}, ctx.Err()
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := netmsg.SendRequest(ctx, cli, Gate{N: 1})
	require.ErrorIs(t, err, context.Canceled)
	select {
	case herr := <-got:
		require.ErrorIs(t, herr, context.Canceled, "the handler's ctx")
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's ctx was not cancelled within 10 s of the caller's cancel")
	}
	_, handoffs, _ := netmsg.InlineCountsForTest(srv)
	assert.GreaterOrEqual(t, handoffs, uint64(1))
}

// TestInlineHandlerCallsBackItsPeer: on both ends, a request handler asks
// the peer something on the same session and waits for the answer, which
// only its own read loop can read.
func TestInlineHandlerCallsBackItsPeer(t *testing.T) {
	srv, cli := pair(t, nil, nil, func(srv *netmsg.Server, cli *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, g Gate) (Pong, error) {
			r, err := netmsg.SendRequest(ctx, s, Ping{N: g.N})
			return Pong{N: r.N + 1}, err
		})
		netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
			return Pong{N: p.N * 10}, nil
		})
		// The client's own inline handler calls back the server too.
		netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, n Nested) (Pong, error) {
			return Pong{N: n.N + 5}, nil
		})
		netmsg.AddRequestHandler(cli, func(ctx context.Context, s *netmsg.Session, g Relay) (Pong, error) {
			return netmsg.SendRequest(ctx, s, Nested{N: g.N})
		})
	})
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := netmsg.SendRequest(ctx, cli, Gate{N: i})
		require.NoError(t, err)
		require.Equal(t, i*10+1, r.N)
		var s *netmsg.Session
		for x := range srv.Sessions() {
			s = x
		}
		r, err = netmsg.SendRequest(ctx, s, Relay{N: i})
		cancel()
		require.NoError(t, err)
		require.Equal(t, i+5, r.N)
	}
	_, sh, sw := netmsg.InlineCountsForTest(srv)
	_, ch, cw := netmsg.InlineCountsForTest(cli)
	t.Logf("handoffs: server %d (watchdog %d), client %d (watchdog %d)", sh, sw, ch, cw)
	assert.Positive(t, sh, "no server handler was handed off")
	assert.Positive(t, ch, "no client handler was handed off")
}

type Relay struct {
	netmsg.Returns[Pong]
	N int
}
type Nested struct {
	netmsg.Returns[Pong]
	N int
}

// TestInlineKeepsOrderAcrossHandoffs: one session's messages and requests
// are handled in arrival order, one at a time, while some handlers block
// (handed off by the watchdog) and some wait on their ctx (handed off at
// once), so the reading moves between goroutines many times.
func TestInlineKeepsOrderAcrossHandoffs(t *testing.T) {
	var mu sync.Mutex
	var order []int
	running := 0
	maxRunning := 0
	enter := func(n int) {
		mu.Lock()
		order = append(order, n)
		running++
		maxRunning = max(maxRunning, running)
		mu.Unlock()
	}
	leave := func() {
		mu.Lock()
		running--
		mu.Unlock()
	}
	work := func(ctx context.Context, n int) {
		switch n % 40 {
		case 7:
			time.Sleep(8 * time.Millisecond) // the watchdog hands off
		case 21:
			select { // hands off at once
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}
	srv, cli := pair(t, nil, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddMessageHandler(srv, func(ctx context.Context, _ *netmsg.Session, p Pong) {
			enter(p.N)
			defer leave()
			work(ctx, p.N)
		})
		netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, g Gate) (Pong, error) {
			enter(g.N)
			defer leave()
			work(ctx, g.N)
			return Pong{N: g.N}, nil
		})
	})
	const n = 1000
	ctx := context.Background()
	for i := range n {
		if i%10 == 9 {
			r, err := netmsg.SendRequest(ctx, cli, Gate{N: i})
			require.NoError(t, err)
			require.Equal(t, i, r.N)
		} else {
			require.NoError(t, cli.Send(ctx, Pong{N: i}))
		}
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == n
	}, 20*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i, v := range order {
		require.Equal(t, i, v, "handled out of order")
	}
	assert.Equal(t, 1, maxRunning, "two handlers of one session ran at once")
	runs, handoffs, watched := netmsg.InlineCountsForTest(srv)
	t.Logf("server: %d of %d handlers inline, %d handed off (%d by the watchdog)", runs, n, handoffs, watched)
	assert.Positive(t, runs)
	assert.GreaterOrEqual(t, handoffs, uint64(n/40))
}

// TestInlineCloseFromOwnHandler: Session.Close called by a handler running
// on that session's read loop returns once the peer has answered, well
// before the DisconnectTimeout it would wait if the read loop stood still.
func TestInlineCloseFromOwnHandler(t *testing.T) {
	took := make(chan time.Duration, 1)
	dt := netmsg.WithDisconnectTimeout(5 * time.Second)
	_, cli := pair(t, []netmsg.ServerOption{dt}, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddMessageHandler(srv, func(_ context.Context, s *netmsg.Session, p Pong) {
			start := time.Now()
			_ = s.Close("done")
			took <- time.Since(start)
		})
	})
	require.NoError(t, cli.Send(context.Background(), Pong{N: 1}))
	select {
	case d := <-took:
		t.Logf("Session.Close from its own handler returned after %v", d)
		assert.Less(t, d, 2500*time.Millisecond)
	case <-time.After(10 * time.Second):
		t.Fatal("Session.Close from its own handler did not return")
	}
}

// TestInlineOff: WithInlineHandlers(false) runs no handler on a read loop.
func TestInlineOff(t *testing.T) {
	off := netmsg.WithInlineHandlers(false)
	srv, cli := pair(t, []netmsg.ServerOption{off}, []netmsg.ClientOption{off}, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) { return Pong{N: p.N}, nil })
	})
	for i := range 50 {
		r, err := netmsg.SendRequest(context.Background(), cli, Ping{N: i})
		require.NoError(t, err)
		require.Equal(t, i, r.N)
	}
	runs, _, _ := netmsg.InlineCountsForTest(srv)
	assert.Zero(t, runs)
	runsOn, _, _ := netmsg.InlineCountsForTest(cli)
	assert.Zero(t, runsOn)
}
