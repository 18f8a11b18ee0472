package main

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg"
)

// The contract between players and the room server.

// Join moves the player to a room (leaving the one it is in).
type Join struct {
	netmsg.Returns[Joined]
	Room string
}

// Joined names who is in the room now.
type Joined struct {
	Room    string
	Players []string
}

// Leave takes the player out of its room; it stays connected, in no room.
type Leave struct{}

// Input is what a player does, sent 20 times a second.
type Input struct {
	Seq    int
	DX, DY float32
}

// State is a room's tick: where everyone is. The server sends it to every
// member of the room 20 times a second.
type State struct {
	Room    string
	Tick    int
	SentNs  int64 // server clock when the tick was sent, for the report
	Players []PlayerState
}

// PlayerState is one player in a State.
type PlayerState struct {
	Name      string
	X, Y      float32
	VX, VY    float32
	HP        int
	LastInput int
}

// Event tells a room that someone joined or left.
type Event struct {
	Room string
	Text string
}

// player is what the server keeps per session, in the session itself.
type player struct {
	name string

	mu        sync.Mutex
	room      string
	x, y      float32
	vx, vy    float32
	lastInput int
}

// playerKey holds each session's *player: set when the session opens, read
// by handlers and room ticks, still there in OnSessionClose.
var playerKey = netmsg.NewKey[*player]("player")

// authInfo carries the name and first room from the handshake URL
// (ws://host/?name=ada&room=r0) into the session's context.
type authInfo struct{ name, room string }

type authKey struct{}

// roomServer is the game server: rooms are netmsg groups, each ticked by a
// loop of its own.
type roomServer struct {
	*netmsg.Server
	rooms  []string
	url    string
	served chan struct{}

	inputs atomic.Int64

	mu        sync.Mutex
	ticks     map[string]int      // ticks sent per room
	tickTimes []time.Duration     // how long each tick took the server
	cuts      map[string]cutEvent // players closed as slow consumers, by name
}

type cutEvent struct {
	at  time.Time
	err *netmsg.CloseError
}

// maxPlayerSocket is the kernel's send buffer per player socket. Linux would
// otherwise buffer megabytes for a player who stopped reading; kept small,
// a frozen player fills it within a second or two, then WithWriteTimeout
// cuts it.
const maxPlayerSocket = 32 << 10

func startRoomServer(rooms []string) (*roomServer, error) {
	rs := &roomServer{rooms: rooms, served: make(chan struct{}), ticks: map[string]int{}, cuts: map[string]cutEvent{}}
	rs.Server = netmsg.NewServer(
		// A player whose socket takes nothing for a second, or who has
		// 256 KiB waiting, is cut; the others never wait for it.
		netmsg.WithWriteTimeout(time.Second),
		netmsg.WithMaxQueuedBytes(256<<10),
		netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
			q := r.URL.Query()
			if q.Get("name") == "" {
				return nil, &netmsg.HTTPError{Status: http.StatusBadRequest, Message: "a name is required"}
			}
			return context.WithValue(r.Context(), authKey{}, authInfo{q.Get("name"), q.Get("room")}), nil
		}),
		netmsg.WithOnSessionOpen(rs.opened),
		netmsg.WithOnSessionClose(rs.closed),
	)
	netmsg.AddRequestHandler(rs, rs.join)
	netmsg.AddMessageHandler(rs, rs.leave)
	netmsg.AddMessageHandler(rs, rs.input)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rs.url = "ws://" + ln.Addr().String() + "/"
	go func() {
		defer close(rs.served)
		_ = rs.Serve(smallSendBuffers{ln})
	}()
	return rs, nil
}

// smallSendBuffers sets maxPlayerSocket on every accepted connection.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(maxPlayerSocket)
	}
	return c, err
}

func (rs *roomServer) shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := rs.Shutdown(ctx)
	<-rs.served
	return err
}

// opened makes the session a player and puts it in the room its URL named.
func (rs *roomServer) opened(s *netmsg.Session) {
	info, _ := s.Context().Value(authKey{}).(authInfo)
	p := &player{name: info.name, x: 50, y: 50}
	playerKey.Set(s, p)
	if slices.Contains(rs.rooms, info.room) {
		rs.enter(s, p, info.room)
	}
}

