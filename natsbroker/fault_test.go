package natsbroker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Join is what a device says first on every connection: the application
// keeps a directory of where each device is, as a real one would in its
// database.
type Join struct {
	netmsg.Returns[Joined]
	Name string
}

type Joined struct{ Node string }

// directory maps device names to their current session ids, across nodes.
type directory struct {
	mu  sync.Mutex
	ids map[string]string
}

func (d *directory) get(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ids[name]
}

func (d *directory) serve(n *node) {
	netmsg.AddRequestHandler(n.Server, func(_ context.Context, s *netmsg.Session, j Join) (Joined, error) {
		d.mu.Lock()
		d.ids[j.Name] = s.ID()
		d.mu.Unlock()
		n.Group("fleet").Add(s)
		return Joined{Node: n.URL}, nil
	})
}

// A node shut down: its devices fail over to the next node in their
// WithURLs list, join again in OnConnect (the directory and the "fleet"
// group), and are reached there from every node, one by one and by the
// group's broadcast; their old session ids are answered with ErrNoSession
// at once.
func TestNodeShutdownFailover(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 3, netmsg.WithRequestTimeout(long))
	dir := &directory{ids: make(map[string]string)}
	for _, n := range nodes {
		dir.serve(n)
	}
	urls := nodeURLs(nodes)
	names := []string{"a0", "b0", "a1", "b1", "a2", "b2"}
	devices := make(map[string]*device)
	for i, name := range names {
		home := i / 2
		// Each device starts on its home node and lists the others after it.
		var others []string
		for k := 1; k < len(urls); k++ {
			others = append(others, urls[(home+k)%len(urls)])
		}
		d := newDevice(t, urls[home], netmsg.WithURLs(others...), netmsg.WithReconnect(fastReconnect()),
			netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
				_, err := netmsg.SendRequest(ctx, s, Join{Name: name})
				return err
			}))
		require.NoError(t, d.Connect(context.Background()))
		devices[name] = d
	}
	before := make(map[string]string)
	for _, name := range names {
		before[name] = dir.get(name)
		require.NoError(t, nodes[2].SendTo(context.Background(), before[name], Note{Text: "hello " + name}))
		assert.Equal(t, "hello "+name, devices[name].note(t).Text)
	}

	start := time.Now()
	require.NoError(t, nodes[0].Shutdown())
	for _, name := range []string{"a0", "b0"} {
		eventually(t, name+" joins again", func() bool { return dir.get(name) != before[name] })
		assert.Equal(t, urls[1], devices[name].URL(), "%s fails over to the next URL in its list", name)
	}
	t.Logf("devices of the node shut down joined node 1 %v after the shutdown began", time.Since(start))

	for _, name := range names {
		id := dir.get(name)
		for _, from := range nodes[1:] {
			require.NoError(t, from.SendTo(context.Background(), id, Note{Text: "again " + name}), name)
			assert.Equal(t, "again "+name, devices[name].note(t).Text)
			pong, err := netmsg.SendRequestTo(context.Background(), from.Server, id, Ping{Text: name})
			require.NoError(t, err)
			assert.Equal(t, id, pong.Session)
		}
	}
	require.NoError(t, nodes[2].Group("fleet").Broadcast(context.Background(), Note{Text: "fleet"}))
	for _, name := range names {
		assert.Equal(t, "fleet", devices[name].note(t).Text, name)
	}
	for _, name := range []string{"a0", "b0"} {
		t0 := time.Now()
		err := nodes[1].SendTo(context.Background(), before[name], Note{})
		assert.ErrorIs(t, err, netmsg.ErrNoSession)
		assert.Less(t, time.Since(t0), wait)
	}
}

