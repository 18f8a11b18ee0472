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
	// The session's place in its endpoint's wheel, under the wheel's lock.
	inWheel bool
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

// startHeartbeat puts the session on its endpoint's wheel: the first tick
// comes within the last 1/hbSlots of a period from now. With heartbeats and
// the frame timeout both off it does nothing.
func (s *Session) startHeartbeat() {
	w := s.ep.hbw
	if w == nil {
		return
	}
	s.hb.mu.Lock()
	defer s.hb.mu.Unlock()
	if s.hb.stopped {
		return
	}
	now := time.Now()
	s.hb.quiet = monoNanos(now)
	w.add(s, now)
}

func (s *Session) stopHeartbeat() {
	s.hb.mu.Lock()
	was := s.hb.stopped
	s.hb.stopped = true
	s.hb.mu.Unlock()
	if w := s.ep.hbw; w != nil && !was {
		w.remove(s)
	}
}

// hbSlots is how many slots a heartbeat wheel has: a session ticks every
// period, at the time of its slot, and its first tick comes between
// period-period/hbSlots and period after it joined.
const hbSlots = 64

// hbWheel ticks the heartbeats of an endpoint's sessions, all with the
// same period, on one timer. Time is cut into slots of period/hbSlots,
// numbered from monoEpoch; a session belongs to the slot it started in
// (modulo hbSlots) and ticks whenever a slot of that number modulo hbSlots
// comes. The timer is set for the next slot that has a session, so a wheel
// with one session wakes once per period. A firing ticks the sessions whose
// slot has come on the timer's goroutine, one after the other (a tick does
// not block), and hands their pings to the endpoint's fan-out writers.
type hbWheel struct {
	ep *endpoint
	d  int64 // nanoseconds per slot

	mu       sync.Mutex
	sessions []*Session
	slot     []uint8 // slot[i] is the slot of sessions[i]
	// done is the number of the last slot ticked (or passed, empty), target
	// the number the timer is set for; the slots between them are empty.
	done, target int64
	armed        bool
	timer        *time.Timer
}

// newHBWheel returns the endpoint's wheel, or nil with heartbeats and the
// frame timeout both off.
func newHBWheel(ep *endpoint) *hbWheel {
	period := ep.cfg.heartbeatPeriod()
	if period <= 0 {
		return nil
	}
	return &hbWheel{ep: ep, d: max(int64(period)/hbSlots, 1)}
}

// slotAt returns the number of the slot t falls in.
func (w *hbWheel) slotAt(t time.Time) int64 {
	n := monoNanos(t)
	q := n / w.d
	if n%w.d < 0 {
		q-- // floor, for a clock before monoEpoch (a test's fake clock)
	}
	return q
}

// mod returns n modulo hbSlots, in [0, hbSlots).
func mod(n int64) int64 { return (n%hbSlots + hbSlots) % hbSlots }

// add puts s in the slot of now. The caller holds s.hb.mu.
func (w *hbWheel) add(s *Session, now time.Time) {
	cur := w.slotAt(now)
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
	s.hb.inWheel, s.hb.idx = true, int32(len(w.sessions))
	w.sessions = append(w.sessions, s)
	w.slot = append(w.slot, uint8(mod(w.done)))
}

// remove takes s off the wheel, if it is on it.
func (w *hbWheel) remove(s *Session) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.hb.inWheel {
		return
	}
	s.hb.inWheel = false
	last := len(w.sessions) - 1
	if i := s.hb.idx; int(i) != last {
		w.sessions[i], w.slot[i] = w.sessions[last], w.slot[last]
		w.sessions[i].hb.idx = i
	}
	w.sessions[last] = nil
	w.sessions, w.slot = w.sessions[:last], w.slot[:last]
	if last == 0 {
		w.sessions, w.slot = nil, nil // an emptied wheel keeps no arrays
		if w.armed {
			w.timer.Stop()
			w.armed = false
		}
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

// advance returns the sessions whose slots have come by slot number cur and
// sets the timer for the next slot that has any; w.mu is held.
func (w *hbWheel) advance(cur int64, now time.Time) []*Session {
	// The numbers done+1 … cur have come (a whole turn at most); the next
	// one of each slot after cur is 1 to hbSlots away.
	span := min(cur-w.done, hbSlots)
	next := int64(hbSlots)
	var due []*Session
	for i, sl := range w.slot {
		if mod(int64(sl)-(w.done+1)) < span {
			due = append(due, w.sessions[i])
		}
		next = min(next, mod(int64(sl)-cur-1)+1)
	}
	w.done = cur
	w.armed = false
	if len(w.sessions) > 0 {
		w.arm(cur+next, now)
	}
	return due
}

// fire ticks the sessions whose slots have come and sets the timer for the
// next slot that has any.
func (w *hbWheel) fire() {
	now := time.Now()
	cur := w.slotAt(now)
	w.mu.Lock()
	if !w.armed || cur < w.target {
		// Stopped, or set again for later after this run was due.
		w.mu.Unlock()
		return
	}
	due := w.advance(cur, now)
	w.mu.Unlock()
	// The pings go to the endpoint's fan-out writers, a chunk at a time:
	// a whole slot pings at once, and must not start a writer each.
	var starts []*outbound
	for _, s := range due {
		if o := s.tick(); o != nil {
			starts = append(starts, o)
			if len(starts) == fanChunk {
				w.ep.fanAdd(starts)
				starts = starts[:0]
			}
		}
	}
	w.ep.fanAdd(starts)
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
