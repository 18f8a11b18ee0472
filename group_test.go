package netmsg_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// groupWait bounds what must happen promptly; wide, for a shared machine
// under -race.
const groupWait = 10 * time.Second

// RoomNote is what the group tests broadcast.
type RoomNote struct {
	Room string
	Seq  int
}

// groupEnv is a server and clients that record what they receive.
type groupEnv struct {
	t   *testing.T
	srv *netmsg.Server
	url string
}

func newGroupEnv(t *testing.T, opts ...netmsg.ServerOption) *groupEnv {
	t.Helper()
	srv := netmsg.NewServer(opts...)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), groupWait)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		hs.Close()
	})
	return &groupEnv{t: t, srv: srv, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// member is a connected client and its session on the server.
type member struct {
	cli  *netmsg.Client
	sess *netmsg.Session // the server's end
	got  chan RoomNote

	overflow atomic.Int64 // messages that did not fit in got
}

func (e *groupEnv) connect(opts ...netmsg.ClientOption) *member {
	e.t.Helper()
	m := &member{got: make(chan RoomNote, 1024)}
	m.cli = netmsg.NewClient(e.url, opts...)
	netmsg.AddMessageHandler(m.cli, func(_ context.Context, _ *netmsg.Session, n RoomNote) {
		select {
		case m.got <- n:
		default:
			m.overflow.Add(1)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	require.NoError(e.t, m.cli.Connect(ctx))
	e.t.Cleanup(func() { _ = m.cli.Close() })
	id := m.cli.Session().ID()
	require.Eventually(e.t, func() bool {
		var ok bool
		m.sess, ok = e.srv.Session(id)
		return ok
	}, groupWait, time.Millisecond, "the server registers the session")
	return m
}

// expect checks that m receives exactly want, in order, and nothing more
// within quiet.
func (m *member) expect(t *testing.T, want []RoomNote, quiet time.Duration) {
	t.Helper()
	require.Zero(t, m.overflow.Load(), "messages lost by the test's own buffer")
	for i, w := range want {
		select {
		case n := <-m.got:
			require.Equal(t, w, n, "message %d", i)
		case <-time.After(groupWait):
			t.Fatalf("timed out waiting for %v (message %d)", w, i)
		}
	}
	select {
	case n := <-m.got:
		t.Fatalf("unexpected %v", n)
	case <-time.After(quiet):
	}
}

func TestGroupMembership(t *testing.T) {
	e := newGroupEnv(t)
	a, b, c := e.connect(), e.connect(), e.connect()
	room := e.srv.Group("lobby")
	assert.Equal(t, "lobby", room.Name())
	assert.Equal(t, 0, room.Len())
	assert.False(t, room.Contains(a.sess))

	room.Add(a.sess)
	room.Add(a.sess) // idempotent
	room.Add(b.sess)
	e.srv.Group("lobby").Add(c.sess) // another handle, the same group
	e.srv.Group("other").Add(a.sess)
	assert.Equal(t, 3, room.Len())
	assert.True(t, room.Contains(b.sess))
	assert.Equal(t, []string{"lobby", "other"}, a.sess.Groups())
	assert.Equal(t, []string{"lobby"}, b.sess.Groups())
	assert.Nil(t, a.cli.Session().Groups(), "a client's session is in no group")

	var ids []string
	for s := range room.Sessions() {
		ids = append(ids, s.ID())
	}
	slices.Sort(ids)
	want := []string{a.sess.ID(), b.sess.ID(), c.sess.ID()}
	slices.Sort(want)
	assert.Equal(t, want, ids)

	// The loop body may change the group it iterates over.
	for s := range room.Sessions() {
		room.Remove(s)
		room.Add(s)
	}
	assert.Equal(t, 3, room.Len())

	room.Remove(b.sess)
	room.Remove(b.sess) // not a member any more: nothing happens
	e.srv.Group("nobody").Remove(a.sess)
	assert.False(t, room.Contains(b.sess))
	assert.Equal(t, 2, room.Len())
	assert.Nil(t, b.sess.Groups())
	assert.Equal(t, []string{"other"}, slices.DeleteFunc(a.sess.Groups(), func(n string) bool { return n == "lobby" }))

	groups, memberships, _ := netmsg.GroupCountsForTest(e.srv)
	assert.Equal(t, 2, groups)
	assert.Equal(t, 3, memberships)

	// Nil sessions are never members; adding one is a bug.
	assert.False(t, room.Contains(nil))
	room.Remove(nil)
	assert.Panics(t, func() { room.Add(nil) })
	assert.Panics(t, func() { room.Add(a.cli.Session()) }, "a client's session cannot join a server's group")

	// A session leaves its groups when it closes.
	require.NoError(t, a.cli.Close())
	require.Eventually(t, func() bool { return room.Len() == 1 && e.srv.Group("other").Len() == 0 }, groupWait, time.Millisecond)
	assert.False(t, room.Contains(a.sess))
	assert.Nil(t, a.sess.Groups())
	room.Add(a.sess) // closed: not added
	assert.False(t, room.Contains(a.sess))

	room.Remove(c.sess)
	groups, memberships, released := netmsg.GroupCountsForTest(e.srv)
	assert.Equal(t, 0, groups)
	assert.Equal(t, 0, memberships)
	assert.True(t, released, "no group has members: the group table is released")
}

func TestGroupBroadcastExcept(t *testing.T) {
	e := newGroupEnv(t)
	ms := []*member{e.connect(), e.connect(), e.connect(), e.connect()}
	outside := e.connect()
	room := e.srv.Group("r")
	for _, m := range ms {
		room.Add(m.sess)
	}
	ctx := context.Background()
	require.NoError(t, room.Broadcast(ctx, RoomNote{Room: "r", Seq: 1}))
	require.NoError(t, room.Broadcast(ctx, RoomNote{Room: "r", Seq: 2}, ms[0].sess))
	require.NoError(t, room.Broadcast(ctx, RoomNote{Room: "r", Seq: 3}, ms[0].sess, ms[1].sess, outside.sess))
	require.NoError(t, e.srv.Broadcast(ctx, RoomNote{Room: "*", Seq: 4}, ms[3].sess))
	require.NoError(t, e.srv.Group("empty").Broadcast(ctx, RoomNote{Room: "empty", Seq: 5}))

	all := RoomNote{"*", 4}
	ms[0].expect(t, []RoomNote{{"r", 1}, all}, 0)
	ms[1].expect(t, []RoomNote{{"r", 1}, {"r", 2}, all}, 0)
	ms[2].expect(t, []RoomNote{{"r", 1}, {"r", 2}, {"r", 3}, all}, 0)
	ms[3].expect(t, []RoomNote{{"r", 1}, {"r", 2}, {"r", 3}}, 0)
	outside.expect(t, []RoomNote{all}, 200*time.Millisecond)
	for _, m := range ms[:3] {
		m.expect(t, nil, 0)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, room.Broadcast(cctx, RoomNote{}), context.Canceled)
	assert.ErrorIs(t, e.srv.Broadcast(cctx, RoomNote{}), context.Canceled)
}

// A group with no members holds no memory: ten thousand groups joined and
// left leave the heap where it was.
func TestEmptyGroupsHoldNoMemory(t *testing.T) {
	e := newGroupEnv(t)
	m := e.connect()
	const n = 10000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("room-%05d", i)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for _, name := range names {
		e.srv.Group(name).Add(m.sess)
	}
	full := heap()
	require.Len(t, m.sess.Groups(), n)
	for _, name := range names {
		e.srv.Group(name).Remove(m.sess)
	}
	after := heap()
	t.Logf("heap: %d B before, %d B with %d groups of one (%.0f B per group), %d B after they emptied",
		before, full, n, float64(int64(full)-int64(before))/n, after)
	groups, memberships, released := netmsg.GroupCountsForTest(e.srv)
	assert.Zero(t, groups)
	assert.Zero(t, memberships)
	assert.True(t, released)
	assert.Nil(t, m.sess.Groups())
	// What the groups cost is gone (a margin of 64 KiB for the runtime's
	// own noise, against ~2 MB they held).
	assert.Less(t, int64(after)-int64(before), int64(64<<10), "heap growth after every group emptied")
	assert.Greater(t, int64(full)-int64(before), int64(n*100), "the groups did cost memory while they had members")
}

var (
	playerName = netmsg.NewKey[string]("player")
	playerHP   = netmsg.NewKey[int]("hp")
)

func TestKeyValues(t *testing.T) {
	closed := make(chan string, 1)
	e := newGroupEnv(t, netmsg.WithOnSessionClose(func(s *netmsg.Session, _ *netmsg.CloseError) {
		name, _ := playerName.Get(s)
		closed <- name
	}))
	a, b := e.connect(), e.connect()

	_, ok := playerName.Get(a.sess)
	assert.False(t, ok)
	playerName.Set(a.sess, "ada")
	playerHP.Set(a.sess, 100)
	playerName.Set(b.sess, "bob")
	name, ok := playerName.Get(a.sess)
	assert.True(t, ok)
	assert.Equal(t, "ada", name)
	playerHP.Set(a.sess, 90)
	hp, _ := playerHP.Get(a.sess)
	assert.Equal(t, 90, hp)
	_, ok = playerHP.Get(b.sess)
	assert.False(t, ok, "values are per session")
	other := netmsg.NewKey[string]("player")
	_, ok = other.Get(a.sess)
	assert.False(t, ok, "two keys with one name are two keys")
	assert.Equal(t, "netmsg.Key[string](player)", playerName.String())

	playerHP.Delete(a.sess)
	_, ok = playerHP.Get(a.sess)
	assert.False(t, ok)
	playerHP.Delete(a.sess)
	assert.Equal(t, 1, netmsg.SessionValuesForTest(a.sess))

	// Client sessions have values too.
	cs := a.cli.Session()
	playerName.Set(cs, "me")
	v, _ := playerName.Get(cs)
	assert.Equal(t, "me", v)

	// OnSessionClose still sees the values; after it they are gone.
	require.NoError(t, a.cli.Close())
	select {
	case got := <-closed:
		assert.Equal(t, "ada", got)
	case <-time.After(groupWait):
		t.Fatal("no OnSessionClose")
	}
	require.Eventually(t, func() bool { return netmsg.SessionValuesForTest(a.sess) == 0 }, groupWait, time.Millisecond)
	_, ok = playerName.Get(a.sess)
	assert.False(t, ok)
	playerName.Set(a.sess, "late")
	_, ok = playerName.Get(a.sess)
	assert.False(t, ok, "Set on a closed session keeps nothing")
	require.Eventually(t, func() bool { return netmsg.SessionValuesForTest(cs) == 0 }, groupWait, time.Millisecond,
		"the client's closed session drops its values too")
	_, ok = playerName.Get(nil)
	assert.False(t, ok)
	assert.Panics(t, func() { playerName.Set(nil, "x") })
}

// Keys, groups and broadcasts used from many goroutines at once while
// sessions come and go; run with -race.
func TestGroupsConcurrentUse(t *testing.T) {
	e := newGroupEnv(t)
	const n = 12
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = e.connect()
	}
	score := netmsg.NewKey[int]("score")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := ms[(w+i)%n].sess
				g := e.srv.Group(fmt.Sprintf("g%d", i%4))
				switch i % 7 {
				case 0:
					g.Add(s)
				case 1:
					g.Remove(s)
				case 2:
					_ = g.Contains(s)
					_ = g.Len()
					_ = s.Groups()
				case 3:
					for range g.Sessions() {
					}
				case 4:
					_ = g.Broadcast(context.Background(), RoomNote{Room: g.Name(), Seq: i})
				case 5:
					v, _ := score.Get(s)
					score.Set(s, v+1)
				case 6:
					if i%70 == 6 {
						score.Delete(s)
					}
				}
			}
		}()
	}
	// Sessions close meanwhile.
	for i := range n / 2 {
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, ms[i].cli.Close())
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	for _, m := range ms[:n/2] {
		require.Eventually(t, func() bool {
			_, open := e.srv.Session(m.sess.ID())
			return !open
		}, groupWait, time.Millisecond)
		assert.Nil(t, m.sess.Groups())
	}
	// What is left is consistent (counts panics otherwise) and only open
	// sessions are members. Whether the random operations left any member
	// depends on timing, so every open session joins one more group: the
	// check below is never about an empty table.
	for s := range e.srv.Sessions() {
		e.srv.Group("after").Add(s)
	}
	_, memberships, _ := netmsg.GroupCountsForTest(e.srv)
	total := 0
	for s := range e.srv.Sessions() {
		total += len(s.Groups())
	}
	assert.Equal(t, total, memberships)
	assert.Positive(t, memberships)
}