// NATS goes away under steady cross-node traffic and comes back on the
// same port: local sessions are served throughout, cross-node calls fail at
// once with ErrBrokerUnavailable (none hangs, including one waiting for its
// answer when the connection went), and they work again once nats.go has
// reconnected.
func TestNATSRestartMidTraffic(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2, netmsg.WithRequestTimeout(long))
	local := connectDevice(t, nodes[0])
	remote := connectDevice(t, nodes[1])
	staller := connectDevice(t, nodes[1]) // its handler is busy: a device handles one request at a time
	localID, remoteID := local.ID(t), remote.ID(t)

	// A call waiting for its answer when the connection goes.
	stalled := make(chan error, 1)
	go func() {
		_, err := netmsg.SendRequestTo(context.Background(), nodes[0].Server, staller.ID(t), Stall{})
		stalled <- err
	}()

	var (
		okRequests, okSends atomic.Int64
		unavailable, other  atomic.Int64
		noSession           atomic.Int64
		slowest             atomic.Int64
		lastOther           atomic.Value
		stop                = make(chan struct{})
		wg                  sync.WaitGroup
	)
	traffic := func(name string, ok *atomic.Int64, f func() error) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			err := f()
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
				if d > int64(time.Second) {
					t.Logf("%s: slow call %v: %v (started %v)", name, time.Duration(d), err, t0.Format("15:04:05.000"))
				}
			}
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, netmsg.ErrBrokerUnavailable):
				unavailable.Add(1)
				time.Sleep(5 * time.Millisecond)
			case errors.Is(err, netmsg.ErrNoSession):
				noSession.Add(1)
			default:
				other.Add(1)
				lastOther.Store(err.Error())
			}
		}
	}
	var localOK, localFailed atomic.Int64
	wg.Add(3)
	go traffic("request", &okRequests, func() error {
		_, err := netmsg.SendRequestTo(context.Background(), nodes[0].Server, remoteID, Ping{Text: "cross"})
		return err
	})
	go traffic("send", &okSends, func() error { return nodes[1].SendTo(context.Background(), localID, Note{Text: "cross"}) })
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := netmsg.SendRequestTo(context.Background(), nodes[0].Server, localID, Ping{}); err != nil {
				localFailed.Add(1)
			} else {
				localOK.Add(1)
			}
		}
	}()
	go func() { // drain the notes
		for {
			select {
			case <-local.notes:
			case <-stop:
				return
			}
		}
	}()

	eventually(t, "cross-node traffic flows", func() bool { return okRequests.Load() > 20 && okSends.Load() > 20 })
	time.Sleep(100 * time.Millisecond) // the stalled call has reached its handler
	t.Logf("stopping NATS at %v", time.Now().Format("15:04:05.000"))
	ns.stop()
	select {
	case err := <-stalled:
		assert.ErrorIs(t, err, netmsg.ErrBrokerUnavailable)
		assert.Equal(t, netmsg.CodeUnavailable, netmsg.CodeOf(err))
		t.Logf("the call waiting when NATS went: %v", err)
	case <-time.After(wait):
		t.Fatal("a call waiting for its answer hangs after NATS went away")
	}
	eventually(t, "cross-node calls fail with ErrBrokerUnavailable", func() bool { return unavailable.Load() > 20 })
	reqDown, sendDown, localDown := okRequests.Load(), okSends.Load(), localOK.Load()
	eventually(t, "local sessions are served while NATS is down", func() bool { return localOK.Load() > localDown+20 })
	time.Sleep(500 * time.Millisecond) // down for a while, under traffic

	t.Logf("starting NATS at %v", time.Now().Format("15:04:05.000"))
	ns.start()
	eventually(t, "cross-node calls work again", func() bool {
		return okRequests.Load() > reqDown+20 && okSends.Load() > sendDown+20
	})
	close(stop)
	wg.Wait()
	t.Logf("cross-node ok %d requests and %d sends, unavailable %d, other %d; local ok %d failed %d; slowest call %v",
		okRequests.Load(), okSends.Load(), unavailable.Load(), other.Load(), localOK.Load(), localFailed.Load(), time.Duration(slowest.Load()))
	assert.Zero(t, localFailed.Load(), "local calls failed")
	assert.Less(t, time.Duration(slowest.Load()), wait, "a cross-node call took long: it waited instead of failing")
	// While the other node reconnects its sessions are not answered for,
	// but it said hello lately: that is ErrBrokerUnavailable, never
	// ErrNoSession.
	assert.Zero(t, noSession.Load(), "ErrNoSession for a session whose node was reconnecting")
	if v := lastOther.Load(); v != nil {
		t.Errorf("unexpected error: %v", v)
	}
	assert.Zero(t, other.Load())
}

// A node cut off from NATS without shutting down (a crash, a partition):
// its sessions are unavailable at first (it may be reconnecting), then,
// once it has been silent for a few seconds, gone; each call is answered at
// once. A call waiting for the node's answer when it went fails when it
// counts as gone, not at its minute-long timeout.
func TestNodeCutOff(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2, netmsg.WithRequestTimeout(long))
	d := connectDevice(t, nodes[1])
	id := d.ID(t)
	require.NoError(t, nodes[0].SendTo(context.Background(), id, Note{}))
	waiting := make(chan error, 1)
	go func() {
		_, err := netmsg.SendRequestTo(context.Background(), nodes[0].Server, id, Stall{})
		waiting <- err
	}()
	time.Sleep(200 * time.Millisecond) // the call reaches the handler
	start := time.Now()
	nodes[1].NC.Close()
	time.Sleep(200 * time.Millisecond) // NATS notices the connection is gone

	var sawUnavailable bool
	eventually(t, "the session counts as gone", func() bool {
		t0 := time.Now()
		err := nodes[0].SendTo(context.Background(), id, Note{})
		require.Less(t, time.Since(t0), wait)
		if errors.Is(err, netmsg.ErrBrokerUnavailable) {
			sawUnavailable = true
		}
		return errors.Is(err, netmsg.ErrNoSession)
	})
	t.Logf("ErrNoSession %v after the node was cut off", time.Since(start))
	assert.True(t, sawUnavailable, "ErrBrokerUnavailable first, while the node may be reconnecting")
	select {
	case err := <-waiting:
		assert.ErrorIs(t, err, netmsg.ErrNoSession)
		t.Logf("the waiting call: %v", err)
	case <-time.After(wait):
		t.Fatal("the call waiting for the node that went still waits")
	}
}

// While NATS is down, joining a group does not wait for it; the node
// subscribes when it reconnects, and the member then gets the group's
// broadcasts from the other nodes.
func TestGroupJoinWhileNATSDown(t *testing.T) {
	ns := startNATS(t)
	nodes := startNodes(t, ns, 2)
	for _, n := range nodes {
		serveRooms(n)
	}
	d := connectDevice(t, nodes[1])
	ns.stop()
	eventually(t, "the node sees NATS gone", func() bool { return !nodes[1].NC.IsConnected() })
	start := time.Now()
	_, err := netmsg.SendRequest(context.Background(), d.Client, JoinRoom{Room: "late"})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), time.Second, "Group.Add waited for NATS")
	err = nodes[0].Group("late").Broadcast(context.Background(), Note{Text: "down"})
	assert.ErrorIs(t, err, netmsg.ErrBrokerUnavailable)

	ns.start()
	eventually(t, "both nodes reconnect", func() bool { return nodes[0].NC.IsConnected() && nodes[1].NC.IsConnected() })
	eventually(t, "the member gets broadcasts from the other node", func() bool {
		require.NoError(t, nodes[0].Group("late").Broadcast(context.Background(), Note{Text: "up"}))
		select {
		case n := <-d.notes:
			assert.Equal(t, "up", n.Text)
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}
