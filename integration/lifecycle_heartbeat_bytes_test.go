package integration_test

import (
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLifecycleHeartbeatSlowLargeFrame: a peer uploading one large frame
// slowly (its pongs wait behind the frame) is sending all the time; bytes
// arriving count as life, so it is not closed as CloseConnectionLost even
// though no whole frame arrives for longer than the receive timeout.
func TestLifecycleHeartbeatSlowLargeFrame(t *testing.T) {
	t.Parallel()
	unhandled := make(chan string, 1)
	srv := hdStartServer(t,
		netmsg.WithHeartbeat(100*time.Millisecond, 500*time.Millisecond),
		netmsg.WithOnUnhandled(func(_ *netmsg.Session, typ string) { unhandled <- typ }))
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
	ss := srv.NextOpen(t)

	body := `"` + strings.Repeat("x", 48<<10) + `"`
	frame := nettest.Frame(0x82, nettest.Envelope(wire.KindMessage, 0, "slow.Upload", body))
	const chunk = 400 // every 10 ms: about 40 KiB/s, 1.2 s for the frame
	start := time.Now()
	for off := 0; off < len(frame); off += chunk {
		require.Nil(t, ss.Err(), "closed %v into a frame still arriving", time.Since(start))
		_, err := p.Write(frame[off:min(off+chunk, len(frame))])
		require.NoError(t, err)
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	select {
	case typ := <-unhandled:
		assert.Equal(t, "slow.Upload", typ)
	case <-time.After(nettest.Wait):
		t.Fatal("the slow frame was not delivered")
	}
	assert.Nil(t, ss.Err(), "after a frame that took %v (receive timeout 500ms)", took)
	assert.Greater(t, took, time.Second, "the upload was meant to outlast the receive timeout")
}

// TestHardeningFrameBeforeUpgradeAnswer: a client that writes its first frame
// right behind the upgrade request, without waiting for the 101, does not
// lose it: what net/http read ahead is handed to the session first.
func TestHardeningFrameBeforeUpgradeAnswer(t *testing.T) {
	t.Parallel()
	unhandled := make(chan string, 1)
	srv := hdStartServer(t, netmsg.WithOnUnhandled(func(_ *netmsg.Session, typ string) { unhandled <- typ }))
	p := nettest.DialWS(t, srv.Addr, nettest.WSDial{First: nettest.Frame(0x82, nettest.Envelope(wire.KindMessage, 0, "early.Bird", `"x"`))})
	require.Equal(t, 101, p.Resp.StatusCode)
	select {
	case typ := <-unhandled:
		assert.Equal(t, "early.Bird", typ)
	case <-time.After(nettest.Wait):
		t.Fatal("the frame sent with the upgrade request was lost")
	}
}
