package integration_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLifecycleShutdownUnderMessageTraffic: a client that keeps sending
// messages must not hold the drain open. Messages arriving after Shutdown
// began are dropped and counted (requests get CodeUnavailable), the drain
// completes, and the client is closed gracefully with 1001.
func TestLifecycleShutdownUnderMessageTraffic(t *testing.T) {
	t.Parallel()
	var handled atomic.Int64
	srv := nettest.StartServer(t)
	netmsg.AddMessageHandler(srv.Server, func(context.Context, *netmsg.Session, lcNote) {
		handled.Add(1)
		time.Sleep(2 * time.Millisecond)
	})
	got := make(chan *netmsg.CloseError, 1)
	cli := nettest.Connect(t, srv.URL, netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) { got <- ce }))

	stop := make(chan struct{})
	sender := make(chan struct{})
	go func() {
		defer close(sender)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if cli.Send(context.Background(), lcNote{Text: "telemetry"}) != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); <-sender }()
	require.Eventually(t, func() bool { return handled.Load() > 10 }, nettest.Wait, 5*time.Millisecond)

	start := time.Now()
	require.NoError(t, srv.Stop(t, 20*time.Second), "the drain must complete despite the traffic")
	assert.Less(t, time.Since(start), 10*time.Second)
	ce := <-got
	nettest.AssertClose(t, ce, netmsg.CloseServerShutdown, 1001, true)
	assert.Positive(t, ce.ReconnectAfter(), "the graceful close carries the hint")
	t.Logf("Shutdown took %v; %d handled, %d dropped during shutdown",
		time.Since(start), handled.Load(), srv.Server.Stats().DroppedDuringShutdown)
}

// TestLifecycleShutdownCtxEndsStillSays1001: when Shutdown's ctx ends before a
// handler finishes, the sessions are closed at once, but still with 1001 and
// CloseServerShutdown, so clients know to reconnect.
func TestLifecycleShutdownCtxEndsStillSays1001(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	hold := lcAddHold(srv.Server)
	got := make(chan *netmsg.CloseError, 1)
	cli := nettest.Connect(t, srv.URL, netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) { got <- ce }))
	res := lcGoRequest(t, context.Background(), cli, lcHold{Key: "stuck"})
	<-hold.started

	err := srv.Stop(t, 300*time.Millisecond)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	ce := <-got
	assert.Equal(t, netmsg.CloseServerShutdown.String(), ce.Reason.String())
	assert.EqualValues(t, 1001, ce.Code)
	r := lcAwait(t, res, nettest.Wait)
	assert.Error(t, r.Err)
}

// TestLifecycleShutdownFromHandler: Shutdown called from one of the server's
// own handlers cannot wait for that handler; it must still return, once its
// ctx has ended and a grace period has passed, with an error that says so.
func TestLifecycleShutdownFromHandler(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	returned := make(chan error, 1)
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req lcEcho) (lcEchoReply, error) {
		returned <- srv.Stop(t, 300*time.Millisecond)
		return lcEchoReply{Text: "bye"}, nil
	})
	cli := nettest.Connect(t, srv.URL, netmsg.WithDisconnectTimeout(500*time.Millisecond))
	_ = lcGoRequest(t, context.Background(), cli, lcEcho{Text: "shut down"})
	select {
	case err := <-returned:
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "goroutines still running")
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown called from a handler did not return")
	}
}

// TestLifecycleClientGoingAway: a client that closes with 1001 (what a
// browser sends when it leaves the page) is reported by the server as the
// peer closing on purpose, not as a server shutdown.
func TestLifecycleClientGoingAway(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	rec.NextOpen(t)
	require.NoError(t, raw.Conn.WriteClose(1001, []byte("page unload")))
	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.ClosePeerNormal, 1001, true)
	assert.True(t, sc.Err.ShouldReconnect())
}
