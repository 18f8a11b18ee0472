package netmsg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// downBroker is a Broker that cannot subscribe.
type downBroker struct{}

var errDown = errors.New("broker down for the test")

func (downBroker) Publish(context.Context, string, []byte) error { return errDown }
func (downBroker) Request(context.Context, string, []byte) ([]byte, error) {
	return nil, errDown
}
func (downBroker) Subscribe(string, netmsg.BrokerHandler) (func(), error) { return nil, errDown }

// A server whose broker fails at NewServer serves its own sessions, and its
// cross-node calls say why they cannot leave it.
func TestBrokerSubscribeFails(t *testing.T) {
	srv, cli := pair(t, []netmsg.ServerOption{netmsg.WithBroker(downBroker{})}, nil, nil)
	got := make(chan Note, 4)
	netmsg.AddMessageHandler(cli, func(_ context.Context, _ *netmsg.Session, n Note) { got <- n })
	id := cli.Session().ID()

	require.NoError(t, srv.SendTo(context.Background(), id, Note{Text: "local"}))
	err := srv.Broadcast(context.Background(), Note{Text: "all"})
	assert.ErrorIs(t, err, errDown, "the broadcast says it reached this node only")
	for _, want := range []string{"local", "all"} {
		select {
		case n := <-got:
			assert.Equal(t, want, n.Text)
		case <-time.After(5 * time.Second):
			t.Fatalf("%q did not arrive", want)
		}
	}
	other := "zz" + id // a session id of another node
	assert.ErrorIs(t, srv.SendTo(context.Background(), other, Note{}), errDown)
	_, err = netmsg.SendRequestTo(context.Background(), srv, other, Ping{})
	assert.ErrorIs(t, err, errDown)
}

// Without a broker SendTo and SendRequestTo reach the server's own sessions,
// and ErrNoSession is the answer for any other id.
func TestSendToWithoutBroker(t *testing.T) {
	srv, cli := pair(t, nil, nil, func(_ *netmsg.Server, c *netmsg.Client) {
		netmsg.AddRequestHandler(c, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) { return Pong{N: p.N + 1}, nil })
	})
	pong, err := netmsg.SendRequestTo(context.Background(), srv, cli.Session().ID(), Ping{N: 1})
	require.NoError(t, err)
	assert.Equal(t, 2, pong.N)
	_, err = netmsg.SendRequestTo(context.Background(), srv, "nobody-1", Ping{})
	assert.ErrorIs(t, err, netmsg.ErrNoSession)
	assert.ErrorIs(t, srv.SendTo(context.Background(), "nobody-1", Note{}), netmsg.ErrNoSession)
	assert.Equal(t, netmsg.CodeNotFound, netmsg.CodeOf(netmsg.ErrNoSession))
}
