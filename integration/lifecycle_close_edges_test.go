package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLifecycleGracefulCloseFailsPendingAtOnce: a graceful close on a link
// that has gone silent waits up to DisconnectTimeout for the peer's close
// frame, but the calls pending on the session fail at once with the
// *CloseError, not when the wait is over.
func TestLifecycleGracefulCloseFailsPendingAtOnce(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	hold := lcAddHold(srv.Server)
	relay := lcRelay(t, srv.Addr)
	cli := nettest.Connect(t, lcRelayURL(relay), netmsg.WithDisconnectTimeout(3*time.Second))
	res := lcGoRequest(t, context.Background(), cli, lcHold{Key: "pending"})
	<-hold.started
	relay.Blackhole()

	start := time.Now()
	closed := make(chan struct{})
	go func() { defer close(closed); _ = cli.Close() }()
	r := lcAwait(t, res, nettest.Wait)
	failedAfter := time.Since(start)
	ce := nettest.CloseErrorOf(t, r.Err)
	assert.Equal(t, netmsg.CloseNormal.String(), ce.Reason.String())
	assert.Less(t, failedAfter, time.Second, "the pending call waited for the close handshake")
	relay.Resume()
	<-closed
}

// TestLifecycleCloseFromReadLoopCallback: OnError for a frame refused on the
// read loop (a text frame) runs on the read loop; Session.Close called there
// must not wait for a close answer that loop cannot read, and the reason
// recorded is the protocol error, not the later Close.
func TestLifecycleCloseFromReadLoopCallback(t *testing.T) {
	t.Parallel()
	took := make(chan time.Duration, 1)
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, append(rec.ServerOptions(),
		netmsg.WithOnError(func(s *netmsg.Session, err error) {
			start := time.Now()
			_ = s.Close("bad input")
			took <- time.Since(start)
		}))...)
	raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	rec.NextOpen(t)
	require.NoError(t, raw.Conn.WriteMessage(gws.OpcodeText, []byte("not an envelope")))

	select {
	case d := <-took:
		assert.Less(t, d, time.Second, "Session.Close on the read loop waited")
	case <-time.After(nettest.Wait):
		t.Fatal("OnError did not run")
	}
	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.CloseProtocolError, 1002, false)
}

// TestLifecycleCloseDuringOnConnect: Close while OnConnect waits on a request
// made with the session's own context (not OnConnect's ctx) returns promptly:
// Close closes the session being set up, which fails the request.
func TestLifecycleCloseDuringOnConnect(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	lcAddHold(srv.Server)
	in := make(chan struct{})
	cli := nettest.NewClient(t, srv.URL,
		netmsg.WithRequestTimeout(time.Minute),
		netmsg.WithOnConnect(func(_ context.Context, s *netmsg.Session) error {
			close(in)
			_, err := netmsg.SendRequest(s.Context(), s, lcHold{Key: "sign in"})
			return err
		}))
	connectErr := make(chan error, 1)
	go func() { connectErr <- cli.Connect(context.Background()) }()
	<-in
	d := nettest.CloseWithin(t, cli, lcCloseBound)
	assert.Less(t, d, 2*time.Second)
	select {
	case err := <-connectErr:
		assert.Error(t, err)
	case <-time.After(nettest.Wait):
		t.Fatal("Connect did not return after Close")
	}
}
