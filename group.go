package netmsg

import (
	"context"
	"iter"
	"slices"
	"sync"
)

// Group is a named set of a server's sessions, for rooms, channels and
// topics: add sessions to it, remove them, and broadcast to its members.
//
// A Group is a cheap handle: Server.Group makes one for any name, and two
// handles with the same name address the same group. The group itself exists
// only while it has members; an empty group holds no memory, so there is
// nothing to create or delete. A session leaves every group by itself when
// its connection ends; OnSessionClose need not remove it.
//
// All methods may be called concurrently, from handlers, callbacks and any
// other goroutine.
type Group struct {
	srv  *Server
	name string
}

// Group returns the handle of the group called name. The name is any string;
// the group exists while it has members.
func (srv *Server) Group(name string) *Group { return &Group{srv: srv, name: name} }

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Add makes sess a member of the group. It is idempotent. A session that is
// closing or closed is not added: it has left every group for good. Add
// panics if sess is nil or is not a session of this group's server.
//
// In a cluster (WithBroker), the first member on this server makes the server
// subscribe to the group's broadcasts from the other nodes; Add returns once
// it has, so the member gets every broadcast made after that on any node.
func (g *Group) Add(sess *Session) {
	if g.srv.groups.add(g.srv, g.name, sess) && g.srv.node != nil {
		g.srv.node.syncGroup(g.name)
	}
}

// Remove ends sess's membership of the group; it does nothing if sess is not
// a member.
func (g *Group) Remove(sess *Session) {
	if sess == nil {
		return
	}
	if g.srv.groups.remove(g.name, sess) && g.srv.node != nil {
		g.srv.node.groupEmptied(g.name)
	}
}

// Contains reports whether sess is a member of the group.
func (g *Group) Contains(sess *Session) bool {
	if sess == nil {
		return false
	}
	return g.srv.groups.contains(g.name, sess)
}

// Len returns the number of members on this server.
func (g *Group) Len() int { return g.srv.groups.len(g.name) }

// Sessions iterates over the members on this server, as they are when the
// iteration starts. The loop body runs without any lock held: it may Add and
// Remove members, of this group or any other.
func (g *Group) Sessions() iter.Seq[*Session] {
	return func(yield func(*Session) bool) {
		list := g.srv.groups.snapshot(g.name, nil)
		for _, s := range list {
			if !yield(s) {
				return
			}
		}
	}
}

// Broadcast sends msg to every member of the group except those listed in
// except. It encodes msg once per serializer in use among the members,
// queues it for each member and returns: it never waits for a member's
// socket, and it starts no goroutine per member. A member whose outbound
// queue would overflow (WithMaxQueuedBytes) is closed as a slow consumer
// (CloseSlowConsumer, counted in Stats.SlowConsumers) and the others are
// not held up. Broadcast fails if ctx has ended; it returns an error when
// msg cannot be encoded with one of the serializers in use, and the members
// using the others still get it. Metadata in ctx (WithMetadata) goes with
// the message.
func (g *Group) Broadcast(ctx context.Context, msg any, except ...*Session) error {
	return g.srv.broadcast(ctx, fanTarget{group: g.name}, msg, except)
}

// Groups returns the names of the groups sess is a member of, in the order
// it joined them. It returns nil for a client's session and for a session
// whose connection has ended.
func (s *Session) Groups() []string {
	gs := s.ep.groups
	if gs == nil {
		return nil
	}
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	ext := s.ext.Load()
	if ext == nil || len(ext.groups) == 0 {
		return nil
	}
	return slices.Clone(ext.groups)
}

// groupSet is a server's group membership: for each group with members, its
// members; for each session, the names of its groups (in its sessionExt).
// One lock guards both sides, so they never disagree, and only the library's
// own bookkeeping runs under it: no user code, no other part's lock.
//
// A group's members are a slice, so that a broadcast copies them in one
// move, and a map from member to its index in the slice, so that Remove
// costs the same for a group of ten and of ten thousand.
type groupSet struct {
	mu   sync.RWMutex
	m    map[string]*members
	peak int // len(m) at its largest since m was made
}

type members struct {
	list []*Session
	at   map[*Session]int
	peak int // len(at) at its largest since at was made
}

// A Go map keeps the memory of its largest size. Both maps here are rebuilt
// when they have shrunk to a quarter of that (never below shrinkFloor
// entries), which costs O(1) per removal amortized, so a server whose rooms
// emptied, or a room that emptied out, holds memory for what is left.
const shrinkFloor = 64

