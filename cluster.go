package netmsg

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/cluster"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// The subjects a cluster uses on its broker.
const (
	subjectNodes     = "nodes"  // presence: hellos and byes
	subjectAll       = "all"    // broadcasts to every session
	subjectNodeRoot  = "node."  // + node id: sends, requests and cancels for the node's sessions
	subjectGroupRoot = "group." // + group token: broadcasts to a group's members
)

// node is a Server's part in a cluster: its id, its subscriptions on the
// broker, and the requests other nodes forwarded to its sessions.
//
// A node subscribes to one subject for its sessions ("node.<id>"), not one
// per session: connections come and go without touching the broker, a
// session id names its node (the id's prefix), and "nobody has it" is still
// answered at once: by the node itself when the session is gone, and by the
// broker ("no responders") when the node is.
//
// "No responders" is also what a node's sessions look like while that node
// is reconnecting to the broker. So nodes say hello on "nodes" every
// presenceInterval, and bye when they shut down: no responders from a node
// heard from within presenceTimeout means ErrBrokerUnavailable (try again),
// not ErrNoSession.
type node struct {
	srv *Server
	b   Broker
	id  string

	subErr  error // why subscribing failed at NewServer; cross-node calls report it
	unsubMu sync.Mutex
	unsubs  []func()

	gate    gate
	nextID  atomic.Uint64
	fwdMu   sync.Mutex
	forward map[fwdKey]context.CancelFunc // requests of other nodes running here

	sers map[string]serializer.Serializer // by Name, the server's serializers

	groupMu      sync.Mutex
	groupSubs    map[string]func() // unsubscribe, by group with members here
	groupsClosed bool
	dirtyMu      sync.Mutex
	dirty        map[string]struct{} // groups that emptied, to unsubscribe from

	seenMu   sync.Mutex
	seen     map[string]time.Time                // other nodes, when last heard from
	calls    map[string]map[*remoteCall]struct{} // calls waiting for another node's answer, by node
	wasDown  bool                                // the last hello could not be published
	poke     chan struct{}                       // a new node said hello: say hello back now
	wake     chan struct{}                       // groups emptied: sync them
	stop     chan struct{}                       // closed by close: the presence goroutine exits
	stopped  chan struct{}                       // closed when it has
	stopOnce sync.Once
}

// Presence: how often a node says hello, and how long after the last hello
// its silence means "reconnecting" rather than "gone".
const (
	presenceInterval = time.Second
	presenceTimeout  = 3 * presenceInterval
)

type fwdKey struct {
	origin string
	id     uint64
}

// newNodeID returns a random node id of letters and digits. 64 random bits:
// two nodes of a cluster share one with a likelihood of about n²/2⁶⁵.
func newNodeID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go ≥ 1.24)
	return strconv.FormatUint(binary.LittleEndian.Uint64(b[:]), 36)
}

func newNode(srv *Server, b Broker) *node {
	n := &node{srv: srv, b: b, id: newNodeID(), forward: make(map[fwdKey]context.CancelFunc),
		sers: make(map[string]serializer.Serializer), seen: make(map[string]time.Time),
		calls: make(map[string]map[*remoteCall]struct{}),
		poke:  make(chan struct{}, 1), wake: make(chan struct{}, 1), groupSubs: make(map[string]func()), stop: make(chan struct{}), stopped: make(chan struct{})}
	n.gate.init()
	for _, s := range srv.cfg.serializers {
		if _, dup := n.sers[s.Name()]; !dup {
			n.sers[s.Name()] = s
		}
	}
	for _, sub := range []struct {
		subject string
		h       BrokerHandler
	}{
		{subjectNodeRoot + n.id, n.handleNode},
		{subjectAll, n.handleBroadcast},
		{subjectNodes, n.handlePresence},
	} {
		unsub, err := b.Subscribe(sub.subject, sub.h)
		if err != nil {
			n.subErr = fmt.Errorf("netmsg: subscribing to %s on the broker: %w", sub.subject, err)
			srv.cfg.logger.Error(n.subErr.Error() + "; this server is not part of the cluster")
			break
		}
		n.unsubs = append(n.unsubs, unsub)
	}
	if n.subErr != nil {
		close(n.stopped)
		return n
	}
	go n.presence()
	return n
}

