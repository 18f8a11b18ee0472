package integration_test

import (
	"context"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type hdSlowResult struct {
	closed       nettest.Closed // the slow session's close
	closedAfter  time.Duration  // from the first broadcast
	maxBroadcast time.Duration  // the longest Broadcast call
	sent         int
	delivered    []int64 // per fast client
	deliverTook  time.Duration
}

// hdSlowScenario runs a server with three fast clients and one peer that
// completed the handshake and then never reads, and broadcasts 16 KiB
// messages every 2 ms until the slow session has been closed for a while
// (at most 15 s). Heartbeats are off: only the write path may notice. The
// sockets' buffers are made small (64 KiB for the server's sends, 4 KiB for
// the slow peer's receives) so that the slow peer's socket is full after a
// few broadcasts instead of after the several MiB Linux would buffer.
func hdSlowScenario(t *testing.T, opts ...netmsg.ServerOption) hdSlowResult {
	t.Helper()
	srv := hdStartServerOn(t, nettest.Listen{Tune: func(c *net.TCPConn) { _ = c.SetWriteBuffer(64 << 10) }},
		append([]netmsg.ServerOption{netmsg.WithHeartbeat(0, 0)}, opts...)...)
	const fast = 3
	counts := make([]atomic.Int64, fast)
	for i := range fast {
		cli := netmsg.NewClient(srv.URL, netmsg.WithHeartbeat(0, 0))
		netmsg.AddMessageHandler(cli, func(ctx context.Context, s *netmsg.Session, m hdText) { counts[i].Add(1) })
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		require.NoError(t, cli.Connect(ctx))
		cancel()
		t.Cleanup(func() { _ = cli.Close() })
		srv.NextOpen(t)
	}
	slow := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
	require.NoError(t, slow.Conn.(*net.TCPConn).SetReadBuffer(4096))
	slowSS := srv.NextOpen(t)

	var r hdSlowResult
	msg := hdText{S: strings.Repeat("x", 16<<10)}
	start := time.Now()
	var closedAt time.Time
	for time.Since(start) < 15*time.Second {
		if closedAt.IsZero() && slowSS.Err() != nil {
			closedAt = time.Now()
		}
		if !closedAt.IsZero() && time.Since(closedAt) > 300*time.Millisecond {
			break
		}
		bs := time.Now()
		require.NoError(t, srv.Server.Broadcast(context.Background(), msg))
		r.maxBroadcast = max(r.maxBroadcast, time.Since(bs))
		r.sent++
		time.Sleep(2 * time.Millisecond)
	}
	require.NotNil(t, slowSS.Err(), "the slow session was not closed within 15 s")
	r.closed = srv.CloseOf(t, slowSS)
	r.closedAfter = r.closed.At.Sub(start)

	// Every fast client gets every broadcast, promptly.
	ds := time.Now()
	assert.Eventually(t, func() bool {
		for i := range counts {
			if counts[i].Load() != int64(r.sent) {
				return false
			}
		}
		return true
	}, nettest.Wait, 5*time.Millisecond, "fast clients did not get all %d broadcasts", r.sent)
	r.deliverTook = time.Since(ds)
	for i := range counts {
		r.delivered = append(r.delivered, counts[i].Load())
	}
	t.Logf("slow session closed after %v (%v); %d broadcasts, longest Broadcast call %v; fast clients got %v, the last %v after the loop",
		r.closedAfter, r.closed.Err, r.sent, r.maxBroadcast, r.delivered, r.deliverTook)
	return r
}

// TestHardeningSlowConsumer: a peer that stops reading is closed with
// CloseSlowConsumer by the write deadline (when the queue bound is far
// away) or by the queue bound (when the write deadline is), Broadcast never
// waits for it, and the other sessions get every message meanwhile.
func TestHardeningSlowConsumer(t *testing.T) {
	t.Parallel()

	t.Run("write timeout", func(t *testing.T) {
		t.Parallel()
		const wt = 300 * time.Millisecond
		r := hdSlowScenario(t, netmsg.WithWriteTimeout(wt), netmsg.WithMaxQueuedBytes(256<<20))
		ce := r.closed.Err
		assert.Equal(t, netmsg.CloseSlowConsumer.String(), ce.Reason.String(), "reason of %v", ce)
		assert.False(t, ce.Remote)
		assert.ErrorIs(t, ce, os.ErrDeadlineExceeded, "closed by the write deadline: %v", ce)
		// The socket is full after a few broadcasts; then it takes the
		// write timeout.
		assert.Less(t, r.closedAfter, nettest.Wait, "closed after %v with a write timeout of %v", r.closedAfter, wt)
		assert.Less(t, r.maxBroadcast, time.Second, "a Broadcast call waited for the slow session")
	})

	t.Run("queue bound", func(t *testing.T) {
		t.Parallel()
		r := hdSlowScenario(t, netmsg.WithWriteTimeout(time.Minute), netmsg.WithMaxQueuedBytes(1<<20))
		ce := r.closed.Err
		assert.Equal(t, netmsg.CloseSlowConsumer.String(), ce.Reason.String(), "reason of %v", ce)
		assert.False(t, ce.Remote)
		assert.Contains(t, ce.Text, "queue", "closed by the queue bound: %v", ce)
		assert.Less(t, r.closedAfter, nettest.Wait, "closed after %v; the write timeout (1 min) must not be what closed it", r.closedAfter)
		// A Broadcast that waited for the blocked socket would wait up to
		// the minute-long write timeout.
		assert.Less(t, r.maxBroadcast, time.Second, "a Broadcast call waited for the slow session")
	})
}
