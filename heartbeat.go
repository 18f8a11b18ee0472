package netmsg

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/netmsg/netmsg/internal/transport"
)

// heartbeat pings the peer every interval, closes the session with
// CloseConnectionLost when nothing has arrived for the receive timeout, and
// cuts off a frame that has been arriving for longer than the frame timeout.
// The sessions of one period share a timer wheel (hbWheel), so an idle
// session holds neither a goroutine nor a timer for it.
//
// Any received byte counts as a sign of life, so a large frame that arrives
// slowly does not look like a dead link; the frame timeout bounds how slowly.
// Time the read loop spends waiting for room in a full mailbox also counts as
// alive: the peer is sending, the session is just not reading.
type heartbeat struct {
	mu      sync.Mutex
	stopped bool
	// The session's place in its wheel, under the wheel's lock.
	inWheel bool
	slot    uint8
	idx     int32

	lastRx uint64
	quiet  int64 // when rx last changed (monoNanos)
}

// monoEpoch anchors monoNanos.
var monoEpoch = time.Now()

// monoNanos turns t into nanoseconds on the monotonic clock, since monoEpoch:
// an int64 is a third of a time.Time, and unlike UnixNano it does not jump
// with the wall clock.
func monoNanos(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

// heartbeatPeriod is how often a session's heartbeat ticks, 0 for never.
func (cfg *config) heartbeatPeriod() time.Duration {
	if cfg.heartbeatInterval <= 0 && cfg.frameTimeout > 0 {
		return cfg.frameTimeout / 4
	}
	return max(cfg.heartbeatInterval, 0)
}

// startHeartbeat puts the session on its wheel: the first tick comes within
// the last 1/hbSlots of a period from now. With heartbeats and the frame
// timeout both off it does nothing.
func (s *Session) startHeartbeat() {
	period := s.ep.cfg.heartbeatPeriod()
	if period <= 0 {
		return
	}
	s.hb.mu.Lock()
	defer s.hb.mu.Unlock()
	if s.hb.stopped {
		return
	}
	now := time.Now()
	s.hb.quiet = monoNanos(now)
	wheelFor(period).add(s, now)
}

func (s *Session) stopHeartbeat() {
	s.hb.mu.Lock()
	was := s.hb.stopped
	s.hb.stopped = true
	s.hb.mu.Unlock()
	if period := s.ep.cfg.heartbeatPeriod(); period > 0 && !was {
		wheelFor(period).remove(s)
	}
}

// hbSlots is how many slots a heartbeat wheel has: a session ticks every
// period, at the time of its slot, and its first tick comes between
// period-period/hbSlots and period after it joined.
const hbSlots = 64

// hbWheel ticks the heartbeats of all sessions with one period. A session
// joins the slot of the time it starts and stays there; the wheel's one
// timer fires at the next slot that has sessions, ticks them (on the timer's
// goroutine, one after the other: a tick never blocks) and skips empty
// slots, so a wheel with one session wakes once per period.
type hbWheel struct {
	period time.Duration
	d      int64 // nanoseconds per slot

	mu    sync.Mutex
	slots [hbSlots][]*Session
	n     int
	// Slots are numbered by absolute time (monoNanos / d); a slot's
	// sessions sit at its number modulo hbSlots. done is the last number
	// ticked (or skipped, being empty), target the number the timer is set
	// for; every number between them is empty.
	done, target int64
	armed        bool
	timer        *time.Timer
}

var wheels struct {
	mu sync.Mutex
	m  map[time.Duration]*hbWheel
}

// wheelFor returns the wheel of a period, made on first use.
func wheelFor(period time.Duration) *hbWheel {
	wheels.mu.Lock()
	defer wheels.mu.Unlock()
	w := wheels.m[period]
	if w == nil {
		if wheels.m == nil {
			wheels.m = make(map[time.Duration]*hbWheel)
		}
		w = &hbWheel{period: period, d: max(int64(period)/hbSlots, 1)}
		wheels.m[period] = w
	}
	return w
}

// add puts s in the slot of now. The caller holds s.hb.mu.
func (w *hbWheel) add(s *Session, now time.Time) {
	cur := monoNanos(now) / w.d
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed {
		w.done = cur
		w.arm(cur+hbSlots, now)
	} else {
		// The numbers from done up to the target are empty, so they may
		// count as done: s joins the latest one that has passed. Its first
		// tick, a whole turn later, is no earlier than the timer's target.
		w.done = max(w.done, min(cur, w.target-1))
	}
	slot := uint8(w.done % hbSlots)
	s.hb.inWheel, s.hb.slot, s.hb.idx = true, slot, int32(len(w.slots[slot]))
	w.slots[slot] = append(w.slots[slot], s)
	w.n++
}

// remove takes s off the wheel, if it is on it.
func (w *hbWheel) remove(s *Session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.hb.inWheel {
		return
	}
	q := w.slots[s.hb.slot]
	last := len(q) - 1
	if i := s.hb.idx; int(i) != last {
		q[i] = q[last]
		q[i].hb.idx = i
	}
	q[last] = nil
	if last == 0 {
		q = nil // an emptied slot keeps no array
	} else {
		q = q[:last]
	}
	w.slots[s.hb.slot] = q
	s.hb.inWheel = false
	w.n--
	if w.n == 0 && w.armed {
		w.timer.Stop()
		w.armed = false
	}
}

// arm sets the timer for slot number target; w.mu is held.
func (w *hbWheel) arm(target int64, now time.Time) {
	w.target, w.armed = target, true
	wait := time.Duration(target*w.d - monoNanos(now))
	if w.timer == nil {
		w.timer = time.AfterFunc(wait, w.fire)
	} else {
		w.timer.Reset(wait)
	}
}

// fire ticks the sessions whose slots have come and sets the timer for the
// next slot that has any.
func (w *hbWheel) fire() {
	now := time.Now()
	cur := monoNanos(now) / w.d
	w.mu.Lock()
	if !w.armed || cur < w.target {
		// Stopped, or re-armed for later, after this run was due.
		w.mu.Unlock()
		return
	}
	var due []*Session
	for i := w.done + 1; i <= cur && i <= w.done+hbSlots; i++ {
		due = append(due, w.slots[i%hbSlots]...)
	}
	w.done = cur
	w.armed = false
	for i := int64(1); i <= hbSlots && w.n > 0; i++ {
		if len(w.slots[(cur+i)%hbSlots]) > 0 {
			w.arm(cur+i, now)
			break
		}
	}
	w.mu.Unlock()
	// The pings go to the endpoint's fan-out writers, a chunk at a time:
	// a whole slot pings at once, and must not start a writer each.
	var starts []*outbound
	for i, s := range due {
		if o := s.tick(); o != nil {
			starts = append(starts, o)
		}
		if n := len(starts); n > 0 && (n == fanChunk || i == len(due)-1 || due[i+1].ep != starts[0].s.ep) {
			starts[0].s.ep.fanAdd(starts)
			starts = starts[:0]
		}
	}
}

// tick checks the session's link and queues its ping. It returns the
// session's outbound queue if the caller must hand it to a writer.
func (s *Session) tick() *outbound {
	cfg := s.ep.cfg
	now := time.Now()
	waiting := s.mbox.isWaiting()
	s.hb.mu.Lock()
	if s.hb.stopped {
		s.hb.mu.Unlock()
		return nil
	}
	if rx := s.conn.Received(); rx != s.hb.lastRx || waiting {
		s.hb.lastRx, s.hb.quiet = rx, monoNanos(now)
	}
	lost := cfg.receiveTimeout > 0 && time.Duration(monoNanos(now)-s.hb.quiet) >= cfg.receiveTimeout
	age := s.conn.FrameAge(now)
	slow := cfg.frameTimeout > 0 && age >= cfg.frameTimeout
	s.hb.mu.Unlock()

	var ce *CloseError
	switch {
	case lost:
		ce = &CloseError{Reason: CloseConnectionLost, Code: closeCodeAbnormal,
			Text: "nothing received for " + cfg.receiveTimeout.String()}
	case slow:
		ce = &CloseError{Reason: CloseConnectionLost, Code: closeCodeAbnormal,
			Text: "a frame took longer than " + cfg.frameTimeout.String() + " to arrive"}
	}
	if ce != nil {
		// Not on the wheel's goroutine: closing a TLS connection sends an
		// alert first and may wait for a peer that does not read, which
		// must not hold up the other sessions' ticks.
		s.stopHeartbeat()
		s.ep.spawn(func() { s.abort(ce) })
		return nil
	}
	if cfg.heartbeatInterval > 0 {
		var p [8]byte
		binary.BigEndian.PutUint64(p[:], uint64(now.UnixNano()))
		if s.out.setControl(transport.OpPing, p[:]) {
			return &s.out
		}
	}
	return nil
}

// OnPing answers a ping with a pong carrying the same payload; pings that
// come faster than the pongs leave share one pong, for the latest.
func (s *Session) OnPing(payload []byte) { s.out.control(transport.OpPong, payload) }

// OnPong measures the round trip from the clock value the ping carried.
func (s *Session) OnPong(payload []byte) {
	if len(payload) != 8 {
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload))
	if rtt := time.Now().UnixNano() - sent; rtt >= 0 && rtt < int64(time.Hour) {
		s.rtt.Store(rtt)
	}
}

// OnClose runs once, on the read loop, when the connection has ended.
func (s *Session) OnClose(err error) { s.ended(err) }
