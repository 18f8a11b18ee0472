package netmsg_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/require"
)

// Contracts used by the tests.
type Ping struct {
	netmsg.Returns[Pong]
	N int
}
type Pong struct{ N int }

type Slow struct {
	netmsg.Returns[Pong]
	D time.Duration
}

type Note struct{ Text string }

// pair starts a server on a loopback port and a connected client; both are
// closed when the test ends.
func pair(t *testing.T, srvOpts []netmsg.ServerOption, cliOpts []netmsg.ClientOption, setup func(*netmsg.Server, *netmsg.Client)) (*netmsg.Server, *netmsg.Client) {
	t.Helper()
	srv := netmsg.NewServer(srvOpts...)
	hs := httptest.NewServer(srv)
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	cli := netmsg.NewClient(url, cliOpts...)
	if setup != nil {
		setup(srv, cli)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	t.Cleanup(func() {
		require.NoError(t, cli.Close())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		hs.Close()
	})
	return srv, cli
}
