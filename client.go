package netmsg

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg/internal/transport"
	"github.com/netmsg/netmsg/serializer"
)

// ConnState is the state of a Client's connection.
type ConnState int32

// The client states.
const (
	StateDisconnected ConnState = iota // no connection, none being made
	StateConnecting                    // dialling, in the handshake, in OnConnect, or backing off
	StateConnected                     // a session is up and OnConnect has returned
	StateClosed                        // Close was called, or reconnecting stopped for good
)

// Deprecated: the round-1 names of the states, kept so that code written
// against them still compiles. Use StateDisconnected, StateConnecting,
// StateConnected and StateClosed.
const (
	Disconnected = StateDisconnected
	Connecting   = StateConnecting
	Connected    = StateConnected
	Closed       = StateClosed
)

// String returns the state's name.
func (s ConnState) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateClosed:
		return "closed"
	}
	return "conn state " + strconv.Itoa(int(s))
}

// HandshakeError is returned by Connect when the server refused the WebSocket
// handshake; Status and Body are the server's answer.
type HandshakeError struct {
	Status int
	Body   string
	Err    error
}

// Error includes the server's status and text.
func (e *HandshakeError) Error() string {
	msg := "netmsg: handshake refused: " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Unwrap returns the underlying error, if any.
func (e *HandshakeError) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help: the server refused the
// client's credentials (401), its origin or identity (403), or every
// serializer it offered (400 "no supported serializer"). A reconnecting
// client stops on such a refusal and reports it (Client.Err).
func (e *HandshakeError) Permanent() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden ||
		(e.Status == http.StatusBadRequest && strings.Contains(e.Body, noSerializerText))
}

// stableConnection is how long a connection must stay up for the reconnect
// backoff to start over from its initial delay.
const stableConnection = 5 * time.Second

// Client is one end of a connection to a Server. It offers one serializer,
// runs its own handlers for what the server sends, and, with WithReconnect,
// reconnects on its own with backoff, running OnConnect after every
// connection.
//
// All methods may be called concurrently, also from the client's own handlers
// and callbacks. The client's state changes in one place: Connect makes the
// first connection, and a supervisor goroutine then watches it, runs
// OnDisconnect and reconnects.
type Client struct {
	ep      endpoint
	cfg     clientConfig
	rawURL  string
	urls    []serverURL // rawURL first, then WithURLs'
	ser     serializer.Serializer
	backoff backoff.BackOff // the client's own copy of WithReconnect's

	// next is the index in urls of the server the next attempt dials. Only
	// the goroutine making connections (Connect or the supervisor) uses it.
	next int
	// cur is the index in urls of the server of the current or last
	// connection.
	cur atomic.Int32

	ctx       context.Context // cancelled by Close: ends dials, waits and OnConnect
	cancelCtx context.CancelFunc

	mu      sync.Mutex
	state   ConnState
	sess    *Session      // the current session, while StateConnected
	setup   *Session      // a session still in OnConnect, not yet current
	ready   chan struct{} // closed while StateConnected; replaced when the connection ends
	running bool          // Connect or the supervisor is at work
	err     error         // why the client stopped, once done is closed

	waiters   atomic.Int64 // Close calls waiting for goroutines
	closeOnce sync.Once
	closeErr  error
	doneOnce  sync.Once
	done      chan struct{}
	exited    chan struct{} // closed once Close has finished
}

// serverURL is one server a client may connect to.
type serverURL struct {
	raw string
	u   *url.URL
}

// NewClient returns a client for rawURL (ws:// or wss://). It does not
// connect; call Connect. WithURLs adds servers to try when reconnecting.
func NewClient(rawURL string, opts ...ClientOption) *Client {
	c := &Client{
		cfg:    clientConfig{config: defaultConfig(), dialTimeout: DefaultDialTimeout},
		rawURL: rawURL,
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for _, o := range opts {
		o.applyClient(&c.cfg)
	}
	c.ep.init(&c.cfg.config)
	c.ep.client = true
	c.ep.detached = c.sessionEnded
	c.ser = c.cfg.serializers[0]
	for _, raw := range append([]string{rawURL}, c.cfg.urls...) {
		u, _ := url.Parse(raw)
		c.urls = append(c.urls, serverURL{raw: raw, u: u})
	}
	if c.cfg.reconnect != nil {
		c.backoff = cloneBackOff(c.cfg.reconnect)
	}
	c.ctx, c.cancelCtx = context.WithCancel(context.Background())
	return c
}

func (c *Client) handlerRegistry() *registry { return &c.ep.reg }

// Stats returns the client's counters.
func (c *Client) Stats() Stats { return c.ep.statsSnapshot() }

// State returns the connection's state.
func (c *Client) State() ConnState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Session returns the current session, or nil while not connected.
func (c *Client) Session() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != StateConnected || c.sess == nil || c.sess.isClosing() {
		return nil
	}
	return c.sess
}