// JoinRoom asks the server to put the caller in a room.
type JoinRoom struct {
	netmsg.Returns[Joined]
	Room string
}

type Joined struct{ Members int }

// LeaveRoom asks the server to take the caller out of a room.
type LeaveRoom struct{ Room string }

// Sessions join and leave rooms from handlers and close in every way, many
// at once, while the rooms are broadcast to: when all are gone nothing is
// left behind (no group, no membership, no value, no goroutine: goleak runs
// after the package's tests).
func TestGroupChurnLeavesNothing(t *testing.T) {
	const (
		cycles  = 1000
		workers = 8
		rooms   = 10
	)
	nick := netmsg.NewKey[string]("nick")
	var mu sync.Mutex
	var seen []*netmsg.Session
	e := newGroupEnv(t, netmsg.WithHeartbeat(0, 0), netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
		nick.Set(s, s.ID())
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}))
	netmsg.AddRequestHandler(e.srv, func(ctx context.Context, s *netmsg.Session, req JoinRoom) (Joined, error) {
		g := e.srv.Group(req.Room)
		g.Add(s)
		e.srv.Group("everyone").Add(s)
		return Joined{Members: g.Len()}, nil
	})
	netmsg.AddMessageHandler(e.srv, func(ctx context.Context, s *netmsg.Session, m LeaveRoom) {
		e.srv.Group(m.Room).Remove(s)
	})

	stop := make(chan struct{})
	var bwg sync.WaitGroup
	bwg.Add(1)
	go func() { // the rooms' ticks
		defer bwg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			_ = e.srv.Group(fmt.Sprintf("room-%d", i%rooms)).Broadcast(context.Background(), RoomNote{Seq: i})
			if i%10 == 0 {
				_ = e.srv.Broadcast(context.Background(), RoomNote{Room: "*", Seq: i})
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, cycles)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cycles; i += workers {
				errs <- churnCycle(e, i, rooms)
			}
		}()
	}
	wg.Wait()
	close(stop)
	bwg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return e.srv.SessionCount() == 0 }, groupWait, time.Millisecond)
	groups, memberships, released := netmsg.GroupCountsForTest(e.srv)
	assert.Zero(t, groups, "groups left")
	assert.Zero(t, memberships, "memberships left")
	assert.True(t, released, "the group table is released")
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, seen, cycles)
	require.Eventually(t, func() bool {
		for _, s := range seen {
			if netmsg.SessionValuesForTest(s) != 0 {
				return false
			}
		}
		return true
	}, groupWait, time.Millisecond, "values of closed sessions")
	for _, s := range seen {
		assert.Nil(t, s.Groups())
	}
	t.Logf("%d sessions joined and left %d rooms; stats after: %+v", cycles, rooms, e.srv.Stats())
}

