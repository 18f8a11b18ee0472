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
// It runs on a time.AfterFunc timer, so an idle session holds no goroutine
// for it.
//
// Any received byte counts as a sign of life, so a large frame that arrives
// slowly does not look like a dead link; the frame timeout bounds how slowly.
// Time the read loop spends waiting for room in a full mailbox also counts as
// alive: the peer is sending, the session is just not reading.
type heartbeat struct {
	mu      sync.Mutex
	timer   *time.Timer
	period  time.Duration
	stopped bool
	lastRx  uint64
	quiet   time.Time // when rx last changed
}

// startHeartbeat arms the first tick; with heartbeats and the frame timeout
// both off it does nothing.
func (s *Session) startHeartbeat() {
	cfg := s.ep.cfg
	period := cfg.heartbeatInterval
	if period <= 0 && cfg.frameTimeout > 0 {
		period = cfg.frameTimeout / 4
	}
	if period <= 0 {
		return
	}
	s.hb.mu.Lock()
	defer s.hb.mu.Unlock()
	if s.hb.stopped {
		return
	}
	s.hb.period = period
	s.hb.quiet = time.Now()
	s.hb.timer = time.AfterFunc(period, s.tick)
}

func (h *heartbeat) stop() {
	h.mu.Lock()
	h.stopped = true
	if h.timer != nil {
		h.timer.Stop()
	}
	h.mu.Unlock()
}

func (s *Session) tick() {
	cfg := s.ep.cfg
	now := time.Now()
	waiting := s.mbox.isWaiting()
	s.hb.mu.Lock()
	if s.hb.stopped {
		s.hb.mu.Unlock()
		return
	}
	if rx := s.conn.Received(); rx != s.hb.lastRx || waiting {
		s.hb.lastRx, s.hb.quiet = rx, now
	}
	lost := cfg.receiveTimeout > 0 && now.Sub(s.hb.quiet) >= cfg.receiveTimeout
	age := s.conn.FrameAge(now)
	slow := cfg.frameTimeout > 0 && age >= cfg.frameTimeout
	if !lost && !slow {
		s.hb.timer.Reset(s.hb.period)
	}
	s.hb.mu.Unlock()

	switch {
	case lost:
		s.abort(&CloseError{Reason: CloseConnectionLost, Code: closeCodeAbnormal,
			Text: "nothing received for " + cfg.receiveTimeout.String()})
		return
	case slow:
		s.abort(&CloseError{Reason: CloseConnectionLost, Code: closeCodeAbnormal,
			Text: "a frame took longer than " + cfg.frameTimeout.String() + " to arrive"})
		return
	}
	if cfg.heartbeatInterval > 0 {
		var p [8]byte
		binary.BigEndian.PutUint64(p[:], uint64(now.UnixNano()))
		s.out.control(transport.OpPing, p[:])
	}
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