// sessionID returns a new id for a session of this node: the node id, a
// dash, and a number unique in the process.
func (n *node) sessionID() string {
	return n.id + "-" + strconv.FormatUint(sessionSeq.Add(1), 36)
}

// nodeOf returns the node id a session id names, or "" when it names none.
func nodeOf(sessionID string) string {
	i := strings.LastIndexByte(sessionID, '-')
	if i <= 0 {
		return ""
	}
	for _, c := range []byte(sessionID[:i]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return ""
		}
	}
	return sessionID[:i]
}

// close stops the node answering for its sessions: it unsubscribes from
// everything and waits for the broker callbacks in progress to return.
func (n *node) close() {
	n.stopOnce.Do(func() { close(n.stop) })
	<-n.stopped
	n.unsubMu.Lock()
	unsubs := n.unsubs
	n.unsubs = nil
	n.unsubMu.Unlock()
	n.gate.close() // callbacks arriving from now on answer "no session"
	for _, u := range unsubs {
		u()
	}
	n.closeGroups()
	if n.subErr == nil {
		n.say(cluster.KindBye)
	}
}

// presence says hello now, every presenceInterval and when a new node said
// hello, until close.
func (n *node) presence() {
	defer close(n.stopped)
	t := time.NewTicker(presenceInterval)
	defer t.Stop()
	for {
		ok := n.say(cluster.KindHello)
		n.seenMu.Lock()
		if ok && n.wasDown {
			// Back after an outage: the others were silent because this
			// node could not hear them. They get a presenceTimeout from
			// now to say hello again.
			now := time.Now()
			for id := range n.seen {
				n.seen[id] = now
			}
		}
		n.wasDown = !ok
		for id, at := range n.seen {
			if time.Since(at) > presenceTimeout && ok {
				delete(n.seen, id)
				n.gone(id)
			}
		}
		n.seenMu.Unlock()
		select {
		case <-t.C:
		case <-n.poke:
		case <-n.wake:
			n.syncDirty()
			continue // no hello for this
		case <-n.stop:
			return
		}
	}
}

// say publishes a hello or a bye, and reports whether it went out.
func (n *node) say(k cluster.Kind) bool {
	m := cluster.Msg{Kind: k, Origin: []byte(n.id)}
	ctx, cancel := context.WithTimeout(context.Background(), presenceInterval)
	defer cancel()
	return n.b.Publish(ctx, subjectNodes, m.Append(nil)) == nil
}

func (n *node) handlePresence(data []byte, _ func([]byte) error) {
	var m cluster.Msg
	if err := m.Decode(data); err != nil || string(m.Origin) == n.id {
		return
	}
	n.seenMu.Lock()
	defer n.seenMu.Unlock()
	switch m.Kind {
	case cluster.KindHello:
		if _, known := n.seen[string(m.Origin)]; !known {
			select { // a newcomer learns of this node without waiting for its tick
			case n.poke <- struct{}{}:
			default:
			}
		}
		n.seen[string(m.Origin)] = time.Now()
	case cluster.KindBye:
		delete(n.seen, string(m.Origin))
		n.gone(string(m.Origin))
	}
}

// remoteCall is a call waiting for another node's answer.
type remoteCall struct{ cancel context.CancelCauseFunc }

// errNodeGone ends the calls waiting for a node that left the cluster.
var errNodeGone = errors.New("node gone")

// gone fails the calls waiting for node id, which said bye or fell silent:
// like a session whose heartbeat stopped, the answer is not coming.
// n.seenMu is held.
func (n *node) gone(id string) {
	for c := range n.calls[id] {
		c.cancel(errNodeGone)
	}
	delete(n.calls, id)
}

// track registers a call waiting for node id; untrack removes it.
func (n *node) track(id string, c *remoteCall) {
	n.seenMu.Lock()
	defer n.seenMu.Unlock()
	set := n.calls[id]
	if set == nil {
		set = make(map[*remoteCall]struct{})
		n.calls[id] = set
	}
	set[c] = struct{}{}
}

