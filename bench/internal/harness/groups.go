package harness

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/bench/internal/benchpb"
)

// GroupKinds lists the contenders of the group shape: netmsg's groups, and
// gws's own Broadcaster over connections the server keeps in slices, one per
// group (gws has no groups; this is what a gws user writes).
var GroupKinds = []string{GWSRaw, NetmsgJSON, NetmsgProto}

// groupServer is the parent's side of the group shape.
type groupServer struct {
	addr  string
	count func() int
	// assign puts the connected sessions into g groups, round robin.
	assign func(g int)
	// broadcast sends one message to every group, one call per group.
	broadcast func() error
	close     func()
}

func startGroupServer(kind string, size int) (*groupServer, error) {
	body := Body(size)
	switch kind {
	case GWSRaw:
		srv, err := startGWSServer(func(_ *gws.Conn, m *gws.Message) { _ = m.Close() })
		if err != nil {
			return nil, err
		}
		var groups [][]*gws.Conn
		return &groupServer{addr: srv.URL, count: srv.count, close: srv.Close,
			assign: func(g int) {
				groups = make([][]*gws.Conn, g)
				i := 0
				srv.each(func(c *gws.Conn) { groups[i%g] = append(groups[i%g], c); i++ })
			},
			broadcast: func() error {
				for _, members := range groups {
					b := gws.NewBroadcaster(gws.OpcodeBinary, body)
					for _, c := range members {
						_ = b.Broadcast(c)
					}
					_ = b.Close()
				}
				return nil
			}}, nil
	case NetmsgJSON, NetmsgProto:
		srv, err := startNetmsgServer(kind)
		if err != nil {
			return nil, err
		}
		var msg any = Note{Body: body}
		if kind == NetmsgProto {
			msg = &benchpb.Note{Body: body}
		}
		var groups []*netmsg.Group
		return &groupServer{addr: srv.URL, count: srv.srv.SessionCount, close: srv.Close,
			assign: func(g int) {
				groups = make([]*netmsg.Group, g)
				for i := range groups {
					groups[i] = srv.srv.Group("room-" + strconv.Itoa(i))
				}
				i := 0
				for s := range srv.srv.Sessions() {
					groups[i%g].Add(s)
					i++
				}
			},
			broadcast: func() error {
				ctx := context.Background()
				for _, g := range groups {
					if err := g.Broadcast(ctx, msg); err != nil {
						return err
					}
				}
				return nil
			}}, nil
	}
	return nil, fmt.Errorf("harness: no group server for %q", kind)
}

// GroupsResult is one round of one contender of the group shape.
type GroupsResult struct {
	Times   []time.Duration // each round of broadcasts: from the first call until the child counted n
	Mallocs float64         // server process allocations per delivered message
	Bytes   float64         // server process bytes allocated per delivered message
}

// RunGroups connects n clients in the child, puts them in g groups, and
// then reps times broadcasts one message of size bytes to every group (g
// calls, n deliveries), timing each round until every client has its copy.
// With raw, netmsg's clients are gws clients that count frames (RawClient).
func RunGroups(c *Child, kind string, n, g, size, reps int, raw bool) (*GroupsResult, error) {
	s, err := startGroupServer(kind, size)
	if err != nil {
		return nil, err
	}
	defer s.close()
	defer func() { _, _ = c.Do("close", 5*time.Minute) }()
	if _, err := c.Do(fmt.Sprintf("dial %s %s %d", childKind(kind, raw), s.addr, n), 5*time.Minute); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for s.count() < n {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("harness: %s server counts %d of %d sessions", kind, s.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.assign(g)
	one := func() (time.Duration, error) { return timeBroadcast(c, kind, "group broadcast", n, s.broadcast) }
	if _, err := one(); err != nil { // warm-up
		return nil, err
	}
	r := &GroupsResult{}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for range reps {
		d, err := one()
		if err != nil {
			return nil, err
		}
		r.Times = append(r.Times, d)
	}
	runtime.ReadMemStats(&m1)
	r.Mallocs = float64(m1.Mallocs-m0.Mallocs) / float64(reps*n)
	r.Bytes = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(reps*n)
	return r, nil
}
