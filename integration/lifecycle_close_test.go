package integration_test

// One test per typed close reason, each produced by the real situation, with
// both ends' view checked: Reason, Code, Text, Remote, the cause, ErrClosed,
// and OnSessionClose / OnDisconnect firing exactly once per session.
//
// CloseConnectionLost is covered in lifecycle_heartbeat_test.go and
// fault_halfopen_test.go, CloseServerShutdown in lifecycle_shutdown_test.go.

import (
	"context"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/cenkalti/backoff/v4"
	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLifecycleCloseNormal(t *testing.T) {
	t.Parallel()

	t.Run("client closes", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		cli := nettest.Connect(t, srv.URL, rec.ClientOptions()...)
		ss := rec.NextOpen(t)
		cs := cli.Session()
		require.NotNil(t, cs)

		nettest.CloseWithin(t, cli, nettest.Wait)

		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseNormal, 1000, false)
		assert.Equal(t, ce, cs.Err(), "Session.Err reports the same close")
		sc := rec.NextClose(t)
		assert.Equal(t, ss.ID(), sc.S.ID())
		nettest.AssertClose(t, sc.Err, netmsg.ClosePeerNormal, 1000, true)
		assert.Equal(t, sc.Err, ss.Err())
		assert.Error(t, ss.Context().Err(), "the session's context ends when it closes")

		assert.Equal(t, netmsg.Closed, cli.State())
		assert.ErrorIs(t, cli.Err(), netmsg.ErrClosed)
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects(), "OnDisconnect calls")
		rec.AssertClosedOnce(t)
	})

	t.Run("server closes", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		cli := nettest.Connect(t, srv.URL, rec.ClientOptions()...)
		ss := rec.NextOpen(t)

		require.NoError(t, ss.Close("bye now"))

		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseNormal, 1000, false)
		assert.Equal(t, "bye now", sc.Err.Text)
		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.ClosePeerNormal, 1000, true)
		assert.Equal(t, "bye now", ce.Text)

		// Without reconnect the client is now disconnected, and calls fail at once.
		nettest.WaitState(t, cli, netmsg.Disconnected)
		assert.Nil(t, cli.Session())
		_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "x"})
		assert.ErrorIs(t, err, netmsg.ErrNotConnected)
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects(), "OnDisconnect calls")
		rec.AssertClosedOnce(t)
	})
}

func TestLifecycleCloseNetworkError(t *testing.T) {
	t.Parallel()

	t.Run("reset", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		relay := lcRelay(t, srv.Addr)
		nettest.Connect(t, lcRelayURL(relay), rec.ClientOptions()...)
		rec.NextOpen(t)

		relay.Latest().Reset()

		ce := rec.NextDisconnect(t)
		assert.Equal(t, netmsg.CloseNetworkError.String(), ce.Reason.String(), "client: %v", ce)
		assert.Error(t, ce.Err, "a network error carries its cause")
		assert.ErrorIs(t, ce, netmsg.ErrClosed)
		sc := rec.NextClose(t)
		assert.Equal(t, netmsg.CloseNetworkError.String(), sc.Err.Reason.String(), "server: %v", sc.Err)
		assert.Error(t, sc.Err.Err)
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects())
		rec.AssertClosedOnce(t)
	})

	t.Run("client vanishes without a close frame", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
		rec.NextOpen(t)

		require.NoError(t, raw.Conn.NetConn().Close()) // EOF, no close frame

		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseNetworkError, 1006, true)
		assert.Error(t, sc.Err.Err, "the cause (EOF) is kept")
		lcSettle()
		rec.AssertClosedOnce(t)
	})

	t.Run("server vanishes without a close frame", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		rs := nettest.StartGwsServer(t, nettest.GwsConfig{})
		cli := nettest.Connect(t, rs.URL, rec.ClientOptions()...)
		p := rs.NextPeer(t)
		require.NoError(t, cli.Send(context.Background(), lcNote{Text: "hello"}))
		select {
		case <-p.Msgs:
		case <-time.After(nettest.Wait):
			t.Fatal("raw server got nothing")
		}

		require.NoError(t, p.Conn.NetConn().Close())

		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseNetworkError, 1006, true)
		assert.Error(t, ce.Err)
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects())
	})
}

