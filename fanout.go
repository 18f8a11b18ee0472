package netmsg

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// Broadcast sends msg to every open session of the server except those
// listed in except. It works like Group.Broadcast: encoded once per
// serializer in use, queued for each session without waiting for any
// socket, no goroutine per session; a session whose queue would overflow is
// closed as a slow consumer. It fails if ctx has ended, and returns an error
// when msg cannot be encoded with one of the serializers in use (the
// sessions using the others still get it).
func (srv *Server) Broadcast(ctx context.Context, msg any, except ...*Session) error {
	return srv.broadcast(ctx, fanTarget{all: true}, msg, except)
}

// broadcast is where Group.Broadcast and Server.Broadcast meet.
func (srv *Server) broadcast(ctx context.Context, t fanTarget, msg any, except []*Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if srv.ep.ix != nil {
		return srv.ep.broadcastIntercepted(ctx, t.group, msg, func(ctx context.Context, msg any) error {
			return srv.broadcastValue(ctx, t, msg, except)
		})
	}
	return srv.broadcastValue(ctx, t, msg, except)
}

// broadcastValue is broadcast past its interceptors. In a cluster the
// message is encoded once per serializer of the server, for this node's
// sessions and the other nodes alike, and published to the others after it
// is queued here.
func (srv *Server) broadcastValue(ctx context.Context, t fanTarget, msg any, except []*Session) error {
	m := fanMsg{name: TypeName(msg), v: msg, md: outgoingMetadata(ctx), limit: srv.cfg.maxMessageSize}
	if srv.node == nil {
		_, err := srv.fanOut(t, &m, exceptSet{sessions: except})
		return err
	}
	data := srv.node.encodeBroadcast(t, &m)
	_, err := srv.fanOut(t, &m, exceptSet{sessions: except})
	return errors.Join(err, srv.node.publishBroadcast(ctx, t, data))
}

// fanTarget says who a broadcast is for: the members of one group, or every
// session of the server.
type fanTarget struct {
	group string
	all   bool
}

// exceptSet is who a broadcast skips: sessions of this server, or session
// ids (a broadcast from another node names its exceptions by id).
type exceptSet struct {
	sessions []*Session
	ids      []string
}

func (e *exceptSet) has(s *Session) bool {
	for _, x := range e.sessions {
		if x == s {
			return true
		}
	}
	for _, id := range e.ids {
		if id == s.id {
			return true
		}
	}
	return false
}

// fanMsg is one broadcast on its way to this server's sessions. It holds
// either the value, encoded the first time a member needs it with each
// serializer, or envelopes already encoded per serializer name (a broadcast
// in a cluster, from this node or another); then v is unused, and a
// serializer whose encoding failed has its error in encodeErrs.
type fanMsg struct {
	name       string
	v          any
	md         map[string]string
	limit      int
	encoded    map[string][]byte
	encodeErrs map[string]error

	// One entry per serializer met so far. Three fit without allocating;
	// a server rarely offers more.
	frames [3]serFrame
	more   []serFrame
	n      int
}

type serFrame struct {
	name string
	f    *frame
	err  error
}

// frameFor returns the frame for sessions using ser, encoding it on first
// need. The frame belongs to m; a caller that queues it takes a reference.
func (m *fanMsg) frameFor(ser serializer.Serializer) (*frame, error) {
	name := ser.Name()
	for i := range min(m.n, len(m.frames)) {
		if m.frames[i].name == name {
			return m.frames[i].f, m.frames[i].err
		}
	}
	for i := range m.more {
		if m.more[i].name == name {
			return m.more[i].f, m.more[i].err
		}
	}
	sf := serFrame{name: name}
	switch {
	case m.encoded != nil:
		b, ok := m.encoded[name]
		switch {
		case m.encodeErrs[name] != nil:
			sf.err = m.encodeErrs[name]
		case !ok:
			sf.err = errors.New("netmsg: a broadcast from another node carries no " + name + " encoding (give every node the same serializers)")
		case len(b) > m.limit:
			sf.err = fmt.Errorf("%w: %s encodes to %d bytes, over the limit of %d", ErrMessageTooLarge, m.name, len(b), m.limit)
		default:
			sf.f = getFrame()
			sf.f.b = append(sf.f.b[:0], b...)
		}
	default:
		sf.f, sf.err = encodeFrame(ser, m.limit, wire.KindMessage, 0, m.name, m.v, 0, m.md)
	}
	if m.n < len(m.frames) {
		m.frames[m.n] = sf
	} else {
		m.more = append(m.more, sf)
	}
	m.n++
	return sf.f, sf.err
}

// finish drops m's own reference to its frames and returns the encoding
// errors, one per serializer that failed.
func (m *fanMsg) finish() error {
	var errs []error
	each := func(sf *serFrame) {
		if sf.f != nil {
			sf.f.release()
			sf.f = nil
		}
		if sf.err != nil {
			errs = append(errs, sf.err)
		}
	}
	for i := range min(m.n, len(m.frames)) {
		each(&m.frames[i])
	}
	for i := range m.more {
		each(&m.more[i])
	}
	return errors.Join(errs...)
}

var sessionListPool = sync.Pool{New: func() any { return new([]*Session) }}

// fanOut delivers m to this server's sessions in t, except those in except,
// and returns how many sessions it was queued for and the encoding errors.
// It is the local half of every broadcast: Group.Broadcast and
// Server.Broadcast call it with their value, and a broadcast that arrives
// from another node (through a broker) calls it with the envelopes that node
// encoded.
//
// The members are copied under the group lock into a pooled slice and the
// lock is released before anything is queued: queueing takes each session's
// outbound lock, and may close a slow member.
func (srv *Server) fanOut(t fanTarget, m *fanMsg, except exceptSet) (int, error) {
	lp := sessionListPool.Get().(*[]*Session)
	list := (*lp)[:0]
	if t.all {
		srv.mu.Lock()
		for _, s := range srv.sessions {
			list = append(list, s)
		}
		srv.mu.Unlock()
	} else {
		list = srv.groups.snapshot(t.group, list)
	}
	sent := 0
	for _, s := range list {
		if except.has(s) {
			continue
		}
		f, err := m.frameFor(s.ser)
		if err != nil {
			continue
		}
		f.refs.Add(1)
		if s.out.push(f) == nil {
			sent++
		}
	}
	clear(list)
	if cap(list) <= 1<<16 {
		*lp = list[:0]
		sessionListPool.Put(lp)
	}
	return sent, m.finish()
}
