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

// TestLifecycleCallbackPanics: a bug in an event callback is the user's, but
// it must not break the library around it. Every callback panics at least
// once here; the client still reconnects (a panicking OnConnect counts as a
// failed one and is retried), sessions still close completely, and the
// process lives.
func TestLifecycleCallbackPanics(t *testing.T) {
	t.Parallel()
	var opens, serverCloses atomic.Int32
	srv := nettest.StartServer(t, netmsg.WithOnSessionOpen(func(*netmsg.Session) {
		if opens.Add(1) == 1 {
			panic("bug in OnSessionOpen")
		}
	}),
		netmsg.WithOnSessionClose(func(*netmsg.Session, *netmsg.CloseError) {
			serverCloses.Add(1)
			panic("bug in OnSessionClose")
		}))
	lcEchoHandler(srv.Server, "srv:")

	var connects, disconnects, reconnecting atomic.Int32
	cli := nettest.Connect(t, srv.URL,
		netmsg.WithReconnect(lcConstBackOff()),
		netmsg.WithOnConnect(func(context.Context, *netmsg.Session) error {
			if connects.Add(1) == 2 {
				panic("bug in OnConnect")
			}
			return nil
		}),
		netmsg.WithOnDisconnect(func(*netmsg.CloseError) {
			disconnects.Add(1)
			panic("bug in OnDisconnect")
		}),
		netmsg.WithOnReconnecting(func(int, time.Duration) {
			if reconnecting.Add(1) == 1 {
				panic("bug in OnReconnecting")
			}
		}))

	// The first session survived its panicking OnSessionOpen.
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	r, err := netmsg.SendRequest(ctx, cli, lcEcho{Text: "one"})
	require.NoError(t, err)
	assert.Equal(t, "srv:one", r.Text)

	first := cli.Session()
	require.NotNil(t, first)
	for s := range srv.Server.Sessions() {
		require.NoError(t, s.Close("bye"))
	}
	select {
	case <-first.Done():
	case <-time.After(nettest.Wait):
		t.Fatal("the session whose OnDisconnect panicked never reported Done")
	}
	require.NotNil(t, first.Err())

	// Attempt 2's OnConnect panics and is retried; attempt 3 connects.
	r, err = netmsg.SendRequest(ctx, cli, lcEcho{Text: "two"})
	require.NoError(t, err, "after panicking callbacks the client must reconnect")
	assert.Equal(t, "srv:two", r.Text)
	assert.GreaterOrEqual(t, connects.Load(), int32(3))
	assert.GreaterOrEqual(t, disconnects.Load(), int32(2), "one disconnect per session that ended")
	assert.GreaterOrEqual(t, serverCloses.Load(), int32(2))
	assert.Equal(t, 1, srv.Server.SessionCount())
}
