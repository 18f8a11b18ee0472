package netmsg

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/transport"
	"github.com/netmsg/netmsg/serializer"
)

// Server accepts WebSocket connections and runs a Session for each. Mount it
// on any path of any mux (it is an http.Handler), or let ListenAndServe or
// Serve run an http.Server for it. Register handlers with AddMessageHandler
// and AddRequestHandler before or after it starts.
//
// All methods may be called concurrently.
type Server struct {
	ep       endpoint
	cfg      serverConfig
	upgrader *transport.Upgrader
	accepts  map[string]serializer.Serializer // subprotocol → serializer
	protos   []string                         // subprotocols in preference order

	mu       sync.Mutex
	sessions map[string]*Session
	// upgrading holds the ids of sessions whose handshake answer is being
	// written: the client may know its id (and tell others) a moment before
	// the session is registered; Session waits for that moment.
	upgrading map[string]chan struct{}
	groups    groupSet
	closing   bool
	https     []*http.Server

	// handshakes counts ServeHTTP calls in progress; Shutdown waits for them.
	handshakes sync.WaitGroup

	waiters      atomic.Int64 // Shutdown calls waiting for goroutines
	shutdownOnce sync.Once
	shutdownErr  error
	shutdownDone chan struct{}

	node *node // with WithBroker: this server's part in the cluster
}

// NewServer returns a server configured by opts.
func NewServer(opts ...ServerOption) *Server {
	srv := &Server{
		cfg:          serverConfig{config: defaultConfig()},
		accepts:      make(map[string]serializer.Serializer),
		sessions:     make(map[string]*Session),
		shutdownDone: make(chan struct{}),
	}
	for _, o := range opts {
		o.applyServer(&srv.cfg)
	}
	srv.ep.init(&srv.cfg.config)
	srv.ep.groups = &srv.groups
	srv.ep.detached = srv.sessionDetached
	srv.ep.closed = srv.sessionClosed
	for _, s := range srv.cfg.serializers {
		// Revision 2 first: a client offering both gets the one that
		// answers PING envelopes (docs/PROTOCOL.md).
		for _, p := range []string{SubprotocolV2Prefix + s.Name(), serializer.Subprotocol(s)} {
			if _, dup := srv.accepts[p]; !dup {
				srv.accepts[p] = s
				srv.protos = append(srv.protos, p)
			}
		}
	}
	srv.upgrader = transport.NewUpgrader(srv.cfg.transportOptions(), srv.protos, srv.cfg.handshakeTimeout)
	if srv.cfg.broker != nil {
		srv.node = newNode(srv, srv.cfg.broker)
	}
	return srv
}

func (srv *Server) handlerRegistry() *registry { return &srv.ep.reg }

// Stats returns the server's counters.
func (srv *Server) Stats() Stats { return srv.ep.statsSnapshot() }