func TestLifecycleCloseProtocolError(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name string
		send func(c *gws.Conn) error
	}{
		{"malformed envelope", func(c *gws.Conn) error {
			return c.WriteMessage(gws.OpcodeBinary, []byte{0xff, 0xff, 0xff, 0xff, 0xff})
		}},
		{"unknown envelope kind", func(c *gws.Conn) error {
			return c.WriteMessage(gws.OpcodeBinary, []byte{0x08, 0x63}) // kind = 99
		}},
		{"text frame", func(c *gws.Conn) error { return c.WriteString("hello") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := nettest.NewRecorder()
			srv := nettest.StartServer(t, rec.ServerOptions()...)
			raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
			rec.NextOpen(t)

			require.NoError(t, tc.send(raw.Conn))

			sc := rec.NextClose(t)
			nettest.AssertClose(t, sc.Err, netmsg.CloseProtocolError, 1002, false)
			assert.EqualValues(t, 1002, nettest.GwsCloseCode(raw.NextClose(t)), "the peer is told 1002")
			lcSettle()
			rec.AssertClosedOnce(t)
		})
	}

	t.Run("peer sends 1007", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
		rec.NextOpen(t)

		require.NoError(t, raw.Conn.WriteClose(1007, []byte("inconsistent data")))

		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseProtocolError, 1007, true)
		assert.Equal(t, "inconsistent data", sc.Err.Text)
		lcSettle()
		rec.AssertClosedOnce(t)
	})

	t.Run("server sends a malformed envelope to the client", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		rs := nettest.StartGwsServer(t, nettest.GwsConfig{})
		cli := nettest.Connect(t, rs.URL, rec.ClientOptions()...)
		p := rs.NextPeer(t)
		require.NoError(t, cli.Send(context.Background(), lcNote{Text: "hello"}))
		select {
		case <-p.Msgs:
		case <-time.After(nettest.Wait):
			t.Fatal("raw server got nothing")
		}

		require.NoError(t, p.Conn.WriteMessage(gws.OpcodeBinary, []byte{0xff, 0xff, 0xff}))

		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseProtocolError, 1002, false)
		assert.EqualValues(t, 1002, nettest.GwsCloseCode(p.NextClose(t)))
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects())
	})
}

func TestLifecycleCloseMessageTooLarge(t *testing.T) {
	t.Parallel()

	t.Run("raw frame over the limit", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, append(rec.ServerOptions(), netmsg.WithMaxMessageSize(1024))...)
		raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
		rec.NextOpen(t)

		require.NoError(t, raw.Conn.WriteMessage(gws.OpcodeBinary, make([]byte, 4096)))

		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseMessageTooLarge, 1009, false)
		assert.ErrorIs(t, sc.Err, netmsg.ErrMessageTooLarge)
		assert.EqualValues(t, 1009, nettest.GwsCloseCode(raw.NextClose(t)), "the peer is told 1009")
		lcSettle()
		rec.AssertClosedOnce(t)
	})

	t.Run("netmsg client over the server's limit", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, append(rec.ServerOptions(), netmsg.WithMaxMessageSize(1024))...)
		cli := nettest.Connect(t, srv.URL, rec.ClientOptions()...) // client limit: default 1 MiB
		rec.NextOpen(t)

		require.NoError(t, cli.Send(context.Background(), lcBlob{Data: make([]byte, 4096)}))

		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseMessageTooLarge, 1009, true)
		assert.ErrorIs(t, ce, netmsg.ErrMessageTooLarge)
		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseMessageTooLarge, 1009, false)
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects())
		rec.AssertClosedOnce(t)
	})

	t.Run("over the limit after decompression", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, append(rec.ServerOptions(),
			netmsg.WithMaxMessageSize(4096), netmsg.WithCompression(true))...)
		cli := nettest.Connect(t, srv.URL, append(rec.ClientOptions(), netmsg.WithCompression(true))...)
		rec.NextOpen(t)

		// 64 KiB of zeros compresses to far less than 4 KiB on the wire.
		require.NoError(t, cli.Send(context.Background(), lcBlob{Data: make([]byte, 64<<10)}))

		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseMessageTooLarge, 1009, false)
		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseMessageTooLarge, 1009, true)
		assert.ErrorIs(t, ce, netmsg.ErrMessageTooLarge)
		lcSettle()
		rec.AssertClosedOnce(t)
	})

	t.Run("own limit fails the send, not the session", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		lcEchoHandler(srv.Server, "")
		cli := nettest.Connect(t, srv.URL, append(rec.ClientOptions(), netmsg.WithMaxMessageSize(1024))...)

		err := cli.Send(context.Background(), lcBlob{Data: make([]byte, 4096)})
		assert.ErrorIs(t, err, netmsg.ErrMessageTooLarge)
		r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "still here"})
		require.NoError(t, err)
		assert.Equal(t, "still here", r.Text)
		assert.Zero(t, rec.Disconnects())
	})
}

func TestLifecycleCloseSlowConsumer(t *testing.T) {
	t.Parallel()
	t.Run("write deadline", lcSlowConsumerBySend)
	t.Run("queue limit", lcSlowConsumerByBroadcast)
}

// lcSlowConsumerByBroadcast: Broadcast never writes on the caller's goroutine,
// so a peer that stops reading fills the session's queue until it overflows.
func lcSlowConsumerByBroadcast(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, append(rec.ServerOptions(),
		netmsg.WithHeartbeat(0, 0),
		netmsg.WithWriteTimeout(time.Minute), // only the queue limit can end it
		netmsg.WithMaxQueuedBytes(256<<10),
	)...)
	nettest.DialGws(t, srv.URL, nettest.GwsConfig{NoRead: true}) // never reads
	ss := rec.NextOpen(t)

	blob := lcBlob{Data: make([]byte, 64<<10)}
	deadline := time.Now().Add(20 * time.Second)
	sent := 0
	for ss.Err() == nil && time.Now().Before(deadline) {
		require.NoError(t, srv.Server.Broadcast(context.Background(), blob))
		sent++
	}
	t.Logf("broadcast %d blobs before the session closed", sent)
	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.CloseSlowConsumer, 0, false)
	assert.Zero(t, srv.Server.SessionCount())
	lcSettle()
	rec.AssertClosedOnce(t)
}