func (n *node) untrack(id string, c *remoteCall) {
	n.seenMu.Lock()
	defer n.seenMu.Unlock()
	if set := n.calls[id]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(n.calls, id)
		}
	}
}

// present reports whether node id said hello within presenceTimeout (or
// this node was cut off from the broker meanwhile).
func (n *node) present(id string) bool {
	n.seenMu.Lock()
	defer n.seenMu.Unlock()
	at, ok := n.seen[id]
	return ok && (n.wasDown || time.Since(at) <= presenceTimeout)
}

// ---- the calling side ----

// SendTo sends a one-way message to the session with the given id, on this
// server or, with a broker (WithBroker), on any node of the cluster. For a
// session on this server it is Session.Send. For one on another node it
// waits until that node has queued the message (or said why not), bounded
// by ctx or, when ctx has no deadline, the RequestTimeout; it never waits
// for the session's socket. It returns ErrNoSession when no node has the
// session, and an error matching ErrBrokerUnavailable when the broker cannot
// be reached. Delivery is at most once.
func (srv *Server) SendTo(ctx context.Context, sessionID string, msg any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s, ok := srv.Session(sessionID); ok {
		return s.Send(ctx, msg)
	}
	n := srv.node
	if n == nil {
		return ErrNoSession
	}
	nodeID := nodeOf(sessionID)
	if nodeID == "" || nodeID == n.id {
		return ErrNoSession
	}
	if n.subErr != nil {
		return n.subErr
	}
	m := cluster.Msg{Kind: cluster.KindSend, Origin: []byte(n.id), Session: []byte(sessionID)}
	data, err := n.encodeMsg(&m, ctx, msg)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, srv.cfg.requestTimeout)
		defer cancel()
	}
	var r cluster.Reply
	if err := n.request(ctx, nodeID, sessionID, data, &r); err != nil {
		return err
	}
	return replyError(&r, nodeID)
}

// SendRequestTo sends req to the session with the given id, on this server
// or, with a broker (WithBroker), on any node of the cluster, and waits for
// its typed response, as SendRequest does on a *Session: the handler's
// answer, its *Error, a timeout (ctx's deadline or, without one, the
// server's RequestTimeout) or the session's *CloseError come back the same
// way wherever the session is. Cancelling ctx cancels the handler's ctx on
// the peer. It returns ErrNoSession when no node has the session, at once,
// and an error matching ErrBrokerUnavailable when the broker cannot be
// reached. Delivery is at most once.
func SendRequestTo[Resp any](ctx context.Context, srv *Server, sessionID string, req Request[Resp]) (Resp, error) {
	var zero Resp
	if s, ok := srv.Session(sessionID); ok {
		return SendRequest(ctx, s, req)
	}
	n := srv.node
	if n == nil {
		return zero, ErrNoSession
	}
	nodeID := nodeOf(sessionID)
	if nodeID == "" || nodeID == n.id {
		return zero, ErrNoSession
	}
	name := TypeName(req)
	if err := ctx.Err(); err != nil {
		return zero, callError(err, name)
	}
	if n.subErr != nil {
		return zero, n.subErr
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, srv.cfg.requestTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	m := cluster.Msg{
		Kind: cluster.KindRequest, Origin: []byte(n.id), CallID: n.nextID.Add(1), Session: []byte(sessionID),
		TimeoutMs: uint64(max(time.Until(dl).Milliseconds(), 1)),
	}
	data, err := n.encodeMsg(&m, ctx, req)
	if err != nil {
		return zero, err
	}
	var r cluster.Reply
	if err := n.request(ctx, nodeID, sessionID, data, &r); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			if cerr == context.Canceled {
				n.cancelRemote(nodeID, m.CallID)
			}
			return zero, callError(cerr, name)
		}
		return zero, err
	}
	if r.Status != cluster.StatusOK {
		return zero, replyError(&r, nodeID)
	}
	ser := n.sers[string(r.Serializer)]
	if ser == nil {
		return zero, fmt.Errorf("netmsg: the response to %s came in serializer %q, which this server lacks (give every node the same serializers)", name, r.Serializer)
	}
	resp, err := decodeAs[Resp](ser, r.Data)
	if err != nil {
		return zero, Errorf(CodeInvalidArgument, "cannot decode response %T: %v", zero, err)
	}
	return resp, nil
}

