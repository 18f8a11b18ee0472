// Command gameroom runs a small multiplayer room server and bots that play
// in it, all in one process:
//
//	go run ./examples/gameroom                      # 4 rooms × 16 bots, 20 Hz for 4 s
//	go run ./examples/gameroom -rooms 10 -players 30 -duration 10s
//
// Each room is a netmsg Group ticked at 20 Hz: the server sends every member
// the room's state with one Group.Broadcast per tick (encoded once, queued
// for each member, never waiting on anyone). Players send their inputs at
// 20 Hz; the server keeps each player's state in the session with a
// netmsg.Key. One bot hops from room to room (Leave, Join). One player is
// frozen: it joined and then never reads again. The server cuts it as a
// slow consumer, and the report shows that nobody else lost a tick or
// waited for it. It exits 0 when every bot got every tick of its room.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"
)

type config struct {
	rooms, players int
	duration       time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.rooms, "rooms", 4, "number of `rooms`")
	flag.IntVar(&cfg.players, "players", 16, "bots per room")
	flag.DurationVar(&cfg.duration, "duration", 4*time.Second, "how long the rooms tick")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gameroom:", err)
		os.Exit(1)
	}
}

func printf(w io.Writer, format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }

// run plays the game for cfg.duration, and on until the frozen player has
// been cut (at most cutWait more), then reports. It fails when a bot missed
// a tick, received fewer ticks than its room sent, or the frozen player was
// not cut.
func run(ctx context.Context, out io.Writer, cfg config) error {
	if cfg.rooms < 2 || cfg.players < 1 {
		return fmt.Errorf("need at least 2 rooms and 1 player per room")
	}
	rooms := make([]string, cfg.rooms)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("r%d", i)
	}
	rs, err := startRoomServer(rooms)
	if err != nil {
		return err
	}
	defer func() { _ = rs.shutdown(5 * time.Second) }()

	// The players: cfg.players bots per room, a hopper, a frozen one in r0.
	var bots []*bot
	defer func() {
		for _, b := range bots {
			_ = b.client.Close()
		}
	}()
	for r, room := range rooms {
		for i := range cfg.players {
			b := newBot(fmt.Sprintf("bot-%d-%d", r, i), rs.url, room)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := b.client.Connect(cctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: connect: %w", b.name, err)
			}
			bots = append(bots, b)
		}
	}
	hopper := newBot("hopper", rs.url, rooms[0])
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = hopper.client.Connect(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("hopper: connect: %w", err)
	}
	bots = append(bots, hopper)
	ice, err := dialFrozen(rs.url, "frozen", rooms[0])
	if err != nil {
		return err
	}
	defer ice.close()
	want := cfg.rooms*cfg.players + 2
	if !waitFor(ctx, 10*time.Second, func() bool { return total(rs, rooms) == want }) {
		return fmt.Errorf("%d of %d players in their rooms", total(rs, rooms), want)
	}
	printf(out, "gameroom: %d rooms × %d bots, a hopper and a frozen player (in %s); 20 Hz for %v",
		cfg.rooms, cfg.players, rooms[0], cfg.duration)

	// Play.
	start := time.Now()
	gctx, stopGame := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rs.tickRooms(gctx) }()
	for _, b := range bots {
		wg.Add(1)
		go func() { defer wg.Done(); b.play(gctx) }()
	}
	hopErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); hopErr <- hopper.hop(gctx, rooms, 400*time.Millisecond) }()

	sleep(ctx, cfg.duration)
	const cutWait = 15 * time.Second
	waitFor(ctx, cutWait, func() bool { return rs.Stats().SlowConsumers > 0 })
	stopGame()
	wg.Wait()
	played := time.Since(start)
	if err := <-hopErr; err != nil {
		return err
	}
	// Let the last ticks arrive.
	sent := func(room string) int {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return rs.ticks[room]
	}
	waitFor(ctx, 5*time.Second, func() bool {
		for _, b := range bots[:len(bots)-1] {
			if b.report().ticks < sent(b.room) {
				return false
			}
		}
		return true
	})

	// Report.
	rs.mu.Lock()
	times := slices.Clone(rs.tickTimes)
	cut, wasCut := rs.cuts["frozen"]
	rs.mu.Unlock()
	slices.Sort(times)
	allTicks := 0
	for _, room := range rooms {
		allTicks += sent(room)
	}
	printf(out, "server: %d ticks in %v; tick time (state + Broadcast) median %v, worst %v; %d inputs received",
		allTicks, played.Round(time.Millisecond), pct(times, 50), pct(times, 100), rs.inputs.Load())

	var problems []string
	minT, maxT, missed := -1, 0, 0
	var worst time.Duration
	for _, b := range bots[:len(bots)-1] {
		r := b.report()
		if r.ticks != sent(b.room) {
			problems = append(problems, fmt.Sprintf("%s got %d of %s's %d ticks", b.name, r.ticks, b.room, sent(b.room)))
		}
		if minT < 0 || r.ticks < minT {
			minT = r.ticks
		}
		maxT = max(maxT, r.ticks)
		missed += r.missed
		worst = max(worst, r.worst)
	}
	lo, hi := sent(rooms[0]), sent(rooms[0])
	for _, room := range rooms {
		lo, hi = min(lo, sent(room)), max(hi, sent(room))
	}
	printf(out, "bots: ticks delivered per player %d to %d (their rooms sent %d to %d), %d missed; worst time from tick to handler %v",
		minT, maxT, lo, hi, missed, worst.Round(time.Microsecond))
	h := hopper.report()
	printf(out, "hopper: %d stays in rooms, %d ticks, %d missed within a stay; its inputs echoed up to #%d of %d sent",
		h.stays, h.ticks, h.missed, h.ownSeen, h.inputs)
	if wasCut {
		printf(out, "frozen player: cut as a slow consumer %v after the first tick (%v); %s's other %d bots got all %d ticks",
			cut.at.Sub(start).Round(time.Millisecond), cut.err, rooms[0], cfg.players, sent(rooms[0]))
	} else {
		problems = append(problems, fmt.Sprintf("the frozen player was not cut within %v", played.Round(time.Millisecond)))
	}
	st := rs.Stats()
	printf(out, "stats: %d slow consumers, %d frames dropped for closed sessions", st.SlowConsumers, st.DroppedOutbound)
	if missed > 0 || h.missed > 0 {
		problems = append(problems, fmt.Sprintf("%d ticks missed", missed+h.missed))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems: %v", len(problems), problems)
	}
	return nil
}

// total counts the members of all rooms.
func total(rs *roomServer, rooms []string) int {
	n := 0
	for _, r := range rooms {
		n += rs.Group(r).Len()
	}
	return n
}

// pct returns the p-th percentile of sorted ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := min(len(ds)-1, len(ds)*p/100)
	return ds[i].Round(time.Microsecond)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitFor polls cond every 10 ms until it holds or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