// lcSlowConsumerBySend: Session.Send writes on the caller's goroutine; the
// write deadline ends it.
func lcSlowConsumerBySend(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, append(rec.ServerOptions(),
		netmsg.WithHeartbeat(0, 0), // the peer below answers nothing; only the writes may fail
		netmsg.WithWriteTimeout(300*time.Millisecond),
		netmsg.WithMaxQueuedBytes(256<<10),
	)...)
	nettest.DialGws(t, srv.URL, nettest.GwsConfig{NoRead: true}) // never reads
	ss := rec.NextOpen(t)

	blob := lcBlob{Data: make([]byte, 128<<10)}
	deadline := time.Now().Add(20 * time.Second)
	sent := 0
	for time.Now().Before(deadline) {
		if err := ss.Send(context.Background(), blob); err != nil {
			assert.ErrorIs(t, err, netmsg.ErrClosed)
			break
		}
		sent++
	}
	t.Logf("sent %d blobs before the session closed", sent)

	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.CloseSlowConsumer, 0, false)
	lcSettle()
	rec.AssertClosedOnce(t)
}

func TestLifecycleClosePolicyViolation(t *testing.T) {
	t.Parallel()
	rec := nettest.NewRecorder()
	srv := nettest.StartServer(t, rec.ServerOptions()...)
	reconnectingCh := make(chan int, 64)
	cli := nettest.Connect(t, srv.URL, append(rec.ClientOptions(),
		netmsg.WithReconnect(backoff.NewConstantBackOff(20*time.Millisecond)),
		netmsg.WithOnReconnecting(func(attempt int, _ time.Duration) { reconnectingCh <- attempt }),
	)...)
	ss := rec.NextOpen(t)

	require.NoError(t, ss.Kick("banned"))

	sc := rec.NextClose(t)
	nettest.AssertClose(t, sc.Err, netmsg.ClosePolicyViolation, 1008, false)
	ce := rec.NextDisconnect(t)
	nettest.AssertClose(t, ce, netmsg.ClosePolicyViolation, 1008, true)
	assert.Equal(t, "banned", ce.Text)

	// Kicked: the client must not reconnect, and says why.
	select {
	case <-cli.Done():
	case <-time.After(nettest.Wait):
		t.Fatal("Client.Done not closed after a policy close")
	}
	var final *netmsg.CloseError
	require.ErrorAs(t, cli.Err(), &final, "Client.Err: %v", cli.Err())
	assert.Equal(t, netmsg.ClosePolicyViolation.String(), final.Reason.String())
	assert.Equal(t, netmsg.Closed, cli.State())
	_, err := netmsg.SendRequest(context.Background(), cli, lcEcho{})
	assert.ErrorIs(t, err, netmsg.ErrClosed)

	time.Sleep(300 * time.Millisecond) // would be 15 attempts at 20 ms
	assert.Zero(t, len(reconnectingCh), "OnReconnecting calls after a kick")
	assert.Equal(t, 1, len(rec.Opened()), "the kicked client connected again")
	assert.Equal(t, 1, rec.Disconnects())
	rec.AssertClosedOnce(t)
}

func TestLifecycleCloseInternalError(t *testing.T) {
	t.Parallel()

	t.Run("client peer sends 1011", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		srv := nettest.StartServer(t, rec.ServerOptions()...)
		raw := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
		rec.NextOpen(t)

		require.NoError(t, raw.Conn.WriteClose(1011, []byte("boom")))

		sc := rec.NextClose(t)
		nettest.AssertClose(t, sc.Err, netmsg.CloseInternalError, 1011, true)
		assert.Equal(t, "boom", sc.Err.Text)
		lcSettle()
		rec.AssertClosedOnce(t)
	})

	t.Run("server peer sends 1011", func(t *testing.T) {
		t.Parallel()
		rec := nettest.NewRecorder()
		rs := nettest.StartGwsServer(t, nettest.GwsConfig{})
		cli := nettest.Connect(t, rs.URL, rec.ClientOptions()...)
		p := rs.NextPeer(t)
		require.NoError(t, cli.Send(context.Background(), lcNote{Text: "hello"}))
		select {
		case <-p.Msgs:
		case <-time.After(nettest.Wait):
			t.Fatal("raw server got nothing")
		}

		require.NoError(t, p.Conn.WriteClose(1011, []byte("boom")))

		ce := rec.NextDisconnect(t)
		nettest.AssertClose(t, ce, netmsg.CloseInternalError, 1011, true)
		assert.Equal(t, "boom", ce.Text)
		lcSettle()
		assert.Equal(t, 1, rec.Disconnects())
	})
}
