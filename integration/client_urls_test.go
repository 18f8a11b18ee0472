package integration_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itDeadURL is a ws:// URL on a loopback port nobody listens on.
func itDeadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "ws://" + l.Addr().String() + "/"
	require.NoError(t, l.Close())
	return url
}

// Without reconnect, Connect tries each URL once, in turn.
func TestWithURLsConnectTriesEach(t *testing.T) {
	t.Parallel()
	srv := nettest.StartServer(t)
	c := nettest.NewClient(t, itDeadURL(t), netmsg.WithURLs(itDeadURL(t), srv.URL))
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	assert.Equal(t, srv.URL, c.URL())
	_, ok := srv.Session(c.Session().ID())
	assert.True(t, ok)

	// All dead: the last attempt's error.
	d := nettest.NewClient(t, itDeadURL(t), netmsg.WithURLs(itDeadURL(t)))
	err := d.Connect(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dial")
}

// With reconnect, a client whose server shuts down goes to the next URL in
// its list, runs OnConnect there, and says where it is; the attempts say
// where they go.
func TestWithURLsFailover(t *testing.T) {
	t.Parallel()
	a := nettest.StartServer(t)
	b := nettest.StartServer(t)
	var connects atomic.Int32
	var mu sync.Mutex
	var attempts []string
	c := nettest.NewClient(t, a.URL, netmsg.WithURLs(b.URL),
		netmsg.WithReconnect(backoff.NewConstantBackOff(20*time.Millisecond)),
		netmsg.WithOnConnect(func(context.Context, *netmsg.Session) error { connects.Add(1); return nil }),
		netmsg.WithOnReconnectAttempt(func(at netmsg.ReconnectAttempt) {
			mu.Lock()
			attempts = append(attempts, at.URL)
			mu.Unlock()
		}))
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	assert.Equal(t, a.URL, c.URL())

	require.NoError(t, a.Stop(t, nettest.Wait))
	require.Eventually(t, func() bool { return c.State() == netmsg.StateConnected && c.URL() == b.URL },
		nettest.Wait, 5*time.Millisecond, "the client did not move to the next server")
	assert.Equal(t, int32(2), connects.Load())
	_, ok := b.Session(c.Session().ID())
	assert.True(t, ok)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, attempts)
	assert.Equal(t, b.URL, attempts[0], "the first attempt after the loss goes to the next URL")
}