// add makes s a member of the group and reports whether the group was
// created (it had no members).
func (gs *groupSet) add(srv *Server, name string, s *Session) (created bool) {
	if s == nil {
		panic("netmsg: Group.Add of a nil *Session")
	}
	if s.ep != &srv.ep {
		panic("netmsg: Group.Add of a session that is not one of this server's")
	}
	ext := s.extension()
	gs.mu.Lock()
	defer gs.mu.Unlock()
	// The session's connection-ended path (leaveAll) runs under gs.mu after
	// the close began: a session seen open here is removed by it later, and
	// one seen closing is not added, so no membership outlives its session.
	if s.isClosing() || ext == nil {
		return false
	}
	g := gs.m[name]
	if g == nil {
		if gs.m == nil {
			gs.m = make(map[string]*members)
		}
		g = &members{at: make(map[*Session]int)}
		gs.m[name] = g
		gs.peak = max(gs.peak, len(gs.m))
		created = true
	} else if _, ok := g.at[s]; ok {
		return false
	}
	g.at[s] = len(g.list)
	g.list = append(g.list, s)
	g.peak = max(g.peak, len(g.list))
	ext.groups = append(ext.groups, name)
	return created
}

// remove ends s's membership of the group and reports whether the group is
// gone (s was its last member).
func (gs *groupSet) remove(name string, s *Session) (emptied bool) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.m[name]
	if g == nil {
		return false
	}
	if !g.drop(s) {
		return false
	}
	if len(g.list) == 0 {
		gs.delete(name)
		emptied = true
	}
	if ext := s.ext.Load(); ext != nil {
		if i := slices.Index(ext.groups, name); i >= 0 {
			ext.groups = slices.Delete(ext.groups, i, i+1)
			if len(ext.groups) == 0 {
				ext.groups = nil
			}
		}
	}
	return emptied
}

// drop removes s from g's members and reports whether it was one; gs.mu is
// held for writing.
func (g *members) drop(s *Session) bool {
	i, ok := g.at[s]
	if !ok {
		return false
	}
	delete(g.at, s)
	last := len(g.list) - 1
	if i != last {
		moved := g.list[last]
		g.list[i] = moved
		g.at[moved] = i
	}
	g.list[last] = nil
	g.list = g.list[:last]
	if g.peak > shrinkFloor && len(g.list) <= g.peak/4 {
		g.list = slices.Clone(g.list)
		at := make(map[*Session]int, len(g.list))
		for i, m := range g.list {
			at[m] = i
		}
		g.at, g.peak = at, len(g.list)
	}
	return true
}

// delete forgets a group that has no members left; gs.mu is held for
// writing.
func (gs *groupSet) delete(name string) {
	delete(gs.m, name)
	switch {
	case len(gs.m) == 0:
		gs.m, gs.peak = nil, 0
	case gs.peak > shrinkFloor && len(gs.m) <= gs.peak/4:
		m := make(map[string]*members, len(gs.m))
		for k, v := range gs.m {
			m[k] = v
		}
		gs.m, gs.peak = m, len(m)
	}
}

// leaveAll ends every membership of s and appends the names of the groups
// it was the last member of to emptied. The server calls it once, when the
// session's connection has ended.
func (gs *groupSet) leaveAll(s *Session, emptied []string) []string {
	ext := s.ext.Load()
	if ext == nil {
		return emptied
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	for _, name := range ext.groups {
		if g := gs.m[name]; g != nil && g.drop(s) && len(g.list) == 0 {
			gs.delete(name)
			emptied = append(emptied, name)
		}
	}
	ext.groups = nil
	return emptied
}

func (gs *groupSet) contains(name string, s *Session) bool {
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	g := gs.m[name]
	if g == nil {
		return false
	}
	_, ok := g.at[s]
	return ok
}

func (gs *groupSet) len(name string) int {
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	if g := gs.m[name]; g != nil {
		return len(g.list)
	}
	return 0
}

// snapshot appends the members of the group to buf.
func (gs *groupSet) snapshot(name string, buf []*Session) []*Session {
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	if g := gs.m[name]; g != nil {
		buf = append(buf, g.list...)
	}
	return buf
}

// counts reports how many groups have members and how many memberships
// there are, and whether the group map is released (nil), for tests. It
// panics if a group's index disagrees with its members.
func (gs *groupSet) counts() (groups, memberships int, released bool) {
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	for _, g := range gs.m {
		memberships += len(g.list)
		if len(g.at) != len(g.list) || len(g.list) == 0 {
			panic("netmsg: group index out of step with its members")
		}
		for i, s := range g.list {
			if g.at[s] != i {
				panic("netmsg: group index out of step with its members")
			}
		}
	}
	return len(gs.m), memberships, gs.m == nil
}
