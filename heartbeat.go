package netmsg

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/lxzan/gws"
)

// heartbeat pings the peer every interval and closes the session with
// CloseConnectionLost when nothing has arrived for the receive timeout. It
// runs on a time.AfterFunc timer, so an idle session holds no goroutine for it.
//
// Any received byte counts as a sign of life (sessionConn counts them), so a
// large frame that arrives slowly does not look like a dead link. Time the
// read loop spends waiting for room in a full mailbox also counts as alive:
// the peer is sending, the session is just not reading.
type heartbeat struct {
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	lastRx  uint64
	quiet   time.Time // when rx last changed
}

// startHeartbeat arms the first tick; it does nothing when heartbeats are off.
func (s *Session) startHeartbeat() {
	if s.ep.cfg.heartbeatInterval <= 0 {
		return
	}
	s.hb.mu.Lock()
	defer s.hb.mu.Unlock()
	if s.hb.stopped {
		return
	}
	s.hb.quiet = time.Now()
	s.hb.timer = time.AfterFunc(s.ep.cfg.heartbeatInterval, s.tick)
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
	now := time.Now()
	s.hb.mu.Lock()
	if s.hb.stopped {
		s.hb.mu.Unlock()
		return
	}
	if rx := s.nc.rx.Load(); rx != s.hb.lastRx || s.rxBlocked.Load() {
		s.hb.lastRx, s.hb.quiet = rx, now
	}
	lost := now.Sub(s.hb.quiet) >= s.ep.cfg.receiveTimeout
	if !lost {
		s.hb.timer.Reset(s.ep.cfg.heartbeatInterval)
	}
	s.hb.mu.Unlock()

	if lost {
		s.abort(&CloseError{Reason: CloseConnectionLost, Code: closeCodeAbnormal,
			Text: "nothing received for " + s.ep.cfg.receiveTimeout.String()})
		return
	}
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(now.UnixNano()))
	s.enqueueControl(gws.OpcodePing, p[:])
}

// onPing answers a ping with a pong carrying the same payload.
func (s *Session) onPing(payload []byte) {
	s.enqueueControl(gws.OpcodePong, payload)
}

// onPong measures the round trip from the clock value the ping carried.
func (s *Session) onPong(payload []byte) {
	if len(payload) != 8 {
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload))
	if rtt := time.Now().UnixNano() - sent; rtt >= 0 && rtt < int64(time.Hour) {
		s.rtt.Store(rtt)
	}
}