// encodeMsg fills m's type, metadata and payloads (one per serializer of
// the server: the node does not know which one the session uses) and
// encodes it.
func (n *node) encodeMsg(m *cluster.Msg, ctx context.Context, v any) ([]byte, error) {
	m.Type = []byte(TypeName(v))
	md := outgoingMetadata(ctx)
	if len(md) > wire.MaxMetadataEntries {
		return nil, fmt.Errorf("netmsg: cannot send %s with %d metadata entries: at most %d", m.Type, len(md), wire.MaxMetadataEntries)
	}
	for k, val := range md {
		m.Metadata = append(m.Metadata, cluster.KV{Key: []byte(k), Value: []byte(val)})
	}
	var errs []error
	for _, ser := range n.srv.cfg.serializers {
		if _, done := m.Payload(ser.Name()); done {
			continue
		}
		p := cluster.Payload{Serializer: []byte(ser.Name())}
		data, err := ser.Marshal(v)
		if err != nil {
			err = fmt.Errorf("netmsg: cannot encode %s with the %s serializer: %w", m.Type, ser.Name(), err)
			errs = append(errs, err)
			p.Err = []byte(err.Error())
		} else {
			p.Data = data
		}
		m.Payloads = append(m.Payloads, p)
		if len(m.Payloads) == cluster.MaxPayloads {
			break
		}
	}
	if len(errs) == len(m.Payloads) {
		return nil, errors.Join(errs...)
	}
	return m.Append(nil), nil
}

// request asks the node nodeID and decodes its reply into r.
func (n *node) request(ctx context.Context, nodeID, sessionID string, data []byte, r *cluster.Reply) error {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := &remoteCall{cancel: cancel}
	n.track(nodeID, c)
	rdata, err := n.b.Request(rctx, subjectNodeRoot+nodeID, data)
	n.untrack(nodeID, c)
	switch {
	case err == nil:
	case errors.Is(err, ErrNoResponders) && n.present(nodeID):
		return fmt.Errorf("netmsg: session %s: %w: its node %s is in the cluster but not answering (reconnecting to the broker?)", sessionID, ErrBrokerUnavailable, nodeID)
	case errors.Is(err, ErrNoResponders):
		return ErrNoSession // no node has the id (its node is gone)
	case ctx.Err() != nil:
		return fmt.Errorf("netmsg: session %s on node %s: %w", sessionID, nodeID, ctx.Err())
	case context.Cause(rctx) == errNodeGone:
		return fmt.Errorf("netmsg: session %s: its node %s left the cluster while the call waited: %w", sessionID, nodeID, ErrNoSession)
	default:
		return fmt.Errorf("netmsg: session %s on node %s: %w", sessionID, nodeID, err)
	}
	if err := r.Decode(rdata); err != nil {
		return fmt.Errorf("netmsg: node %s answered for session %s: %w", nodeID, sessionID, err)
	}
	return nil
}

// cancelRemote tells node nodeID that the caller of request id gave up.
func (n *node) cancelRemote(nodeID string, id uint64) {
	m := cluster.Msg{Kind: cluster.KindCancel, Origin: []byte(n.id), CallID: id}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.b.Publish(ctx, subjectNodeRoot+nodeID, m.Append(nil)); err != nil {
		n.srv.cfg.logger.Debug("netmsg: could not cancel a request on another node", "node", nodeID, "err", err)
	}
}

// replyError turns a reply into what the call returns.
func replyError(r *cluster.Reply, nodeID string) error {
	switch r.Status {
	case cluster.StatusOK:
		return nil
	case cluster.StatusNoSession:
		return ErrNoSession
	case cluster.StatusError:
		return &Error{Code: Code(r.Code), Message: string(r.Text)}
	case cluster.StatusClosed:
		return &CloseError{Reason: CloseReason(r.Reason >> 1), Remote: r.Reason&1 == 1, Code: uint16(r.Code), Text: string(r.Text)}
	}
	if r.Code == 1 {
		return fmt.Errorf("%w (on node %s): %s", ErrMessageTooLarge, nodeID, r.Text)
	}
	return fmt.Errorf("netmsg: on node %s: %s", nodeID, r.Text)
}

