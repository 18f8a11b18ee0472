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
