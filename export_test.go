package netmsg

// Hooks for the external tests of this package.

// GroupCountsForTest reports how many groups of srv have members, how many
// memberships there are, and whether the group table is released.
func GroupCountsForTest(srv *Server) (groups, memberships int, released bool) {
	return srv.groups.counts()
}

// SessionValuesForTest reports how many typed values s holds.
func SessionValuesForTest(s *Session) int { return s.valueCount() }

// PendingCallsForTest reports how many calls s waits answers for, and
// whether its call timer is armed.
func PendingCallsForTest(s *Session) (pending int, armed bool) {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	return len(s.calls.pending), s.calls.armed != 0
}

// InlineCountsForTest reports how many handlers ep ran on a read loop, how
// many of those were handed off, and how many of the handoffs the watchdog
// made.
func InlineCountsForTest(r Registrar) (runs, handoffs, watched uint64) {
	var ep *endpoint
	switch x := r.(type) {
	case *Server:
		ep = &x.ep
	case *Client:
		ep = &x.ep
	}
	return ep.inl.runs.Load(), ep.inl.handoffs.Load(), ep.inl.watched.Load()
}

// HeartbeatWheelForTest reports how many sessions srv's heartbeat wheel
// holds and whether its timer is set.
func HeartbeatWheelForTest(srv *Server) (sessions int, armed bool) {
	w := srv.ep.hbw
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sessions), w.armed
}

// WakingCallersForTest reports how many callers of s were handed their
// answers and have not taken them yet.
func WakingCallersForTest(s *Session) int { return int(s.calls.waking.Load()) }