// ---- the answering side ----

// handleNode runs on the broker's delivery for what other nodes send to this
// node's sessions. Nothing here waits: a request is handed to a goroutine.
func (n *node) handleNode(data []byte, reply func([]byte) error) {
	if !n.gate.enter() {
		n.answer(reply, &cluster.Reply{Status: cluster.StatusNoSession})
		return
	}
	defer n.gate.leave()
	var m cluster.Msg
	if err := m.Decode(data); err != nil {
		n.srv.cfg.logger.Warn("netmsg: dropped a malformed message from the broker", "err", err)
		n.answer(reply, &cluster.Reply{Status: cluster.StatusFailed, Text: []byte(err.Error())})
		return
	}
	switch m.Kind {
	case cluster.KindSend:
		n.answer(reply, n.send(&m))
	case cluster.KindRequest:
		n.startRequest(&m, reply)
	case cluster.KindCancel:
		n.fwdMu.Lock()
		cancel := n.forward[fwdKey{string(m.Origin), m.CallID}]
		n.fwdMu.Unlock()
		if cancel != nil {
			cancel()
		}
	default:
		n.answer(reply, &cluster.Reply{Status: cluster.StatusFailed, Text: []byte("netmsg: unexpected " + strconv.Itoa(int(m.Kind)) + " on a node subject")})
	}
}

func (n *node) answer(reply func([]byte) error, r *cluster.Reply) {
	if reply == nil {
		return
	}
	if err := reply(r.Append(nil)); err != nil {
		n.srv.cfg.logger.Debug("netmsg: could not answer another node", "err", err)
	}
}

// payloadFor returns m's payload for session s's serializer.
func payloadFor(s *Session, m *cluster.Msg) (rawPayload, error) {
	p, ok := m.Payload(s.ser.Name())
	switch {
	case !ok:
		return nil, fmt.Errorf("netmsg: cannot send %s to session %s: the sending node has no %s serializer (give every node the same serializers)", m.Type, s.id, s.ser.Name())
	case len(p.Err) > 0:
		return nil, errors.New(string(p.Err))
	}
	return rawPayload(p.Data), nil
}

// frameFor builds the message envelope of m for session s from the payload
// for its serializer.
func (n *node) frameFor(s *Session, m *cluster.Msg, md map[string]string) (*frame, error) {
	p, err := payloadFor(s, m)
	if err != nil {
		return nil, err
	}
	return encodeFrame(s.ser, n.srv.cfg.maxMessageSize, wire.KindMessage, 0, string(m.Type), p, 0, md)
}

func metadataMap(kvs []cluster.KV) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	md := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		md[string(kv.Key)] = string(kv.Value)
	}
	return md
}

// send queues a message another node sent to one of this node's sessions.
func (n *node) send(m *cluster.Msg) *cluster.Reply {
	s, ok := n.srv.Session(string(m.Session))
	if !ok {
		return &cluster.Reply{Status: cluster.StatusNoSession}
	}
	f, err := n.frameFor(s, m, metadataMap(m.Metadata))
	if err == nil {
		err = s.out.push(f)
	}
	return failureReply(err)
}

// failureReply describes err (nil: success) for the calling node.
func failureReply(err error) *cluster.Reply {
	if err == nil {
		return &cluster.Reply{Status: cluster.StatusOK}
	}
	var ce *CloseError
	var e *Error
	switch {
	case errors.As(err, &ce):
		reason := uint64(ce.Reason) << 1
		if ce.Remote {
			reason |= 1
		}
		return &cluster.Reply{Status: cluster.StatusClosed, Code: uint64(ce.Code), Reason: reason, Text: []byte(ce.Text)}
	case errors.As(err, &e):
		return &cluster.Reply{Status: cluster.StatusError, Code: uint64(e.Code), Text: []byte(e.Message)}
	case errors.Is(err, ErrMessageTooLarge):
		return &cluster.Reply{Status: cluster.StatusFailed, Code: 1, Text: []byte(err.Error())}
	}
	return &cluster.Reply{Status: cluster.StatusFailed, Text: []byte(err.Error())}
}