// Done returns a channel closed when the client will not connect again: after
// Close, or when reconnecting stopped for good (a policy close, a permanent
// handshake refusal, or a backoff that gave up). Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped, once Done is closed; nil before.
func (c *Client) Err() error {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.err
	default:
		return nil
	}
}

// Connect makes the first connection: it dials, completes the handshake and
// runs OnConnect. Cancelling ctx abandons the attempt (also mid-dial). With
// WithReconnect a failed first attempt is retried on the backoff until ctx
// ends or the server refuses the client for good (a permanent
// *HandshakeError); once connected, the client keeps itself connected until
// Close. Connect may be called again after a connection without reconnect
// has ended.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.state == StateClosed:
		c.mu.Unlock()
		return ErrClosed
	case c.running || c.state != StateDisconnected:
		c.mu.Unlock()
		return errors.New("netmsg: Connect called while already connected or connecting")
	}
	c.state = StateConnecting
	c.running = true
	c.mu.Unlock()

	ctx, cancel := mergeCancel(ctx, c.ctx)
	defer cancel()
	s, err := c.connectOnce(ctx)
	if c.backoff == nil {
		// Without reconnect, each other server once, in turn.
		for range len(c.urls) - 1 {
			if err == nil || !retryable(err) || ctx.Err() != nil {
				break
			}
			c.advance()
			s, err = c.connectOnce(ctx)
		}
	}
	if err != nil && c.backoff != nil && retryable(err) && ctx.Err() == nil {
		c.backoff.Reset()
		c.advance()
		s, err = c.retry(ctx, err)
	}
	if err != nil {
		c.mu.Lock()
		if c.state == StateConnecting {
			c.state = StateDisconnected
		}
		c.running = false
		c.wakeWaiters()
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return err
	}
	c.ep.spawn(func() { c.supervise(s) })
	return nil
}

// advance makes the next attempt dial the next server in turn (WithURLs).
func (c *Client) advance() { c.next = (c.next + 1) % len(c.urls) }

// URL returns the URL of the server of the current connection, or of the
// last one when there is none (with WithURLs, one of several).
func (c *Client) URL() string { return c.urls[c.cur.Load()].raw }

// retryable reports whether another attempt can succeed.
func retryable(err error) bool {
	var he *HandshakeError
	return !(errors.As(err, &he) && he.Permanent())
}

// mergeCancel returns a context with a's values and deadline that also ends
// when b ends.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(a)
	stop := context.AfterFunc(b, func() { cancel(context.Cause(b)) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// onConnectKey marks OnConnect's ctx, so that a call on the Client itself
// from inside OnConnect (which would wait for OnConnect to finish) fails at
// once instead.
type onConnectKey struct{}

// connectOnce dials, shakes hands and runs OnConnect. On success the session
// is current and the state StateConnected.
func (c *Client) connectOnce(ctx context.Context) (*Session, error) {
	s, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		c.mu.Lock()
		if c.setup == s {
			c.setup = nil
		}
		c.mu.Unlock()
	}()
	if f := c.cfg.onConnect; f != nil {
		octx, cancel := mergeCancel(s.Context(), ctx)
		octx = context.WithValue(octx, onConnectKey{}, c)
		err := errors.New("OnConnect panicked")
		c.ep.callback("OnConnect", func() { err = f(octx, s) })
		cancel()
		if err != nil {
			c.abandon(s, "on-connect failed")
			return nil, fmt.Errorf("netmsg: OnConnect: %w", err)
		}
	}
	c.mu.Lock()
	if c.state == StateClosed {
		c.mu.Unlock()
		c.abandon(s, "client closed")
		return nil, ErrClosed
	}
	if s.isClosing() {
		// The session ended while OnConnect ran: it never becomes current.
		c.mu.Unlock()
		c.abandon(s, "")
		return nil, s.closedErr()
	}
	c.sess = s
	c.state = StateConnected
	close(c.ready)
	c.mu.Unlock()
	return s, nil
}

// abandon closes a session that never became current (its OnConnect failed,
// or it ended meanwhile) and, once it has ended, reports it to OnDisconnect:
// every session that completed the handshake gets exactly one.
func (c *Client) abandon(s *Session, reason string) {
	if reason != "" {
		_ = s.Close(reason)
	}
	<-s.doneChan()
	c.disconnected(s.Err())
}

// disconnected runs OnDisconnect for a session that has ended.
func (c *Client) disconnected(ce *CloseError) {
	if f := c.cfg.onDisconnect; f != nil {
		c.ep.callback("OnDisconnect", func() { f(ce) })
	}
}

// dial opens a connection and completes the WebSocket handshake, honouring ctx
// throughout, the dial timeout for dialling and TLS, and the handshake timeout
// for the WebSocket handshake.
func (c *Client) dial(ctx context.Context) (*Session, error) {
	target := c.urls[c.next]
	u := target.u
	if u == nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return nil, fmt.Errorf("netmsg: client URL %q: want ws:// or wss://", target.raw)
	}
	header := c.cfg.header.Clone()
	if header == nil {
		header = http.Header{}
	}
	header.Set("Sec-WebSocket-Protocol", serializer.Subprotocol(c.ser))
	conn, id, err := transport.Dial(ctx, transport.DialOptions{
		Options:          c.cfg.transportOptions(),
		URL:              u,
		RawURL:           target.raw,
		Header:           header,
		TLS:              c.cfg.tlsConfig,
		DialTimeout:      c.cfg.dialTimeout,
		HandshakeTimeout: c.cfg.handshakeTimeout,
	})
	if err != nil {
		var hr *transport.HandshakeRefused
		if errors.As(err, &hr) {
			return nil, &HandshakeError{Status: hr.Status, Body: hr.Body, Err: hr.Err}
		}
		return nil, err
	}
	if conn.SubProtocol() != serializer.Subprotocol(c.ser) {
		conn.Kill()
		return nil, fmt.Errorf("netmsg: server did not accept subprotocol %s", serializer.Subprotocol(c.ser))
	}
	if id == "" {
		id = newSessionID() // a server that does not send one
	}
	s := newSession(&c.ep, id, conn, c.ser, context.Background())
	c.mu.Lock()
	if c.state == StateClosed {
		c.mu.Unlock()
		conn.Kill()
		return nil, ErrClosed
	}
	c.setup = s
	c.cur.Store(int32(c.next))
	c.mu.Unlock()
	c.ep.observeOpen(s)
	c.ep.startReading(s)
	return s, nil
}