// churnCycle connects a client, joins two rooms through a handler, leaves
// one, and ends the session one of four ways.
func churnCycle(e *groupEnv, i, rooms int) error {
	cli := netmsg.NewClient(e.url, netmsg.WithHeartbeat(0, 0))
	defer cli.Close()
	netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, RoomNote) {})
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	if err := cli.Connect(ctx); err != nil {
		return err
	}
	a, b := fmt.Sprintf("room-%d", i%rooms), fmt.Sprintf("room-%d", (i+1)%rooms)
	for _, room := range []string{a, b} {
		if _, err := netmsg.SendRequest(ctx, cli, JoinRoom{Room: room}); err != nil {
			return fmt.Errorf("cycle %d: join %s: %w", i, room, err)
		}
	}
	if i%2 == 0 {
		if err := cli.Send(ctx, LeaveRoom{Room: a}); err != nil {
			return err
		}
	}
	switch i % 4 {
	case 0, 1: // the client closes
		return cli.Close()
	case 2: // the server closes
		s, ok := e.srv.Session(cli.Session().ID())
		if !ok {
			return fmt.Errorf("cycle %d: no server session", i)
		}
		return s.Close("bye")
	default: // the server kicks while the client is still sending
		s, ok := e.srv.Session(cli.Session().ID())
		if !ok {
			return fmt.Errorf("cycle %d: no server session", i)
		}
		_ = cli.Send(ctx, LeaveRoom{Room: b})
		return s.Kick("out")
	}
}

