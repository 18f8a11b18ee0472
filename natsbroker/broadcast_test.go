package natsbroker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// JoinRoom and LeaveRoom make the caller's session a member of a group, or
// not, on whichever node it is connected to.
type JoinRoom struct {
	netmsg.Returns[Joined]
	Room string
}

type LeaveRoom struct {
	netmsg.Returns[Joined]
	Room string
}

func serveRooms(n *node) {
	netmsg.AddRequestHandler(n.Server, func(_ context.Context, s *netmsg.Session, j JoinRoom) (Joined, error) {
		n.Group(j.Room).Add(s)
		return Joined{Node: n.URL}, nil
	})
	netmsg.AddRequestHandler(n.Server, func(_ context.Context, s *netmsg.Session, l LeaveRoom) (Joined, error) {
		n.Group(l.Room).Remove(s)
		return Joined{Node: n.URL}, nil
	})
}

// countingJSON is JSON under another name that counts what it encodes, to
// prove a broadcast is encoded once per serializer, not once per member or
// per node.
type countingJSON struct {
	name    string
	encodes *atomic.Int64
}

func (c countingJSON) Name() string { return c.name }
func (c countingJSON) Marshal(v any) ([]byte, error) {
	if c.encodes != nil {
		c.encodes.Add(1)
	}
	return serializer.JSON{}.Marshal(v)
}
func (c countingJSON) Unmarshal(data []byte, v any) error {
	return serializer.JSON{}.Unmarshal(data, v)
}

// Group members on three nodes, with two serializers: a group broadcast from
// any node reaches every member once, and no one else; the message is
// encoded once per serializer in the whole cluster.
func TestGroupBroadcastAcrossNodes(t *testing.T) {
	var encodes atomic.Int64
	a := countingJSON{name: "json-a", encodes: &encodes}
	b := countingJSON{name: "json-b", encodes: &encodes}
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3, netmsg.WithSerializer(a, b))
	for _, n := range nodes {
		serveRooms(n)
	}
	const room = "lobby / east.*" // not a subject token: the group's subject is a hash of it
	var members, others []*device
	for i, n := range nodes {
		for k := range 4 {
			ser := countingJSON{name: "json-a"}
			if k%2 == 1 {
				ser.name = "json-b"
			}
			d := connectDevice(t, n, netmsg.WithSerializer(ser))
			if k < 3 {
				_, err := netmsg.SendRequest(context.Background(), d.Client, JoinRoom{Room: room})
				require.NoError(t, err)
				members = append(members, d)
			} else {
				others = append(others, d)
			}
			_ = i
		}
	}
	for i, from := range nodes {
		encodes.Store(0)
		text := fmt.Sprintf("room news from node %d", i)
		require.NoError(t, from.Group(room).Broadcast(context.Background(), Note{Text: text}))
		for _, d := range members {
			assert.Equal(t, text, d.note(t).Text)
		}
		assert.Equal(t, int64(2), encodes.Load(), "encoded once per serializer")
	}
	for _, d := range append(members, others...) {
		d.noNote(t, 100*time.Millisecond)
	}
}

// Server.Broadcast reaches every session of every node, except those
// listed (sessions of the calling node).
func TestServerBroadcastAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3)
	var devices []*device
	for _, n := range nodes {
		for range 2 {
			devices = append(devices, connectDevice(t, n))
		}
		// A server registers a session just after its handshake answer: a
		// broadcast reaches the sessions registered when it arrives.
		eventually(t, "the node registers its sessions", func() bool { return n.SessionCount() == 2 })
	}
	skip, ok := nodes[0].Session(devices[0].ID(t))
	require.True(t, ok)
	require.NoError(t, nodes[0].Broadcast(context.Background(), Note{Text: "to all"}, skip))
	for _, d := range devices[1:] {
		assert.Equal(t, "to all", d.note(t).Text)
	}
	for _, d := range devices {
		d.noNote(t, 100*time.Millisecond)
	}
}

// Members who left do not get the group's broadcasts, and get them again
// when they join; Add returns once the node is subscribed, so a broadcast
// right after it arrives; a node with no member left unsubscribes.
func TestGroupMembershipFollowsJoins(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2)
	for _, n := range nodes {
		serveRooms(n)
	}
	here := connectDevice(t, nodes[0])
	there := connectDevice(t, nodes[1])
	base := ns.subscriptions()
	for round := range 20 {
		_, err := netmsg.SendRequest(context.Background(), there.Client, JoinRoom{Room: "r"})
		require.NoError(t, err)
		assert.Equal(t, base+1, ns.subscriptions(), "the node subscribed to the group when its first member joined")
		require.NoError(t, nodes[0].Group("r").Broadcast(context.Background(), Note{Text: fmt.Sprint(round)}))
		assert.Equal(t, fmt.Sprint(round), there.note(t).Text)
		_, err = netmsg.SendRequest(context.Background(), there.Client, LeaveRoom{Room: "r"})
		require.NoError(t, err)
		require.NoError(t, nodes[0].Group("r").Broadcast(context.Background(), Note{Text: "left"}))
		// A broadcast reaches the members a node has when it arrives there;
		// none now, whether or not the node has unsubscribed yet.
		there.noNote(t, 50*time.Millisecond)
		eventually(t, "the node unsubscribes when its last member left", func() bool { return ns.subscriptions() == base })
	}
	here.noNote(t, 0)
}
