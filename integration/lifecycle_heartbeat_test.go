package integration_test

// Heartbeats: pings from both sides carrying the sender's clock, RTT, the
// receive timeout (CloseConnectionLost), WithHeartbeat(0, 0), and no false
// loss under a busy handler or a full mailbox.

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lcSleep struct {
	netmsg.Returns[lcEchoReply]
	D time.Duration
}

func lcAddSleep(r netmsg.Registrar) {
	netmsg.AddRequestHandler(r, func(ctx context.Context, s *netmsg.Session, req lcSleep) (lcEchoReply, error) {
		time.Sleep(req.D) // busy: ignores everything
		return lcEchoReply{Text: "slept " + req.D.String()}, nil
	})
}

// lcNoLoss fails if either side reported a close.
func lcNoLoss(t *testing.T, rec *nettest.Recorder) {
	t.Helper()
	select {
	case ce := <-rec.Disconnect:
		t.Fatalf("client disconnected: %v", ce)
	case sc := <-rec.Close:
		t.Fatalf("server session closed: %v", sc.Err)
	default:
	}
}

// TestLifecycleHeartbeatHappyPath runs a link with 100 ms heartbeats and 30 ms
// of latency each way for seconds: no false loss, and RTT measures the link.
func TestLifecycleHeartbeatHappyPath(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	hb := netmsg.WithHeartbeat(100*time.Millisecond, time.Second)
	srv := nettest.StartServer(t, append(rec.ServerOptions(), hb)...)
	lcEchoHandler(srv.Server, "")
	relay := lcRelay(t, srv.Addr)
	relay.Delay(30 * time.Millisecond)
	cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), hb)...)
	ss := rec.NextOpen(t)
	cs := cli.Session()
	require.NotNil(t, cs)

	end := time.Now().Add(3 * time.Second)
	calls := 0
	for time.Now().Before(end) {
		r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "tick"})
		require.NoError(t, err)
		require.Equal(t, "tick", r.Text)
		calls++
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d calls; RTT client %v, server %v", calls, cs.RTT(), ss.RTT())
	lcNoLoss(t, rec)
	assert.Nil(t, cs.Err())
	assert.Nil(t, ss.Err())
	assert.Same(t, cs, cli.Session(), "the client never reconnected")
	for name, s := range map[string]*netmsg.Session{"client": cs, "server": ss} {
		rtt := s.RTT()
		assert.GreaterOrEqual(t, rtt, 50*time.Millisecond, "%s RTT over a link with 30 ms each way", name)
		assert.Less(t, rtt, 2*time.Second, "%s RTT", name)
	}
}

// TestLifecycleHeartbeatPingsCarryClock looks at the pings a server sends with
// a raw peer, and checks it answers the peer's pings.
func TestLifecycleHeartbeatPingsCarryClock(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, append(rec.ServerOptions(), netmsg.WithHeartbeat(100*time.Millisecond, 2*time.Second))...)
	raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	ss := rec.NextOpen(t)

	var p []byte
	select {
	case p = <-raw.Pings:
	case <-time.After(nettest.Wait):
		t.Fatal("the server sent no ping")
	}
	require.Len(t, p, 8, "a ping carries the sender's clock (8 bytes)")
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(p)))
	assert.WithinDuration(t, time.Now(), sent, nettest.Wait, "the ping's clock")

	// More pings follow, one per interval.
	n := 0
	timeout := time.After(nettest.Wait)
	for n < 3 {
		select {
		case <-raw.Pings:
			n++
		case <-timeout:
			t.Fatalf("only %d more pings", n)
		}
	}
	// The raw peer answered them: the server has a round trip.
	require.Eventually(t, func() bool { return ss.RTT() > 0 }, nettest.Wait, 10*time.Millisecond, "server RTT")
	assert.Less(t, ss.RTT(), time.Second)

	// The server answers our ping with the same payload.
	require.NoError(t, raw.Conn.WritePing([]byte("are you there")))
	select {
	case pong := <-raw.Pongs:
		assert.Equal(t, "are you there", string(pong))
	case <-time.After(nettest.Wait):
		t.Fatal("no pong")
	}
	lcNoLoss(t, rec)
}