// ServeHTTP upgrades the request to a WebSocket session. Every check happens
// before the connection is hijacked, so a refusal is a plain HTTP answer: 503
// while shutting down, 403 for a foreign Origin, 400 for a request that is no
// WebSocket handshake or offers no serializer this server accepts, 401 (or an
// *HTTPError's status) when Authorize refuses.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Count the handshake so Shutdown waits for it: net/http does not wait for
	// handlers, and Authorize may take a while.
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		http.Error(w, "netmsg: server is shutting down", http.StatusServiceUnavailable)
		return
	}
	srv.handshakes.Add(1)
	srv.mu.Unlock()
	defer srv.handshakes.Done()

	if !srv.originAllowed(r) {
		http.Error(w, "netmsg: origin not allowed", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		!headerContains(r.Header, "Connection", "upgrade") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "netmsg: expected a WebSocket upgrade request", http.StatusUpgradeRequired)
		return
	}
	if srv.negotiate(r) == "" {
		offered := strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), ", ")
		if offered == "" {
			offered = "none"
		}
		http.Error(w, "netmsg: "+noSerializerText+": client offered "+offered+
			"; server accepts "+strings.Join(srv.protos, ", "), http.StatusBadRequest)
		return
	}
	// The session's base context holds what Authorize returned, and nothing
	// of the HTTP request otherwise: r.Context() would keep net/http's
	// connection and request contexts alive for as long as the session
	// lives (some 300 bytes each).
	base := context.Background()
	if srv.cfg.authorize != nil {
		ctx, err := srv.cfg.authorize(r)
		if err != nil {
			status, msg := http.StatusUnauthorized, "netmsg: unauthorized"
			var he *HTTPError
			if errors.As(err, &he) {
				status = he.Status
				if he.Message != "" {
					msg = he.Message
				}
			}
			http.Error(w, msg, status)
			return
		}
		if ctx != nil {
			base = context.WithoutCancel(ctx)
		}
	}

	id := srv.newSessionID()
	registered := make(chan struct{})
	srv.mu.Lock()
	if srv.upgrading == nil {
		srv.upgrading = make(map[string]chan struct{})
	}
	srv.upgrading[id] = registered
	srv.mu.Unlock()
	conn, err := srv.upgrader.Upgrade(w, r, id)
	if err != nil {
		srv.mu.Lock()
		delete(srv.upgrading, id)
		srv.mu.Unlock()
		close(registered)
		srv.cfg.logger.Debug("netmsg: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	s := newSession(&srv.ep, id, conn, srv.accepts[conn.SubProtocol()], base)
	srv.mu.Lock()
	srv.sessions[id] = s
	delete(srv.upgrading, id)
	closing := srv.closing
	srv.mu.Unlock()
	close(registered)
	srv.ep.observeOpen(s)
	if open := srv.cfg.onSessionOpen; open != nil && !closing {
		// OnSessionOpen runs before any message or request is handled, but
		// with the session reading, so that it can itself call the client:
		// responses bypass the held mailbox. OnSessionClose comes after it
		// on the same callback queue.
		s.mbox.hold()
		s.cbq.post("OnSessionOpen", func() { open(s) })
		s.cbq.post("", s.mbox.release)
	}
	srv.ep.startReading(s)
	if closing {
		// Shutdown began while this handshake completed (the client may
		// already count as connected): the same 1001 and hint as the rest.
		s.closeWith(&CloseError{Reason: CloseServerShutdown, Code: closeCodeGoingAway, Text: shutdownText}, closeHard)
	}
}

// negotiate returns the subprotocol gws will pick: the first of the server's,
// in its order of preference, that the client offered.
func (srv *Server) negotiate(r *http.Request) string {
	// Only the first header line: gws reads the offer with Header.Get, and
	// what is negotiated here must be what gws then picks, so that a refusal
	// is still an HTTP answer and never one after the hijack.
	var offered []string
	for _, p := range strings.Split(r.Header.Get("Sec-WebSocket-Protocol"), ",") {
		offered = append(offered, strings.TrimSpace(p))
	}
	for _, p := range srv.protos {
		for _, o := range offered {
			if o == p {
				return p
			}
		}
	}
	return ""
}

func headerContains(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// originAllowed applies WithAllowedOrigins, or by default accepts requests
// without an Origin header and browsers whose origin is the requested host.
func (srv *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(srv.cfg.allowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	for _, pattern := range srv.cfg.allowedOrigins {
		if pattern == "*" || strings.EqualFold(pattern, origin) || strings.EqualFold(pattern, u.Host) {
			return true
		}
		if ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}

// newSessionID returns the id of a new session: in a cluster it names the
// node, so that other nodes find the session.
func (srv *Server) newSessionID() string {
	if srv.node != nil {
		return srv.node.sessionID()
	}
	return newSessionID()
}

// sessionDetached is the server's bookkeeping for a session whose
// connection has ended: it is no longer one of the server's sessions, nor a
// member of any group.
func (srv *Server) sessionDetached(s *Session, _ *CloseError) {
	srv.mu.Lock()
	delete(srv.sessions, s.id)
	srv.mu.Unlock()
	emptied := srv.groups.leaveAll(s, nil)
	if srv.node != nil {
		for _, name := range emptied {
			srv.node.groupEmptied(name)
		}
	}
}

// sessionClosed reports a closed session once its drain is over, on its
// callback queue: after OnSessionOpen has returned, and after the handlers of
// what arrived before the close.
func (srv *Server) sessionClosed(s *Session, ce *CloseError) {
	if f := srv.cfg.onSessionClose; f != nil {
		s.cbq.post("OnSessionClose", func() { f(s, ce) })
	}
}

// ListenAndServe listens on addr and serves WebSocket sessions at every path
// until Shutdown. It returns http.ErrServerClosed after Shutdown.
func (srv *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return srv.Serve(l)
}

// Serve serves WebSocket sessions at every path on l until Shutdown. It
// returns http.ErrServerClosed after Shutdown.
func (srv *Server) Serve(l net.Listener) error {
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: srv.cfg.handshakeTimeout,
		IdleTimeout:       srv.cfg.handshakeTimeout,
		ErrorLog:          nil,
	}
	srv.mu.Lock()
	if srv.closing {
		srv.mu.Unlock()
		_ = l.Close()
		return http.ErrServerClosed
	}
	srv.https = append(srv.https, hs)
	srv.mu.Unlock()
	return hs.Serve(l)
}

// Sessions iterates over the sessions open when it is called.
func (srv *Server) Sessions() iter.Seq[*Session] {
	srv.mu.Lock()
	list := make([]*Session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		list = append(list, s)
	}
	srv.mu.Unlock()
	return func(yield func(*Session) bool) {
		for _, s := range list {
			if !yield(s) {
				return
			}
		}
	}
}

// Session returns the open session with the given ID.
//
// A client knows its session id as soon as the handshake answer arrives,
// which is a moment before the server has registered the session; for an id
// in that moment Session waits until it is registered.
func (srv *Server) Session(id string) (*Session, bool) {
	srv.mu.Lock()
	s, ok := srv.sessions[id]
	registered := srv.upgrading[id]
	srv.mu.Unlock()
	if ok || registered == nil {
		return s, ok
	}
	<-registered // the handshake answer is being written, within the handshake timeout
	srv.mu.Lock()
	s, ok = srv.sessions[id]
	srv.mu.Unlock()
	return s, ok
}

// SessionCount returns the number of open sessions.
func (srv *Server) SessionCount() int {
	srv.mu.Lock()
	n := len(srv.sessions)
	srv.mu.Unlock()
	return n
}

// noSerializerText is in the 400 answer to a client that offers no
// serializer the server accepts; the client recognises it as permanent.
const noSerializerText = "no supported serializer"

// SubprotocolV2Prefix is the WebSocket subprotocol prefix of protocol
// revision 2: revision 1 (serializer.SubprotocolPrefix, "netmsg.v1.") plus
// the PING and PONG envelopes that let a peer without access to WebSocket
// ping frames (a browser) probe the link. A server accepts
// "netmsg.v2.<serializer>" and "netmsg.v1.<serializer>" for each of its
// serializers and prefers revision 2; both sides of the library answer a PING
// envelope on either revision. See docs/PROTOCOL.md.
const SubprotocolV2Prefix = "netmsg.v2."

// shutdownHint is the reconnect hint a draining server sends in its 1001 close.
const shutdownHint = 500 * time.Millisecond

// shutdownText is the reason text of that close, hint included.
var shutdownText = "server shutting down; " + reconnectHintKey + shutdownHint.String()

// Shutdown drains the server: new connections are refused with 503 and new
// requests are answered with CodeUnavailable, handlers already running finish
// and their responses are delivered, then every session is closed with 1001
// (CloseServerShutdown) and a reconnect hint. Messages that arrive once the
// drain has begun are dropped and counted (Stats.DroppedDuringShutdown), so
// steady traffic cannot hold the drain open. When ctx ends first the rest is
// closed at once, still with 1001. Shutdown returns once every goroutine the
// server started has exited; calling it again waits for the first call.
//
// Called from one of the server's own handlers or callbacks, Shutdown cannot
// wait for the goroutine it runs on: it then returns once ctx has ended and a
// further DisconnectTimeout has passed, with an error saying goroutines are
// still running. Give it a ctx with a deadline there, or call it on a
// goroutine of its own.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.shutdownOnce.Do(func() {
		defer close(srv.shutdownDone)
		srv.shutdownErr = srv.shutdown(ctx)
	})
	<-srv.shutdownDone
	return srv.shutdownErr
}