// startRequest forwards a request of another node to one of this node's
// sessions, on a goroutine of the server, and replies with the answer.
func (n *node) startRequest(m *cluster.Msg, reply func([]byte) error) {
	s, ok := n.srv.Session(string(m.Session))
	if !ok {
		n.answer(reply, &cluster.Reply{Status: cluster.StatusNoSession})
		return
	}
	p, err := payloadFor(s, m)
	if err != nil {
		n.answer(reply, failureReply(err))
		return
	}
	timeout := msDuration(m.TimeoutMs)
	if m.TimeoutMs == 0 {
		timeout = n.srv.cfg.requestTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	md := metadataMap(m.Metadata)
	key := fwdKey{string(m.Origin), m.CallID}
	n.fwdMu.Lock()
	n.forward[key] = cancel
	n.fwdMu.Unlock()
	name := string(m.Type) // m aliases data, which is this handler's own
	n.srv.ep.spawn(func() {
		defer n.endForward(key, cancel)
		in, err := s.callNamed(ctx, name, p, md, time.Time{})
		if err != nil {
			n.answer(reply, failureReply(err))
			return
		}
		r := cluster.Reply{Status: cluster.StatusOK, Serializer: []byte(s.ser.Name()), Data: in.env.Payload}
		data := r.Append(nil)
		in.recycle()
		if err := reply(data); err != nil {
			n.srv.cfg.logger.Debug("netmsg: could not answer another node", "err", err)
		}
	})
}

func (n *node) endForward(key fwdKey, cancel context.CancelFunc) {
	n.fwdMu.Lock()
	delete(n.forward, key)
	n.fwdMu.Unlock()
	cancel()
}

// ---- broadcasts ----

// groupToken returns the subject token of a group: the name itself when it
// is short and made of letters, digits, '-' and '_', else a hash of it
// (the message names its group, so two names with one token only cost
// traffic, never a wrong delivery).
func groupToken(name string) string {
	safe := name != "" && len(name) <= 64
	for i := 0; safe && i < len(name); i++ {
		c := name[i]
		safe = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	if safe {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "~" + hex.EncodeToString(sum[:16])
}

func broadcastSubject(t fanTarget) string {
	if t.all {
		return subjectAll
	}
	return subjectGroupRoot + groupToken(t.group)
}

// encodeBroadcast encodes m's value once per serializer of the server, into
// m (for this node's sessions) and into the message for the other nodes,
// which it returns (nil when there is nothing to publish).
func (n *node) encodeBroadcast(t fanTarget, m *fanMsg) []byte {
	m.encoded = make(map[string][]byte, len(n.sers))
	cm := cluster.Msg{Kind: cluster.KindBroadcast, Origin: []byte(n.id), Group: []byte(t.group), Type: []byte(m.name)}
	if t.all {
		cm.Kind, cm.Group = cluster.KindBroadcastAll, nil
	}
	ok := 0
	for _, ser := range n.srv.cfg.serializers {
		name := ser.Name()
		if _, done := m.encoded[name]; done || m.encodeErrs[name] != nil || len(cm.Payloads) == cluster.MaxPayloads {
			continue
		}
		p := cluster.Payload{Serializer: []byte(name)}
		f, err := encodeFrame(ser, m.limit, wire.KindMessage, 0, m.name, m.v, 0, m.md)
		if err != nil {
			if m.encodeErrs == nil {
				m.encodeErrs = make(map[string]error)
			}
			m.encodeErrs[name] = err
			p.Err = []byte(err.Error())
		} else {
			env := bytes.Clone(f.b)
			f.release()
			m.encoded[name] = env
			p.Data = env
			ok++
		}
		cm.Payloads = append(cm.Payloads, p)
	}
	if ok == 0 || n.subErr != nil {
		return nil
	}
	return cm.Append(nil)
}

// publishBroadcast sends an encoded broadcast to the other nodes.
func (n *node) publishBroadcast(ctx context.Context, t fanTarget, data []byte) error {
	if n.subErr != nil {
		return fmt.Errorf("netmsg: the broadcast reached this node's sessions only: %w", n.subErr)
	}
	if data == nil {
		return nil // nothing encoded: the error is the local fan-out's
	}
	if err := n.b.Publish(ctx, broadcastSubject(t), data); err != nil {
		return fmt.Errorf("netmsg: the broadcast reached this node's sessions only: %w", err)
	}
	return nil
}

// handleBroadcast runs on the broker's delivery for a broadcast of another
// node: this node's sessions, or the group's members here, get it.
func (n *node) handleBroadcast(data []byte, _ func([]byte) error) {
	if !n.gate.enter() {
		return
	}
	defer n.gate.leave()
	var m cluster.Msg
	if err := m.Decode(data); err != nil || (m.Kind != cluster.KindBroadcast && m.Kind != cluster.KindBroadcastAll) {
		n.srv.cfg.logger.Warn("netmsg: dropped a malformed broadcast from the broker", "err", err)
		return
	}
	if string(m.Origin) == n.id {
		return // this node's own: its sessions have it already
	}
	t := fanTarget{all: m.Kind == cluster.KindBroadcastAll, group: string(m.Group)}
	fm := fanMsg{name: string(m.Type), limit: n.srv.cfg.maxMessageSize, encoded: make(map[string][]byte, len(m.Payloads))}
	for _, p := range m.Payloads {
		if len(p.Err) > 0 {
			if fm.encodeErrs == nil {
				fm.encodeErrs = make(map[string]error)
			}
			fm.encodeErrs[string(p.Serializer)] = errors.New(string(p.Err))
			continue
		}
		fm.encoded[string(p.Serializer)] = p.Data
	}
	if _, err := n.srv.fanOut(t, &fm, exceptSet{}); err != nil {
		n.srv.cfg.logger.Warn("netmsg: a broadcast of another node did not reach every session here", "type", fm.name, "group", t.group, "err", err)
	}
}

// ---- group subscriptions ----

// syncGroup subscribes to the group's broadcasts while it has members on
// this server, and unsubscribes once it has none. Calls are serialized, and
// each looks at the membership when it runs, so the last one leaves the
// subscription as the membership is.
func (n *node) syncGroup(name string) {
	n.groupMu.Lock()
	defer n.groupMu.Unlock()
	if n.groupsClosed || n.subErr != nil {
		return
	}
	want := n.srv.groups.len(name) > 0
	unsub, have := n.groupSubs[name]
	switch {
	case want && !have:
		u, err := n.b.Subscribe(subjectGroupRoot+groupToken(name), n.handleBroadcast)
		if err != nil {
			n.srv.cfg.logger.Error("netmsg: subscribing to a group's broadcasts from other nodes failed; its members here will not get them", "group", name, "err", err)
			return
		}
		n.groupSubs[name] = u
	case !want && have:
		delete(n.groupSubs, name)
		unsub()
	}
}

// groupEmptied has the node's goroutine unsubscribe from the group (not the
// caller: it may be a read loop).
func (n *node) groupEmptied(name string) {
	n.dirtyMu.Lock()
	if n.dirty == nil {
		n.dirty = make(map[string]struct{})
	}
	n.dirty[name] = struct{}{}
	n.dirtyMu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// syncDirty syncs the groups that emptied.
func (n *node) syncDirty() {
	n.dirtyMu.Lock()
	dirty := n.dirty
	n.dirty = nil
	n.dirtyMu.Unlock()
	for name := range dirty {
		n.syncGroup(name)
	}
}

// closeGroups unsubscribes from every group.
func (n *node) closeGroups() {
	n.groupMu.Lock()
	defer n.groupMu.Unlock()
	n.groupsClosed = true
	for name, unsub := range n.groupSubs {
		unsub()
		delete(n.groupSubs, name)
	}
}

// ---- gate ----

// gate lets broker callbacks in until it closes, and close waits for those
// inside: after it, no callback starts a goroutine of the server.
type gate struct {
	mu     sync.Mutex
	idle   sync.Cond
	n      int
	closed bool
}

func (g *gate) init() { g.idle.L = &g.mu }

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	g.n--
	if g.n == 0 {
		g.idle.Broadcast()
	}
	g.mu.Unlock()
}

func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	for g.n > 0 {
		g.idle.Wait()
	}
	g.mu.Unlock()
}
