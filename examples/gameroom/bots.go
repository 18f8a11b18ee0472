package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/netmsg/netmsg"
)

// bot is a player: a netmsg client that sends its inputs at 20 Hz and
// checks the room's ticks it receives.
type bot struct {
	name   string
	client *netmsg.Client

	mu      sync.Mutex
	room    string         // the room whose ticks it expects
	last    map[string]int // last tick seen per room
	ticks   int            // ticks received
	missed  int            // ticks skipped within one stay in a room
	worst   time.Duration  // longest time from the server's send to the handler
	stays   int            // rooms it has been in
	inputs  int
	ownSeen int // its own input seq as last echoed in a State
}

func newBot(name, base, room string) *bot {
	b := &bot{name: name, room: room, last: map[string]int{}, stays: 1}
	b.client = netmsg.NewClient(playURL(base, name, room))
	netmsg.AddMessageHandler(b.client, b.onState)
	netmsg.AddMessageHandler(b.client, func(context.Context, *netmsg.Session, Event) {})
	return b
}

func playURL(base, name, room string) string {
	return base + "?" + url.Values{"name": {name}, "room": {room}}.Encode()
}

func (b *bot) onState(_ context.Context, _ *netmsg.Session, st State) {
	lat := time.Duration(time.Now().UnixNano() - st.SentNs)
	b.mu.Lock()
	defer b.mu.Unlock()
	if st.Room != b.room {
		return // a tick of the room it just left, still on the wire
	}
	if prev, ok := b.last[st.Room]; ok && st.Tick > prev+1 {
		b.missed += st.Tick - prev - 1
	}
	b.last[st.Room] = st.Tick
	b.ticks++
	b.worst = max(b.worst, lat)
	for _, p := range st.Players {
		if p.Name == b.name {
			b.ownSeen = p.LastInput
		}
	}
}

// play sends inputs at 20 Hz until ctx ends.
func (b *bot) play(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in := Input{Seq: seq, DX: rand.Float32()*2 - 1, DY: rand.Float32()*2 - 1}
		if b.client.Send(ctx, in) == nil {
			b.mu.Lock()
			b.inputs++
			b.mu.Unlock()
		}
	}
}

// hop moves the bot to another room every interval: Leave, then Join.
func (b *bot) hop(ctx context.Context, rooms []string, interval time.Duration) error {
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		if err := b.client.Send(ctx, Leave{}); err != nil {
			return nil // shutting down
		}
		next := rooms[i%len(rooms)]
		b.mu.Lock()
		b.room = next // ticks of the old room no longer count
		delete(b.last, next)
		b.stays++
		b.mu.Unlock()
		if _, err := netmsg.SendRequest(ctx, b.client, Join{Room: next}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: join %s: %w", b.name, next, err)
		}
	}
}

type botReport struct {
	ticks, missed, stays, inputs, ownSeen int
	worst                                 time.Duration
}

func (b *bot) report() botReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	return botReport{b.ticks, b.missed, b.stays, b.inputs, b.ownSeen, b.worst}
}

// frozen is a player whose game froze: its connection completed the
// handshake (joining a room by its URL) and then never reads again. It is a
// bare TCP connection with a 4 KiB receive buffer, so that its socket is
// full after a few ticks, as a stuck phone's would be after a while.
type frozen struct {
	conn net.Conn
}

func dialFrozen(base, name, room string) (*frozen, error) {
	u, err := url.Parse(playURL(base, name, room))
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	key := make([]byte, 16)
	_, _ = crand.Read(key)
	u.Scheme = "http"
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	req.Header.Set("Sec-WebSocket-Protocol", "netmsg.v1.json")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		c.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("frozen player: handshake answered %s", resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return &frozen{conn: c}, nil
}

func (f *frozen) close() { _ = f.conn.Close() }
