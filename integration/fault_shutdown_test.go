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

// TestFaultShutdownDrainsInFlightRequest: a request is being handled when the
// server shuts down, and the link to the client is slow (100 ms each way).
// Shutdown lets the handler finish, the response crosses the slow link before
// the 1001, and the reconnecting client comes back once a new server listens.
func TestFaultShutdownDrainsInFlightRequest(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	started := make(chan string, 1)
	release, releaseGate := nettest.Releaser(t)
	lcAddGate(srv.Server, started, release)
	relay := lcRelay(t, srv.Addr)
	relay.Delay(100 * time.Millisecond)
	conns := lcNewConnects(nil)
	cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), conns.Option(),
		netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))...)
	conns.Next(t)

	inflight := lcGoRequest(t, context.Background(), cli, lcGate{Text: "slow work"})
	select {
	case <-started:
	case <-time.After(nettest.Wait):
		t.Fatal("handler did not start")
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Stop(t, 20*time.Second) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned while a handler was running: %v", err)
	default:
	}
	releaseGate()

	r := lcAwait(t, inflight, nettest.Wait)
	require.NoError(t, r.Err, "the in-flight request was not delivered")
	assert.Equal(t, "slow work done", r.Reply.Text)
	select {
	case err := <-shutdown:
		assert.NoError(t, err)
	case <-time.After(nettest.Wait):
		t.Fatal("Shutdown did not return")
	}
	ce := rec.NextDisconnect(t)
	nettest.AssertClose(t, ce, netmsg.CloseServerShutdown, 1001, true)
	assert.Greater(t, ce.ReconnectAfter(), time.Duration(0))

	// A new server on another address; the relay now points there.
	srv2 := nettest.StartServer(t)
	lcEchoHandler(srv2.Server, "new:")
	relay.SetTarget(srv2.Addr)
	conns.Next(t)
	res, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "hello"})
	require.NoError(t, err)
	assert.Equal(t, "new:hello", res.Text)
}