// TestLifecycleHeartbeatReceiveTimeout uses a raw peer that never answers
// pings: the server closes it with CloseConnectionLost after the receive
// timeout of silence, and any frame from the peer resets that deadline.
func TestLifecycleHeartbeatReceiveTimeout(t *testing.T) {
	t.Parallel()
	keepalive := wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, "lc.keepalive", []byte("{}"), 0, nil)
	for _, tc := range []struct {
		name string
		beat func(c *gws.Conn) error // nil: the peer stays silent throughout
	}{
		{"silent peer", nil},
		{"pings keep it alive", func(c *gws.Conn) error { return c.WritePing([]byte("hi")) }},
		{"messages keep it alive", func(c *gws.Conn) error { return c.WriteMessage(gws.OpcodeBinary, keepalive) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := nettest.NewRecorder()
			srv := nettest.StartServer(t, append(rec.ServerOptions(), netmsg.WithHeartbeat(lcInterval, lcSafeTimeout))...)
			raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{NoPong: true}) // reads, never pongs
			ss := rec.NextOpen(t)

			silentFrom := time.Now()
			if tc.beat != nil {
				end := time.Now().Add(5 * lcSafeTimeout / 2)
				for time.Now().Before(end) {
					require.NoError(t, tc.beat(raw.Conn))
					silentFrom = time.Now()
					time.Sleep(lcInterval)
				}
				lcNoLoss(t, rec)
				require.Nil(t, ss.Err(), "closed although the peer kept sending")
			}

			sc := rec.NextClose(t)
			took := time.Since(silentFrom)
			nettest.AssertClose(t, sc.Err, netmsg.CloseConnectionLost, 0, false)
			assert.GreaterOrEqual(t, took, lcSafeTimeout-lcInterval, "closed before the receive timeout")
			t.Logf("detected after %v of silence (bound %v)", took, lcSafeTimeout+lcInterval)
			raw.NextClose(t) // the server dropped the connection
			lcSettle()
			rec.AssertClosedOnce(t)
		})
	}
}

