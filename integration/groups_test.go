package integration_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/nettest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// grTick is what the group tests broadcast: the room, its sequence number
// and when it was sent.
type grTick struct {
	Room   int
	Seq    int
	SentNs int64
	Pad    string
}

// grPlayer is a client that records every tick it receives, per room.
type grPlayer struct {
	cli  *netmsg.Client
	sess *netmsg.Session // the server's end

	mu    sync.Mutex
	seqs  map[int][]int
	worst time.Duration // longest time from send to handler
	n     int
}

func grConnect(t *testing.T, srv *hdServer) *grPlayer {
	t.Helper()
	p := &grPlayer{seqs: map[int][]int{}}
	p.cli = netmsg.NewClient(srv.URL, netmsg.WithHeartbeat(0, 0))
	netmsg.AddMessageHandler(p.cli, func(_ context.Context, _ *netmsg.Session, m grTick) {
		d := time.Duration(time.Now().UnixNano() - m.SentNs)
		p.mu.Lock()
		p.seqs[m.Room] = append(p.seqs[m.Room], m.Seq)
		p.worst = max(p.worst, d)
		p.n++
		p.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
	defer cancel()
	require.NoError(t, p.cli.Connect(ctx))
	t.Cleanup(func() { _ = p.cli.Close() })
	p.sess = srv.NextOpen(t)
	require.Equal(t, p.cli.Session().ID(), p.sess.ID())
	return p
}

func (p *grPlayer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func grSeq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// Twenty rooms broadcast at once, each from its own goroutine: every player
// gets every tick of each of its rooms, in order, and nothing of the others.
// Some players are in two rooms; one room skips one of its members.
func TestGroupFanOutTwentyRooms(t *testing.T) {
	t.Parallel()
	const (
		rooms   = 20
		perRoom = 5
		ticks   = 40
	)
	srv := hdStartServer(t, netmsg.WithHeartbeat(0, 0))
	players := make([][]*grPlayer, rooms)
	for r := range rooms {
		g := srv.Group(fmt.Sprintf("room-%d", r))
		for range perRoom {
			p := grConnect(t, srv)
			g.Add(p.sess)
			players[r] = append(players[r], p)
		}
	}
	// The first player of every room is also in the next room.
	for r := range rooms {
		next := (r + 1) % rooms
		srv.Group(fmt.Sprintf("room-%d", next)).Add(players[r][0].sess)
	}
	for r := range rooms {
		require.Equal(t, perRoom+1, srv.Group(fmt.Sprintf("room-%d", r)).Len())
	}
	// Room 7 skips its last member in every tick.
	skipped := players[7][perRoom-1]

	var wg sync.WaitGroup
	for r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := srv.Group(fmt.Sprintf("room-%d", r))
			var except []*netmsg.Session
			if r == 7 {
				except = append(except, skipped.sess)
			}
			for seq := range ticks {
				assert.NoError(t, g.Broadcast(context.Background(), grTick{Room: r, Seq: seq, SentNs: time.Now().UnixNano()}, except...))
			}
		}()
	}
	wg.Wait()

	// Every player gets its room's ticks, and the first of each room the
	// next room's too; the skipped one gets none.
	want := func(i int, p *grPlayer) int {
		switch {
		case p == skipped:
			return 0
		case i == 0:
			return 2 * ticks
		}
		return ticks
	}
	for r := range rooms {
		for i, p := range players[r] {
			require.Eventually(t, func() bool { return p.count() >= want(i, p) }, nettest.Wait, time.Millisecond,
				"room %d player %d got %d of %d", r, i, p.count(), want(i, p))
		}
	}
	time.Sleep(100 * time.Millisecond) // room for extra deliveries to show
	worst := time.Duration(0)
	for r := range rooms {
		for i, p := range players[r] {
			p.mu.Lock()
			wantRooms := map[int][]int{r: grSeq(ticks)}
			if i == 0 {
				wantRooms[(r+1)%rooms] = grSeq(ticks)
			}
			if p == skipped {
				wantRooms = map[int][]int{}
			}
			assert.Equal(t, wantRooms, p.seqs, "room %d player %d", r, i)
			worst = max(worst, p.worst)
			p.mu.Unlock()
		}
	}
	t.Logf("%d rooms × %d ticks to %d players: worst time from Broadcast to handler %v", rooms, ticks, rooms*perRoom, worst)
}

// A member that stops reading is cut as a slow consumer, and while its
// socket is stuck the other members of its room still get every tick on
// time: no writer waits on it for them. The stuck peer is the only one of
// its room's writers' sessions that blocks: with ten members the room is
// served by one writer, so this also proves that a blocked writer is
// replaced. It runs alone (not parallel): it measures latency.
func TestGroupSlowMemberIsolated(t *testing.T) {
	const (
		wt       = 5 * time.Second // the write timeout that finally cuts the stuck member
		interval = 5 * time.Millisecond
		healthy  = 9
	)
	srv := hdStartServerOn(t, nettest.Listen{Tune: func(c *net.TCPConn) { _ = c.SetWriteBuffer(32 << 10) }},
		netmsg.WithHeartbeat(0, 0), netmsg.WithWriteTimeout(wt), netmsg.WithMaxQueuedBytes(64<<20))
	room := srv.Group("arena")
	players := make([]*grPlayer, healthy)
	for i := range players {
		players[i] = grConnect(t, srv)
	}
	stuck := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
	require.NoError(t, stuck.Conn.(*net.TCPConn).SetReadBuffer(4096))
	stuckSS := srv.NextOpen(t)
	// The stuck peer joins first, so its session comes before the others in
	// the room's order and blocks the writer before they are flushed.
	room.Add(stuckSS)
	for _, p := range players {
		room.Add(p.sess)
	}

	pad := strings.Repeat("p", 2048)
	start := time.Now()
	sent := 0
	var cutAfter time.Duration
	var longestCall time.Duration
	for time.Since(start) < 3*wt {
		bs := time.Now()
		require.NoError(t, room.Broadcast(context.Background(), grTick{Room: 1, Seq: sent, SentNs: bs.UnixNano(), Pad: pad}))
		longestCall = max(longestCall, time.Since(bs))
		sent++
		if cutAfter == 0 && stuckSS.Err() != nil {
			cutAfter = time.Since(start)
		}
		if cutAfter > 0 && time.Since(start) > cutAfter+200*time.Millisecond {
			break
		}
		time.Sleep(interval)
	}
	require.NotZero(t, cutAfter, "the stuck member was not cut within %v", 3*wt)
	ce := srv.CloseOf(t, stuckSS).Err
	assert.Equal(t, netmsg.CloseSlowConsumer.String(), ce.Reason.String(), "the stuck member's close: %v", ce)
	assert.GreaterOrEqual(t, srv.Stats().SlowConsumers, uint64(1))
	assert.False(t, room.Contains(stuckSS), "a closed member leaves the room")

	for i, p := range players {
		require.Eventually(t, func() bool { return p.count() == sent }, nettest.Wait, time.Millisecond,
			"player %d got %d of %d", i, p.count(), sent)
	}
	worst := time.Duration(0)
	for i, p := range players {
		p.mu.Lock()
		assert.Equal(t, grSeq(sent), p.seqs[1], "player %d", i)
		worst = max(worst, p.worst)
		p.mu.Unlock()
	}
	t.Logf("stuck member cut after %v (%v); %d ticks of 2 KiB every %v; worst tick latency of the others %v; longest Broadcast call %v",
		cutAfter, ce, sent, interval, worst, longestCall)
	// The stuck member blocked a writer for about the write timeout; the
	// others must not have waited for it (a margin of 5x over what a loaded
	// machine under -race shows, still well below the write timeout).
	assert.Less(t, worst, wt/2, "a healthy member waited for the stuck one")
	assert.Less(t, longestCall, wt/2, "Broadcast waited for the stuck member")
	assert.Greater(t, cutAfter, wt/2, "the stuck member should have held its writer until the write timeout")
}
