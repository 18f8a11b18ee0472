package harness

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg/bench/internal/benchpb"
)

// BroadcastKinds lists the broadcast contenders. gRPC has no broadcast.
var BroadcastKinds = []string{GWSRaw, NetmsgJSON, NetmsgProto, ARPC}

// IdleKinds lists the contenders whose idle sessions are measured.
var IdleKinds = []string{GWSRaw, NetmsgJSON, GRPC, ARPC}

// server is the parent's side of the broadcast and idle shapes.
type server struct {
	addr      string // what the child dials
	count     func() int
	broadcast func() error
	close     func()
}

func startServer(kind string, size int) (*server, error) {
	body := Body(size)
	switch kind {
	case GWSRaw:
		srv, err := startGWSServer(func(_ *gws.Conn, m *gws.Message) { _ = m.Close() })
		if err != nil {
			return nil, err
		}
		return &server{addr: srv.URL, count: srv.count, close: srv.Close, broadcast: func() error {
			// gws's own broadcaster: the frame is built once, each
			// connection's write queue sends it.
			b := gws.NewBroadcaster(gws.OpcodeBinary, body)
			srv.each(func(c *gws.Conn) { _ = b.Broadcast(c) })
			return b.Close()
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
		return &server{addr: srv.URL, count: srv.srv.SessionCount, close: srv.Close, broadcast: func() error {
			return srv.srv.Broadcast(context.Background(), msg)
		}}, nil
	case ARPC:
		srv, err := startARPCServer()
		if err != nil {
			return nil, err
		}
		return &server{addr: srv.Addr, count: srv.count, close: srv.Close, broadcast: func() error {
			srv.srv.Broadcast("/bc", body)
			return nil
		}}, nil
	case GRPC:
		srv, err := startGRPCServer()
		if err != nil {
			return nil, err
		}
		return &server{addr: srv.Addr, close: srv.Close}, nil
	}
	return nil, fmt.Errorf("harness: no server for %q", kind)
}

// connect has the child dial n clients and waits until the server counts
// them. With raw, the clients of a netmsg server are gws clients (RawClient).
func (s *server) connect(c *Child, kind string, n int, raw bool) error {
	if _, err := c.Do(fmt.Sprintf("dial %s %s %d", childKind(kind, raw), s.addr, n), 5*time.Minute); err != nil {
		return err
	}
	if s.count == nil {
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for s.count() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: %s server counts %d of %d sessions", kind, s.count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// BroadcastResult is one round of one contender.
type BroadcastResult struct {
	Times   []time.Duration // each broadcast: from the call until the child counted n
	Mallocs float64         // server process allocations per broadcast
	Bytes   float64
}

// childKind is what the child dials for contender kind.
func childKind(kind string, raw bool) string {
	if raw && kind != GWSRaw {
		return RawClient + kind
	}
	return kind
}

// RunBroadcast connects n clients in the child, broadcasts one message of
// size bytes once to warm up and then reps times, timing each until every
// client has received it, and disconnects. With raw, netmsg's clients are
// gws clients that count frames (RawClient).
func RunBroadcast(c *Child, kind string, n, size, reps int, raw bool) (*BroadcastResult, error) {
	s, err := startServer(kind, size)
	if err != nil {
		return nil, err
	}
	defer s.close()
	defer func() { _, _ = c.Do("close", 5*time.Minute) }()
	if err := s.connect(c, kind, n, raw); err != nil {
		return nil, err
	}
	one := func() (time.Duration, error) { return timeBroadcast(c, kind, "broadcast", n, s.broadcast) }
	if _, err := one(); err != nil {
		return nil, err
	}
	r := &BroadcastResult{}
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
	r.Mallocs = float64(m1.Mallocs-m0.Mallocs) / float64(reps)
	r.Bytes = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(reps)
	return r, nil
}

// IdleHook, when set, runs in RunIdle while the sessions are connected and
// idle (the runner writes a heap profile there).
var IdleHook func(kind string)

// IdleResult is the memory one idle session costs, per side.
type IdleResult struct {
	ServerHeap, ServerStack, ClientHeap, ClientStack float64 // bytes per session
	ServerG, ClientG                                 float64 // goroutines per session
}

// RunIdle connects n clients in the child, leaves them idle for hold (so
// heartbeats run), and reports the growth of the live heap, the stacks and
// the goroutines on each side, per session.
func RunIdle(c *Child, kind string, n int, hold time.Duration) (*IdleResult, error) {
	s, err := startServer(kind, 128)
	if err != nil {
		return nil, err
	}
	defer s.close()
	defer func() { _, _ = c.Do("close", 5*time.Minute) }()
	sh0, ss0, sg0 := MemNow()
	ch0, cs0, cg0, err := c.Mem()
	if err != nil {
		return nil, err
	}
	if err := s.connect(c, kind, n, false); err != nil {
		return nil, err
	}
	time.Sleep(hold)
	sh1, ss1, sg1 := MemNow()
	if IdleHook != nil {
		IdleHook(kind)
	}
	ch1, cs1, cg1, err := c.Mem()
	if err != nil {
		return nil, err
	}
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) }
	return &IdleResult{
		ServerHeap: per(sh0, sh1), ServerStack: per(ss0, ss1), ServerG: float64(sg1-sg0) / float64(n),
		ClientHeap: per(ch0, ch1), ClientStack: per(cs0, cs1), ClientG: float64(cg1-cg0) / float64(n),
	}, nil
}

// Median returns the median of ds (sorted in place).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// timeBroadcast arms the child to count n deliveries, runs broadcast and
// returns the time until the child has counted them all.
func timeBroadcast(c *Child, kind, what string, n int, broadcast func() error) (time.Duration, error) {
	if _, err := c.Do("arm "+strconv.Itoa(n), time.Minute); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := broadcast(); err != nil {
		return 0, err
	}
	l, err := c.Next(2 * time.Minute)
	if err != nil {
		return 0, err
	}
	if l != "done" {
		return 0, fmt.Errorf("harness: %s %s: child says %q", kind, what, l)
	}
	return time.Since(t0), nil
}
