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

// TestFaultForcedDisconnectCycles forces 200 disconnects of a reconnecting
// client, alternating an RST, a FIN without a close frame, and a normal close
// by the server. Every connection gets exactly one OnConnect, every session
// ends with exactly one OnDisconnect / OnSessionClose, and nothing fires
// twice.
func TestFaultForcedDisconnectCycles(t *testing.T) {
	t.Parallel()
	const cycles = 200
	rec := nettest.NewRecorder()
	var latest atomic.Pointer[netmsg.Session] // the server session of the current connection
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	netmsg.AddRequestHandler(srv.Server, func(ctx context.Context, s *netmsg.Session, req lcEcho) (lcEchoReply, error) {
		if req.Text == "sign-in" {
			latest.Store(s)
		}
		return lcEchoReply{Text: req.Text}, nil
	})
	relay := lcRelay(t, srv.Addr)
	conns := lcNewConnects(func(ctx context.Context, n int, s *netmsg.Session) error {
		_, err := netmsg.SendRequest(ctx, s, lcEcho{Text: "sign-in"})
		return err
	})
	rc := lcNewReconnecting()
	cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), conns.Option(), rc.Option(),
		netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))...)

	start := time.Now()
	for i := range cycles {
		cs := conns.Next(t)
		require.Eventually(t, func() bool { return cli.Session() == cs }, nettest.Wait, time.Millisecond,
			"cycle %d: the client did not count as connected", i)
		ss := latest.Load()
		require.NotNil(t, ss)
		if i%20 == 0 {
			r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "check"})
			require.NoError(t, err, "cycle %d", i)
			require.Equal(t, "check", r.Text)
		}
		switch i % 3 {
		case 0:
			relay.Latest().Reset()
		case 1:
			relay.Latest().Close()
		case 2:
			require.NoError(t, ss.Close("cycle"))
		}
		select {
		case <-cs.Done():
		case <-time.After(nettest.Wait):
			t.Fatalf("cycle %d: the session did not end", i)
		}
	}
	cs := conns.Next(t) // connection number cycles+1
	require.Eventually(t, func() bool { return cli.Session() == cs }, nettest.Wait, time.Millisecond)
	r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "final"})
	require.NoError(t, err)
	assert.Equal(t, "final", r.Text)
	t.Logf("%d cycles in %v", cycles, time.Since(start))

	nettest.CloseWithin(t, cli, nettest.Wait)
	require.Eventually(t, func() bool { return srv.Server.SessionCount() == 0 }, nettest.Wait, time.Millisecond)
	lcSettle()

	const conns1 = cycles + 1
	assert.Equal(t, conns1, conns.Count(), "OnConnect calls")
	conns.AssertDistinct(t)
	assert.Equal(t, conns1, rec.Disconnects(), "OnDisconnect calls")
	assert.Equal(t, conns1, len(rec.Opened()), "server sessions")
	rec.AssertClosedOnce(t)
	firsts := 0
	for _, a := range rc.List() {
		if a.N == 1 {
			firsts++
		}
	}
	assert.Equal(t, cycles, firsts, "reconnect rounds (OnReconnecting with attempt 1)")
}
