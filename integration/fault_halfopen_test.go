package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaultHalfOpenDetectedOnBothSides: a relay that stops forwarding both
// ways without closing either socket. Both ends detect it within
// ReceiveTimeout plus one interval (asserted with a wide margin) as
// CloseConnectionLost, and the calls pending on each side fail at once rather
// than waiting for their 30 s timeout.
func TestFaultHalfOpenDetectedOnBothSides(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	hb := netmsg.WithHeartbeat(lcInterval, lcTimeout)
	long := netmsg.WithRequestTimeout(30 * time.Second)
	srv := nettest.StartServer(t, append(rec.ServerOptions(), hb, long)...)
	srvHold := lcAddHold(srv.Server)
	relay := lcRelay(t, srv.Addr)
	cli := nettest.NewClient(t, lcRelayURL(relay), append(rec.ClientOptions(), hb, long)...)
	cliHold := lcAddHold(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	ss := rec.NextOpen(t)
	cs := cli.Session()
	require.NotNil(t, cs)

	// A call pending in each direction.
	fromClient := lcGoRequest(t, context.Background(), cli, lcHold{Key: "c2s"})
	fromServer := lcGoRequest(t, context.Background(), ss, lcHold{Key: "s2c"})
	for _, h := range []*lcHoldHandler{srvHold, cliHold} {
		select {
		case <-h.started:
		case <-time.After(nettest.Wait):
			t.Fatal("a handler did not start")
		}
	}
	time.Sleep(3 * lcInterval) // a few heartbeats went through
	require.Nil(t, cs.Err())
	require.Nil(t, ss.Err())

	start := time.Now()
	relay.Latest().Blackhole()

	ce := rec.NextDisconnect(t)
	clientTook := time.Since(start)
	sc := rec.NextClose(t)
	serverTook := time.Since(start)
	t.Logf("detected after %v (client) and %v (server); bound %v", clientTook, serverTook, lcTimeout+lcInterval)

	nettest.AssertClose(t, ce, netmsg.CloseConnectionLost, 0, false)
	nettest.AssertClose(t, sc.Err, netmsg.CloseConnectionLost, 0, false)
	assert.Equal(t, ss.ID(), sc.S.ID())
	for side, took := range map[string]time.Duration{"client": clientTook, "server": serverTook} {
		assert.GreaterOrEqual(t, took, lcTimeout-lcInterval, "%s: detected before the receive timeout could pass", side)
		assert.Less(t, took, nettest.Wait, "%s: detection", side)
	}

	// Every pending call failed with the close, at once.
	for side, ch := range map[string]<-chan lcResult{"client's call": fromClient, "server's call": fromServer} {
		r := lcAwait(t, ch, nettest.Wait)
		got := nettest.CloseErrorOf(t, r.Err)
		assert.Equal(t, netmsg.CloseConnectionLost.String(), got.Reason.String(), "%s: %v", side, got)
		assert.Less(t, r.Took, 10*time.Second, "%s waited for its timeout", side)
	}
	// And the handlers serving them were cancelled.
	for _, h := range []*lcHoldHandler{srvHold, cliHold} {
		select {
		case <-h.ended:
		case <-time.After(nettest.Wait):
			t.Fatal("a handler's ctx was not cancelled when its session was lost")
		}
	}
	// Calls made now fail at once (no reconnect configured).
	_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{})
	assert.ErrorIs(t, err, netmsg.ErrNotConnected)
	_, err = netmsg.SendRequest(context.Background(), ss, lcEcho{})
	var late *netmsg.CloseError
	require.ErrorAs(t, err, &late)
	assert.Equal(t, netmsg.CloseConnectionLost.String(), late.Reason.String())

	lcSettle()
	assert.Equal(t, 1, rec.Disconnects())
	rec.AssertClosedOnce(t)
}

// TestFaultHalfOpenThenReconnect: a reconnecting client recovers from a
// half-open link on its own once the path works again.
func TestFaultHalfOpenThenReconnect(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	hb := netmsg.WithHeartbeat(lcInterval, lcTimeout)
	srv := nettest.StartServer(t, append(rec.ServerOptions(), hb)...)
	lcEchoHandler(srv.Server, "")
	relay := lcRelay(t, srv.Addr)
	conns := lcNewConnects(nil)
	cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), hb, conns.Option(),
		netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))...)
	conns.Next(t)

	relay.Latest().Blackhole() // only this link; new ones work
	ce := rec.NextDisconnect(t)
	assert.Equal(t, netmsg.CloseConnectionLost.String(), ce.Reason.String())
	conns.Next(t)
	r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "recovered"})
	require.NoError(t, err)
	assert.Equal(t, "recovered", r.Text)
	sc := rec.NextClose(t)
	assert.Equal(t, netmsg.CloseConnectionLost.String(), sc.Err.Reason.String())
}
