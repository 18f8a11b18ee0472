package natsbroker_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/require"
)

// The cost of going through NATS, next to the same work on one server:
//
//	go test -run '^$' -bench . -benchtime 200x ./...
//
// BenchmarkGroupBroadcast: one group broadcast to 1,000 members, timed until
// every member's handler has it; on one server without a broker, and with
// the members spread over three nodes (the broadcast made on one of them).
// BenchmarkRequest: one request round trip from a server to a client, to a
// session of the same server and to one on another node.

const benchMembers = 1000

// plainServer is a server without a broker, for the single-node figures.
func plainServer(b *testing.B, opts ...netmsg.ServerOption) *node {
	srv := netmsg.NewServer(opts...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	n := &node{Server: srv, URL: "ws://" + l.Addr().String() + "/", done: make(chan struct{})}
	go func() {
		defer close(n.done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.Errorf("Serve: %v", err)
		}
	}()
	b.Cleanup(func() { _ = n.Shutdown() })
	return n
}

// joinOnOpen puts every session of n in the group "room".
func joinOnOpen(n **node) netmsg.ServerOption {
	return netmsg.WithOnSessionOpen(func(s *netmsg.Session) { (*n).Group("room").Add(s) })
}

func BenchmarkGroupBroadcast(b *testing.B) {
	b.Run("1-node", func(b *testing.B) {
		var n *node
		n = plainServer(b, joinOnOpen(&n))
		benchBroadcast(b, []*node{n})
	})
	b.Run("3-nodes", func(b *testing.B) {
		ns := startNATS(b)
		nodes := make([]*node, 3)
		for i := range nodes {
			nodes[i] = startNode(b, ns, joinOnOpen(&nodes[i]))
		}
		benchBroadcast(b, nodes)
	})
}

func benchBroadcast(b *testing.B, nodes []*node) {
	var received, want atomic.Int64
	all := make(chan struct{}, 1)
	for i := range benchMembers {
		n := nodes[i%len(nodes)]
		c := netmsg.NewClient(n.URL)
		netmsg.AddMessageHandler(c, func(context.Context, *netmsg.Session, Note) {
			if received.Add(1) == want.Load() {
				all <- struct{}{}
			}
		})
		require.NoError(b, c.Connect(context.Background()))
		b.Cleanup(func() { _ = c.Close() })
	}
	for _, n := range nodes {
		eventually(b, "every member joined", func() bool {
			return n.Group("room").Len() == benchMembers/len(nodes)+boolInt(n == nodes[0] && benchMembers%len(nodes) > 0)
		})
	}
	room := nodes[0].Group("room")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		want.Add(benchMembers)
		if err := room.Broadcast(ctx, Note{Text: "news"}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-all:
		case <-time.After(30 * time.Second):
			b.Fatalf("only %d of %d deliveries", received.Load(), want.Load())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/broadcast")
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

func BenchmarkRequest(b *testing.B) {
	ns := startNATS(b)
	nodes := startNodes(b, ns, 2)
	local := connectDevice(b, nodes[0])
	remote := connectDevice(b, nodes[1])
	for _, tc := range []struct {
		name string
		id   string
	}{{"same-node", local.ID(b)}, {"cross-node", remote.ID(b)}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := netmsg.SendRequestTo(ctx, nodes[0].Server, tc.id, Ping{Text: "ping"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