// TestLifecycleHeartbeatBusyHandler: handlers that take much longer than the
// receive timeout, on both ends, cause no false loss.
func TestLifecycleHeartbeatBusyHandler(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	hb := netmsg.WithHeartbeat(lcInterval, lcSafeTimeout)
	srv := nettest.StartServer(t, append(rec.ServerOptions(), hb)...)
	lcAddSleep(srv.Server)
	cli := nettest.NewClient(t, srv.URL, append(rec.ClientOptions(), hb)...)
	lcAddSleep(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	ss := rec.NextOpen(t)

	busy := 5 * lcSafeTimeout / 2
	toServer := lcGoRequest(t, ctx, cli, lcSleep{D: busy})
	toClient := lcGoRequest(t, ctx, ss, lcSleep{D: busy})
	for _, ch := range []<-chan lcResult{toServer, toClient} {
		r := lcAwait(t, ch, 10*time.Second)
		require.NoError(t, r.Err)
		assert.Equal(t, "slept "+busy.String(), r.Reply.Text)
	}
	lcNoLoss(t, rec)
}

// TestLifecycleHeartbeatFullMailbox: a full mailbox stops reading, which must
// not count as silence on either end.
func TestLifecycleHeartbeatFullMailbox(t *testing.T) {
	t.Parallel()
	for _, side := range []string{"server", "client"} {
		t.Run(side+" mailbox full", func(t *testing.T) {
			t.Parallel()
			rec := nettest.NewRecorder()
			hb := netmsg.WithHeartbeat(lcInterval, lcSafeTimeout)
			var handled atomic.Int32
			// The handler also ends with its session, so the order of cleanups does not matter.
			release, releaseAll := nettest.Releaser(t)
			handler := func(ctx context.Context, s *netmsg.Session, n lcNote) {
				select {
				case <-release:
					handled.Add(1)
				case <-ctx.Done():
				}
			}
			srvOpts := append(rec.ServerOptions(), hb)
			cliOpts := append(rec.ClientOptions(), hb)
			if side == "server" {
				srvOpts = append(srvOpts, netmsg.WithMailboxSize(2))
			} else {
				cliOpts = append(cliOpts, netmsg.WithMailboxSize(2))
			}
			srv := nettest.StartServer(t, srvOpts...)
			lcEchoHandler(srv.Server, "srv:")
			cli := nettest.NewClient(t, srv.URL, cliOpts...)
			lcEchoHandler(cli, "cli:")
			var sender netmsg.Peer
			if side == "server" {
				netmsg.AddMessageHandler(srv.Server, handler)
				sender = cli
			} else {
				netmsg.AddMessageHandler(cli, handler)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, cli.Connect(ctx))
			ss := rec.NextOpen(t)
			if sender == nil {
				sender = ss
			}

			const n = 40
			for i := range n {
				var err error
				switch p := sender.(type) {
				case *netmsg.Client:
					err = p.Send(ctx, lcNote{Text: "n"})
				case *netmsg.Session:
					err = p.Send(ctx, lcNote{Text: "n"})
				}
				require.NoError(t, err, "send %d", i)
			}
			time.Sleep(5 * lcSafeTimeout / 2) // the mailbox stays full, reading stopped
			lcNoLoss(t, rec)
			assert.Less(t, int(handled.Load()), n)

			releaseAll()
			require.Eventually(t, func() bool { return handled.Load() == n }, nettest.Wait, 10*time.Millisecond,
				"handled %d of %d", handled.Load(), n)
			r, err := netmsg.SendRequest(ctx, cli, lcEcho{Text: "x"})
			require.NoError(t, err)
			assert.Equal(t, "srv:x", r.Text)
			r, err = netmsg.SendRequest(ctx, ss, lcEcho{Text: "y"})
			require.NoError(t, err)
			assert.Equal(t, "cli:y", r.Text)
			lcNoLoss(t, rec)
		})
	}
}

// TestLifecycleHeartbeatDisabled: WithHeartbeat(0, 0) turns off both the pings
// and the receive timeout, also when it overrides a shorter setting.
func TestLifecycleHeartbeatDisabled(t *testing.T) {
	t.Parallel()
	off := []netmsg.Option{netmsg.WithHeartbeat(lcInterval, 300*time.Millisecond), netmsg.WithHeartbeat(0, 0)}

	t.Run("no pings, no timeout", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, append(rec.ServerOptions(), off[0], off[1])...)
		raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{NoPong: true}) // silent
		ss := rec.NextOpen(t)
		time.Sleep(1200 * time.Millisecond) // four receive timeouts of the overridden setting
		assert.Zero(t, len(raw.Pings), "pings sent with heartbeats off")
		assert.Nil(t, ss.Err(), "closed with heartbeats off")
		assert.Zero(t, ss.RTT())
		lcNoLoss(t, rec)
	})

	t.Run("blackholed link stays up", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, append(rec.ServerOptions(), off[0], off[1])...)
		lcEchoHandler(srv.Server, "")
		relay := lcRelay(t, srv.Addr)
		cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), off[0], off[1])...)
		ss := rec.NextOpen(t)
		cs := cli.Session()

		relay.Blackhole()
		time.Sleep(1200 * time.Millisecond)
		lcNoLoss(t, rec)
		assert.Nil(t, ss.Err())
		assert.Nil(t, cs.Err())
		assert.Zero(t, cs.RTT())
		relay.Resume()
		r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "still here"})
		require.NoError(t, err)
		assert.Equal(t, "still here", r.Text)
	})
}

// TestLifecycleHeartbeatOneSided: only the server pings; the client's pongs
// keep the server's receive deadline fresh, and a half-open link is still
// detected by the side that pings.
func TestLifecycleHeartbeatOneSided(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, append(rec.ServerOptions(), netmsg.WithHeartbeat(lcInterval, lcSafeTimeout))...)
	relay := lcRelay(t, srv.Addr)
	cli := nettest.Connect(t, lcRelayURL(relay), append(rec.ClientOptions(), netmsg.WithHeartbeat(0, 0))...)
	ss := rec.NextOpen(t)
	cs := cli.Session()

	time.Sleep(5 * lcSafeTimeout / 2) // the client is silent but for pongs
	lcNoLoss(t, rec)
	assert.Greater(t, ss.RTT(), time.Duration(0), "server RTT from the client's pongs")
	assert.Zero(t, cs.RTT(), "the client sent pings with heartbeats off")

	relay.Latest().Blackhole()
	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.CloseConnectionLost, 0, false)
	assert.Nil(t, cs.Err(), "the client, with heartbeats off, cannot know")
	relay.Latest().Close() // let the client learn it the hard way (FIN)
	rec.NextDisconnect(t)
}
