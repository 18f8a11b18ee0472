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

// TestFaultServerRestartSameAddress: the server shuts down and a new one
// starts on the same address. The client honours the shutdown's reconnect
// hint, keeps retrying through the outage, and a request made during the
// outage waits and is answered by the new server.
func TestFaultServerRestartSameAddress(t *testing.T) {
	t.Parallel()
	recA := nettest.NewRecorder()
	srvA := nettest.StartServer(t, recA.ServerOptions()...)
	lcEchoHandler(srvA.Server, "A:")
	conns := lcNewConnects(nil)
	rc := lcNewReconnecting()
	cli := nettest.Connect(t, srvA.URL, append(recA.ClientOptions(), conns.Option(), rc.Option(),
		netmsg.WithReconnect(lcConstBackOff()), netmsg.WithRequestTimeout(20*time.Second))...)
	conns.Next(t)
	r, err := netmsg.SendRequest(context.Background(), cli, lcEcho{Text: "one"})
	require.NoError(t, err)
	assert.Equal(t, "A:one", r.Text)

	require.NoError(t, srvA.Stop(t, 10*time.Second))
	ce := recA.NextDisconnect(t)
	nettest.AssertClose(t, ce, netmsg.CloseServerShutdown, 1001, true)
	hint := ce.ReconnectAfter()
	require.Greater(t, hint, time.Duration(0))

	first := rc.Next(t)
	assert.Equal(t, 1, first.N)
	assert.GreaterOrEqual(t, first.Delay, hint, "the server's reconnect hint is a minimum delay")

	// A request during the outage waits for the new server.
	waiting := lcGoRequest(t, context.Background(), cli, lcEcho{Text: "two"})
	// Retries go on at the backoff's pace once the hint has passed.
	for {
		if a := rc.Next(t); a.N >= 3 {
			assert.Equal(t, 20*time.Millisecond, a.Delay)
			break
		}
	}
	lcAssertPending(t, waiting, 200*time.Millisecond)
	assert.Equal(t, netmsg.Connecting, cli.State())

	recB := nettest.NewRecorder()
	srvB := nettest.StartServerOn(t, nettest.Listen{Addr: srvA.Addr}, recB.ServerOptions()...)
	lcEchoHandler(srvB.Server, "B:")

	res := lcAwait(t, waiting, 10*time.Second)
	require.NoError(t, res.Err, "the request waiting through the outage")
	assert.Equal(t, "B:two", res.Reply.Text)
	conns.Next(t)
	recB.NextOpen(t)
	assert.Equal(t, netmsg.Connected, cli.State())
	assert.Equal(t, 2, conns.Count())
	conns.AssertDistinct(t)
	lcSettle()
	assert.Equal(t, 1, recA.Disconnects())
}