// closed runs after the session has left its room by itself: the player's
// value is still there, so the room can be told who left.
func (rs *roomServer) closed(s *netmsg.Session, ce *netmsg.CloseError) {
	p, ok := playerKey.Get(s)
	if !ok {
		return
	}
	p.mu.Lock()
	room := p.room
	p.mu.Unlock()
	if ce.Reason == netmsg.CloseSlowConsumer {
		rs.mu.Lock()
		rs.cuts[p.name] = cutEvent{at: time.Now(), err: ce}
		rs.mu.Unlock()
	}
	if room != "" {
		_ = rs.Group(room).Broadcast(context.Background(), Event{Room: room, Text: p.name + " left"})
	}
}

func (rs *roomServer) join(ctx context.Context, s *netmsg.Session, req Join) (Joined, error) {
	if !slices.Contains(rs.rooms, req.Room) {
		return Joined{}, netmsg.NewError(netmsg.CodeNotFound, "no room "+req.Room)
	}
	p, _ := playerKey.Get(s)
	rs.exit(s, p)
	rs.enter(s, p, req.Room)
	var names []string
	for m := range rs.Group(req.Room).Sessions() {
		if mp, ok := playerKey.Get(m); ok {
			names = append(names, mp.name)
		}
	}
	slices.Sort(names)
	return Joined{Room: req.Room, Players: names}, nil
}

func (rs *roomServer) leave(ctx context.Context, s *netmsg.Session, _ Leave) {
	p, _ := playerKey.Get(s)
	rs.exit(s, p)
}

func (rs *roomServer) enter(s *netmsg.Session, p *player, room string) {
	p.mu.Lock()
	p.room = room
	p.mu.Unlock()
	g := rs.Group(room)
	g.Add(s)
	_ = g.Broadcast(context.Background(), Event{Room: room, Text: p.name + " joined"}, s)
}

func (rs *roomServer) exit(s *netmsg.Session, p *player) {
	p.mu.Lock()
	room := p.room
	p.room = ""
	p.mu.Unlock()
	if room == "" {
		return
	}
	rs.Group(room).Remove(s)
	_ = rs.Group(room).Broadcast(context.Background(), Event{Room: room, Text: p.name + " left"})
}

func (rs *roomServer) input(ctx context.Context, s *netmsg.Session, in Input) {
	p, _ := playerKey.Get(s)
	p.mu.Lock()
	p.vx, p.vy = in.DX, in.DY
	p.x = float32(math.Mod(float64(p.x+in.DX)+100, 100))
	p.y = float32(math.Mod(float64(p.y+in.DY)+100, 100))
	p.lastInput = in.Seq
	p.mu.Unlock()
	rs.inputs.Add(1)
}

// tickRooms runs every room's loop at 20 Hz until ctx ends.
func (rs *roomServer) tickRooms(ctx context.Context) {
	var wg sync.WaitGroup
	for _, room := range rs.rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs.tickLoop(ctx, room)
		}()
	}
	wg.Wait()
}

func (rs *roomServer) tickLoop(ctx context.Context, room string) {
	g := rs.Group(room)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var players []PlayerState
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		players = players[:0]
		for s := range g.Sessions() {
			if p, ok := playerKey.Get(s); ok {
				p.mu.Lock()
				players = append(players, PlayerState{Name: p.name, X: p.x, Y: p.y, VX: p.vx, VY: p.vy, HP: 100, LastInput: p.lastInput})
				p.mu.Unlock()
			}
		}
		// Broadcast encodes once and queues for every member: a frozen
		// player costs this loop nothing.
		err := g.Broadcast(ctx, State{Room: room, Tick: tick, SentNs: time.Now().UnixNano(), Players: players})
		took := time.Since(start)
		if errors.Is(err, context.Canceled) {
			return
		}
		rs.mu.Lock()
		rs.ticks[room] = tick
		rs.tickTimes = append(rs.tickTimes, took)
		rs.mu.Unlock()
	}
}