func (srv *Server) shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closing = true
	srv.ep.draining.Store(true)
	https := srv.https
	srv.mu.Unlock()
	if srv.node != nil {
		// Other nodes get "no session" for this node's sessions from now on.
		srv.node.close()
	}
	for _, hs := range https {
		_ = hs.Close() // listeners and idle HTTP connections; hijacked ones are ours
	}

	// Let queued and running handlers finish.
	var err error
	tick := time.NewTicker(5 * time.Millisecond)
	for srv.ep.active.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
		}
	}
	tick.Stop()

	for s := range srv.Sessions() {
		// Graceful after a complete drain; otherwise at once, but still with
		// 1001 and the hint, so clients know to come back.
		mode := closeGraceful
		if err != nil {
			mode = closeHard
		}
		s.closeWith(&CloseError{Reason: CloseServerShutdown, Code: closeCodeGoingAway, Text: shutdownText}, mode)
	}
	srv.ep.stop()
	// No handshake can register a session once they are done (closing is
	// set), so after them the session goroutines are all counted.
	hs := make(chan struct{})
	go func() { srv.handshakes.Wait(); close(hs) }()
	select {
	case <-hs:
	case <-ctx.Done():
	}
	// Every session closes within DisconnectTimeout, and the drain of what
	// arrived before ends then too: wait that long (plus a margin), or
	// until ctx ends, whichever is first.
	wait := srv.cfg.disconnectTimeout + time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, max(time.Until(dl), 0))
	}
	settled, werr := srv.ep.waitGoroutines(wait, &srv.waiters)
	if werr == nil && !settled {
		return err
	}
	if err == nil && werr != nil {
		err = ctx.Err()
	}
	if werr != nil {
		for s := range srv.Sessions() {
			// Every session is closing already; those still in a graceful
			// close get a second at most for their close frame.
			s.out.hurry()
		}
		// Every connection is closed now, so the goroutines end promptly
		// unless one is stuck in user code (an Authorize or handler that
		// ignores its ctx): then give up waiting after a grace period.
		settled, werr = srv.ep.waitGoroutines(srv.cfg.disconnectTimeout, &srv.waiters)
	}
	switch {
	case werr != nil && err != nil:
		return fmt.Errorf("netmsg: Shutdown: %w; %w", err, werr)
	case werr != nil:
		return fmt.Errorf("netmsg: Shutdown: %w", werr)
	case settled && err != nil:
		return fmt.Errorf("netmsg: Shutdown: %w; goroutines still running: %s (called from a handler or callback?)", err, srv.ep.running())
	}
	return err
}