// A group broadcast costs at most one allocation per delivered message (the
// goal; in the steady state it is close to none): the frame is encoded once
// and shared, the queues reuse their slices, and no goroutine is started per
// member. The members are raw WebSocket peers that read into a fixed buffer,
// so the process allocates for the server's side alone; heartbeats are off,
// so nothing else runs.
func TestGroupBroadcastAllocations(t *testing.T) {
	const (
		n = 200
		k = 50 // broadcasts back to back, once to warm up, once measured
	)
	opened := make(chan *netmsg.Session, n)
	srv := nettest.StartServer(t, netmsg.WithHeartbeat(0, 0),
		netmsg.WithOnSessionOpen(func(s *netmsg.Session) { opened <- s }))
	counts := make([]atomic.Int64, n)
	var readers sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
		readers.Wait()
	})
	for i := range n {
		p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
		conns = append(conns, p.Conn)
		readers.Add(1)
		go func() {
			defer readers.Done()
			var buf [4096]byte
			br := p.BufReader()
			for {
				m, err := br.Read(buf[:])
				counts[i].Add(int64(m))
				if err != nil {
					return
				}
			}
		}()
	}
	room := srv.Group("room")
	for range n {
		select {
		case s := <-opened:
			room.Add(s)
		case <-time.After(groupWait):
			t.Fatal("sessions did not open")
		}
	}
	msg := RoomNote{Room: strings.Repeat("r", 100), Seq: 1} // 128 B or so on the wire
	ctx := context.Background()
	waitBytes := func(want func(int64) bool) {
		deadline := time.Now().Add(groupWait)
		for i := range counts {
			for !want(counts[i].Load()) {
				if time.Now().After(deadline) {
					t.Fatalf("peer %d has %d bytes", i, counts[i].Load())
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	require.NoError(t, room.Broadcast(ctx, msg))
	waitBytes(func(b int64) bool { return b > 0 })
	time.Sleep(50 * time.Millisecond)
	per := counts[0].Load()
	// The first burst sizes the queues, batches and socket vectors that a
	// burst of k needs; the second is measured.
	const warm = 1 + k
	for range k {
		require.NoError(t, room.Broadcast(ctx, msg))
	}
	waitBytes(func(b int64) bool { return b >= warm*per })

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for range k {
		require.NoError(t, room.Broadcast(ctx, msg))
	}
	waitBytes(func(b int64) bool { return b >= (warm+k)*per })
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	for i := range counts {
		require.Equal(t, (warm+k)*per, counts[i].Load(), "peer %d: bytes of %d messages of %d bytes", i, warm+k, per)
	}
	allocs := float64(m1.Mallocs-m0.Mallocs) / (k * n)
	bytes := float64(m1.TotalAlloc-m0.TotalAlloc) / (k * n)
	t.Logf("%d broadcasts to %d members (%d B frames): %.3f allocations and %.1f B per delivered message, %v in all (%.0f delivered/s)",
		k, n, per, allocs, bytes, took, float64(k*n)/took.Seconds())
	assert.LessOrEqual(t, allocs, 1.0, "allocations per delivered message")
}