// sessionEnded runs on the session's read loop when its connection has
// ended, before Done closes: by then the client no longer counts as
// connected on it. Only bookkeeping; OnDisconnect runs on the supervisor.
func (c *Client) sessionEnded(s *Session, ce *CloseError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != s {
		return
	}
	c.sess = nil
	if c.state == StateConnected {
		c.state = StateDisconnected
		if c.backoff != nil && ce.ShouldReconnect() {
			c.state = StateConnecting
		}
		c.ready = make(chan struct{})
	}
}

// supervise watches the current session and, with WithReconnect, replaces it
// when it ends. It is the only goroutine that moves the client out of
// StateConnected, and it runs OnDisconnect and the reconnect callbacks, in
// order.
func (c *Client) supervise(s *Session) {
	for {
		upAt := time.Now()
		<-s.doneChan() // Close closes the session, so this ends then too
		ce := s.Err()
		reconnect := c.backoff != nil && ce.ShouldReconnect()
		if !reconnect {
			c.mu.Lock()
			c.running = false
			c.mu.Unlock()
		}
		c.disconnected(ce)
		switch {
		case c.ctx.Err() != nil:
			return // closed
		case c.backoff == nil:
			return
		case !reconnect:
			c.stop(ce)
			return
		}
		if time.Since(upAt) >= stableConnection {
			c.backoff.Reset()
		}
		c.advance() // the next server first: this one may be gone
		next, err := c.retry(c.ctx, ce)
		if err != nil {
			if c.ctx.Err() == nil {
				c.cfg.logger.Warn("netmsg: client stopped reconnecting", "err", err)
			}
			c.stop(err)
			return
		}
		s = next
	}
}

// retry makes connection attempts on the backoff until one succeeds, ctx
// ends, the backoff gives up or the server refuses the client for good.
// cause is why the connection is needed: a server's reconnect hint in it is
// a floor for the first delay, and the jittered backoff delay is added on
// top, so that clients told to come back after the same hint do not all
// come back at the same moment.
func (c *Client) retry(ctx context.Context, cause error) (*Session, error) {
	var hint time.Duration
	var ce *CloseError
	if errors.As(cause, &ce) {
		hint = ce.ReconnectAfter()
	}
	for attempt := 1; ; attempt++ {
		d := c.backoff.NextBackOff()
		if d == backoff.Stop {
			return nil, fmt.Errorf("netmsg: reconnect gave up after %d attempts: %w", attempt-1, cause)
		}
		if attempt == 1 {
			d += hint
		}
		if f := c.cfg.onReconnecting; f != nil {
			c.ep.callback("OnReconnecting", func() { f(attempt, d) })
		}
		if f := c.cfg.onAttempt; f != nil {
			a := ReconnectAttempt{Attempt: attempt, Delay: d, Err: cause, URL: c.urls[c.next].raw}
			c.ep.callback("OnReconnectAttempt", func() { f(a) })
		}
		c.ep.observeReconnect(ReconnectAttempt{Attempt: attempt, Delay: d, Err: cause})
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if c.ctx.Err() != nil {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("netmsg: connect: %w (last error: %w)", ctx.Err(), cause)
		}
		c.mu.Lock()
		if c.state == StateClosed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		c.state = StateConnecting
		c.mu.Unlock()
		s, err := c.connectOnce(ctx)
		if err == nil {
			return s, nil
		}
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if !retryable(err) {
			return nil, err
		}
		c.cfg.logger.Debug("netmsg: connection attempt failed", "attempt", attempt, "url", c.urls[c.next].raw, "err", err)
		cause = err
		c.advance()
	}
}

