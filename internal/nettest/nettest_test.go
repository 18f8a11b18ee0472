package nettest_test

import (
	"context"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type echo struct {
	netmsg.Returns[echoReply]
	Text string
}

type echoReply struct{ Text string }

// TestFixtures runs every fixture once against a real server, so that a
// fixture that stops working fails here rather than as a puzzling failure of
// the test using it.
func TestFixtures(t *testing.T) {
	rec := nettest.NewRecorder()
	srv := nettest.StartServerOn(t, nettest.Listen{StrictLog: true}, rec.ServerOptions()...)
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, r echo) (echoReply, error) {
		return echoReply{Text: r.Text}, nil
	})
	m := nettest.Measure(t, "the fixtures")

	// A netmsg client, and the recorder sees its session open.
	c := nettest.Connect(t, srv.URL, rec.ClientOptions()...)
	s := rec.NextOpen(t)
	r, err := netmsg.SendRequest(context.Background(), c, echo{Text: "hi"})
	require.NoError(t, err)
	assert.Equal(t, "hi", r.Text)

	// A gws peer sends a request envelope and reads the answer.
	g := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
	rec.NextOpen(t)
	g.Send(t, nettest.Envelope(wire.KindRequest, 7, netmsg.TypeName(echo{}), `{"Text":"raw"}`))
	env := g.NextEnvelope(t)
	assert.Equal(t, wire.KindResponse, env.Kind)
	assert.Equal(t, uint64(7), env.ID)
	assert.JSONEq(t, `{"Text":"raw"}`, env.Payload)

	// A hand-framed peer: a ping is answered with a pong of the same payload.
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
	rec.NextOpen(t)
	p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpPing, []byte("abc")))
	assert.Equal(t, []byte("abc"), p.NextFrame(t, nettest.OpPong))
	// Read in the background; a second ping's pong is counted.
	rd := p.StartReading(time.Millisecond)
	p.WriteRaw(t, nettest.Frame(nettest.Fin|nettest.OpPing, nil))
	require.Eventually(t, func() bool { return rd.Pongs.Load() == 1 }, nettest.Wait, time.Millisecond)

	// The session of the netmsg client closes and the recorder sees it once.
	require.NoError(t, s.Close("bye"))
	nettest.AssertClose(t, rec.CloseOf(t, s).Err, netmsg.CloseNormal, 1000, false)
	nettest.AssertClose(t, rec.NextDisconnect(t), netmsg.ClosePeerNormal, 1000, true)
	assert.NotZero(t, m.Stop().Took)
}