// stop ends the client for good with err.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.state = StateClosed
	c.running = false
	c.wakeWaiters() // callers waiting for a connection see StateClosed
	c.mu.Unlock()
	c.finish(err)
}

// wakeWaiters wakes the calls waiting for a connection so that they look at
// the state again: it closes ready unless it is closed already (while
// connected) and replaces it. c.mu is held.
func (c *Client) wakeWaiters() {
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	c.ready = make(chan struct{})
}

func (c *Client) finish(err error) {
	c.doneOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	})
}

// sessionFor returns the session to send on. While the client reconnects it
// waits for the connection (wait-for-ready) until ctx ends, unless WithFailFast
// is set; without reconnect it fails at once with ErrNotConnected.
func (c *Client) sessionFor(ctx context.Context, deadline time.Time) (*Session, error) {
	var expired <-chan time.Time
	for {
		c.mu.Lock()
		st, s, ready := c.state, c.sess, c.ready
		waiting := c.backoff != nil && !c.cfg.failFast && (c.running || st == StateConnecting)
		c.mu.Unlock()
		switch {
		case st == StateConnected && s != nil && !s.isClosing():
			return s, nil
		case st == StateConnected && s != nil:
			// Closing: the client stops counting as connected on it once
			// its connection has ended.
			select {
			case <-s.doneChan():
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
			}
			continue
		case st == StateClosed:
			return nil, ErrClosed
		case ctx.Value(onConnectKey{}) == c:
			return nil, fmt.Errorf("%w: called on the Client from inside its OnConnect, which the call would wait for; send on the *Session OnConnect was given", ErrNotConnected)
		case !waiting:
			return nil, ErrNotConnected
		}
		if expired == nil && !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		case <-expired:
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, context.DeadlineExceeded)
		case <-c.done:
			return nil, ErrClosed
		}
	}
}

func (c *Client) defaultRequestTimeout() time.Duration { return c.cfg.requestTimeout }

// Send sends a one-way message on the current session; see Session.Send.
// While reconnecting it waits for the connection as SendRequest does, bounded
// by ctx or, without a deadline, the RequestTimeout.
func (c *Client) Send(ctx context.Context, msg any) error {
	var deadline time.Time
	if _, ok := ctx.Deadline(); !ok {
		deadline = time.Now().Add(c.cfg.requestTimeout)
	}
	s, err := c.sessionFor(ctx, deadline)
	if err != nil {
		return err
	}
	return s.Send(ctx, msg)
}

// Close stops reconnecting, closes the session gracefully (what is queued is
// written first) and returns once every goroutine the client started has
// exited. Handlers see their ctx cancelled; Close waits for them up to
// DisconnectTimeout (plus a second) and then returns an error naming those
// still running. Called from one of the client's own handlers or callbacks it
// cannot wait for the one it runs in: it returns once everything else has
// ended. It may be called from any state and from several goroutines; all
// return when the first has finished.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.state = StateClosed
		s, setup := c.sess, c.setup
		c.sess = nil
		c.wakeWaiters()
		c.mu.Unlock()
		c.cancelCtx()
		closing := &CloseError{Reason: CloseNormal, Code: closeCodeNormal, Text: "client closed"}
		if s != nil {
			s.closeWith(closing, closeGraceful)
		}
		if setup != nil {
			// Its OnConnect may be waiting on the session, not on its ctx.
			setup.closeWith(closing, closeGraceful)
		}
		c.ep.stop()
		_, c.closeErr = c.ep.waitGoroutines(c.cfg.disconnectTimeout+time.Second, &c.waiters)
		if c.closeErr != nil {
			c.cfg.logger.Warn("netmsg: "+c.closeErr.Error(), "client", c.rawURL)
		}
		c.finish(ErrClosed)
		close(c.exited)
	})
	<-c.exited
	return c.closeErr
}
