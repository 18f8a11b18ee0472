package netmsg

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg/serializer"
)

// ConnState is the state of a Client's connection.
type ConnState int32

// The client states.
const (
	Disconnected ConnState = iota // no connection, none being made
	Connecting                    // dialling, in the handshake, in OnConnect, or backing off
	Connected                     // a session is up and OnConnect has returned
	Closed                        // Close was called, or reconnecting stopped for good
)

// String returns the state's name.
func (s ConnState) String() string {
	switch s {
	case Disconnected:
		return "disconnected"
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Closed:
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

// final reports whether retrying cannot help: the server refused us.
func (e *HandshakeError) final() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
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
// and callbacks.
type Client struct {
	ep     endpoint
	cfg    clientConfig
	rawURL string
	url    *url.URL
	ser    serializer.Serializer

	ctx       context.Context // cancelled by Close: ends dials, waits and OnConnect
	cancelCtx context.CancelFunc

	mu      sync.Mutex
	state   ConnState
	sess    *Session
	setup   *Session      // a session still in OnConnect, not yet current
	ready   chan struct{} // closed while Connected; replaced when the connection ends
	running bool          // the supervisor is running
	err     error         // why the client stopped, once done is closed

	// callbacks maps the goroutines running one of the client's callbacks
	// (OnConnect, OnDisconnect, OnReconnecting) to how deep they are in, so
	// that Close called from a callback does not wait for itself.
	callbacks map[uint64]int

	closeOnce sync.Once
	doneOnce  sync.Once
	done      chan struct{}
	exited    chan struct{} // closed once Close has seen every goroutine exit
}

// NewClient returns a client for rawURL (ws:// or wss://). It does not
// connect; call Connect.
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
	// All of it before Done closes: the supervisor, woken by Done, then
	// reconnects only after OnDisconnect has returned.
	c.ep.detached = c.sessionClosed
	c.ser = c.cfg.serializers[0]
	c.url, _ = url.Parse(rawURL)
	c.ctx, c.cancelCtx = context.WithCancel(context.Background())
	return c
}

func (c *Client) handlerRegistry() *registry { return &c.ep.reg }

// Stats returns the client's counters.
func (c *Client) Stats() Stats { return c.ep.stats() }

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
	if c.state != Connected {
		return nil
	}
	return c.sess
}

// Done returns a channel closed when the client will not connect again: after
// Close, or when reconnecting stopped for good (a policy close, a 401/403
// handshake, or a backoff that gave up). Err says why.
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
// WithReconnect the client then keeps itself connected until Close.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.state == Closed:
		c.mu.Unlock()
		return ErrClosed
	case c.running || c.state != Disconnected:
		c.mu.Unlock()
		return errors.New("netmsg: Connect called while already connected or connecting")
	}
	c.state = Connecting
	c.mu.Unlock()

	ctx, cancel := mergeCancel(ctx, c.ctx)
	defer cancel()
	s, err := c.connectOnce(ctx)
	if err != nil {
		c.mu.Lock()
		if c.state == Connecting {
			c.state = Disconnected
		}
		close(c.ready) // wake callers waiting for this connection
		c.ready = make(chan struct{})
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	if c.state == Closed {
		c.mu.Unlock()
		_ = s.Close("client closed")
		return ErrClosed
	}
	c.running = true
	c.ep.wg.Add(1)
	c.mu.Unlock()
	go c.supervise(s)
	return nil
}

// mergeCancel returns a context with a's values and deadline that also ends
// when b ends.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(a)
	stop := context.AfterFunc(b, func() { cancel(context.Cause(b)) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// connectOnce dials, shakes hands and runs OnConnect. On success the session
// is current and the state Connected.
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
		err := errors.New("OnConnect panicked")
		c.inCallback("OnConnect", func() { err = f(octx, s) })
		cancel()
		if err != nil {
			_ = s.Close("on-connect failed")
			return nil, fmt.Errorf("netmsg: OnConnect: %w", err)
		}
	}
	c.mu.Lock()
	if c.state == Closed {
		c.mu.Unlock()
		_ = s.Close("client closed")
		return nil, ErrClosed
	}
	select {
	case <-s.Done():
		c.mu.Unlock()
		return nil, s.closedErr()
	default:
	}
	c.sess = s
	c.state = Connected
	close(c.ready)
	c.mu.Unlock()
	return s, nil
}

// dial opens a connection and completes the WebSocket handshake, honouring ctx
// throughout, the dial timeout for dialling and TLS, and the handshake timeout
// for the WebSocket handshake.
func (c *Client) dial(ctx context.Context) (*Session, error) {
	u := c.url
	if u == nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return nil, fmt.Errorf("netmsg: client URL %q: want ws:// or wss://", c.rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.dialTimeout)
	defer cancel()
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "wss" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("netmsg: dial %s: %w", c.rawURL, err)
	}
	if u.Scheme == "wss" {
		cfg := c.cfg.tlsConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("netmsg: TLS handshake with %s: %w", host, err)
		}
		conn = tc
	}
	// gws's handshake has no context: closing the connection when ctx (or
	// the handshake timeout) ends makes it fail at once.
	ctx, cancelHS := context.WithTimeout(ctx, c.cfg.handshakeTimeout)
	defer cancelHS()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })

	header := c.cfg.header.Clone()
	if header == nil {
		header = http.Header{}
	}
	header.Set("Sec-WebSocket-Protocol", serializer.Subprotocol(c.ser))
	slot := new(sessionSlot)
	gc, resp, err := gws.NewClientFromConn(gwsEvents{}, &gws.ClientOption{
		Addr:                c.rawURL,
		RequestHeader:       header,
		ReadMaxPayloadSize:  c.cfg.maxMessageSize,
		WriteMaxPayloadSize: c.cfg.maxMessageSize + 64,
		PermessageDeflate:   gws.PermessageDeflate{Enabled: c.cfg.compression},
		Recovery:            gws.Recovery,
		Logger:              gwsLogger{&c.ep},
		// Longer than ctx can last, so ctx (closing conn) always ends it first
		// and gws's own handshake goroutine can deliver its result.
		HandshakeTimeout: c.cfg.dialTimeout + c.cfg.handshakeTimeout + time.Minute,
		NewSession:       func() gws.SessionStorage { return slot },
	}, newSessionConn(conn, nil))
	if !stop() {
		if err == nil {
			_ = conn.Close()
		}
		return nil, fmt.Errorf("netmsg: handshake with %s: %w", c.rawURL, context.Cause(ctx))
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return nil, &HandshakeError{Status: resp.StatusCode, Body: string(body), Err: err}
		}
		return nil, fmt.Errorf("netmsg: handshake with %s: %w", c.rawURL, err)
	}
	if gc.SubProtocol() != serializer.Subprotocol(c.ser) {
		_ = conn.Close()
		return nil, fmt.Errorf("netmsg: server did not accept subprotocol %s", serializer.Subprotocol(c.ser))
	}
	s := newSession(&c.ep, gc, c.ser, context.Background())
	c.mu.Lock()
	if c.state == Closed {
		c.mu.Unlock()
		_ = conn.Close()
		return nil, ErrClosed
	}
	c.ep.wg.Add(1)
	c.setup = s
	c.mu.Unlock()
	c.ep.startReading(s)
	return s, nil
}

// sessionClosed runs on the session's read loop once it closed.
func (c *Client) sessionClosed(s *Session, ce *CloseError) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
		if c.state == Connected {
			c.state = Connecting
			if c.cfg.reconnect == nil {
				c.state = Disconnected
			}
		}
		c.ready = make(chan struct{})
	}
	c.mu.Unlock()
	if f := c.cfg.onDisconnect; f != nil {
		c.inCallback("OnDisconnect", func() { f(ce) })
	}
}

// supervise watches the current session and, with WithReconnect, replaces it
// when it ends.
func (c *Client) supervise(s *Session) {
	defer c.ep.wg.Done()
	for {
		upAt := time.Now()
		select {
		case <-s.Done():
		case <-c.ctx.Done():
			return
		}
		ce := s.Err()
		if c.cfg.reconnect == nil {
			c.mu.Lock()
			c.running = false
			c.mu.Unlock()
			return
		}
		if !ce.ShouldReconnect() {
			c.stop(ce)
			return
		}
		if time.Since(upAt) >= stableConnection {
			c.cfg.reconnect.Reset()
		}
		next, err := c.reconnect(ce.ReconnectAfter())
		if err != nil {
			c.stop(err)
			return
		}
		s = next
	}
}

// reconnect tries until a connection is up, Close is called, or retrying
// cannot help. minDelay (the server's hint) applies to the first attempt.
func (c *Client) reconnect(minDelay time.Duration) (*Session, error) {
	b := c.cfg.reconnect
	for attempt := 1; ; attempt++ {
		d := b.NextBackOff()
		if d == backoff.Stop {
			return nil, errors.New("netmsg: reconnect gave up")
		}
		if attempt == 1 && d < minDelay {
			d = minDelay
		}
		if f := c.cfg.onReconnecting; f != nil {
			c.inCallback("OnReconnecting", func() { f(attempt, d) })
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		}
		c.mu.Lock()
		if c.state == Closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		c.state = Connecting
		c.mu.Unlock()
		s, err := c.connectOnce(c.ctx)
		if err == nil {
			return s, nil
		}
		var he *HandshakeError
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if errors.As(err, &he) && he.final() {
			return nil, err
		}
		c.cfg.logger.Debug("netmsg: reconnect attempt failed", "attempt", attempt, "err", err)
	}
}

// stop ends the client for good with err.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.state = Closed
	c.running = false
	c.mu.Unlock()
	c.finish(err)
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
		waiting := c.cfg.reconnect != nil && !c.cfg.failFast && (c.running || st == Connecting)
		c.mu.Unlock()
		switch {
		case st == Connected && s != nil:
			return s, nil
		case st == Closed:
			return nil, ErrClosed
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

// Close stops reconnecting, closes the session gracefully and returns once
// every goroutine the client started has exited. It may be called from any
// state and from several goroutines; all return when the first has finished.
// Called from OnConnect, OnDisconnect or OnReconnecting, or from one of the
// client's message or request handlers, it does the same but returns without
// waiting for the goroutine it runs on, which exits as soon as the callback or
// handler returns; Done closes then.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.state = Closed
		s, setup := c.sess, c.setup
		c.sess = nil
		c.mu.Unlock()
		c.cancelCtx()
		if s != nil {
			_ = s.Close("client closed")
		}
		if setup != nil {
			// Its OnConnect may be waiting on the session, not on its ctx.
			_ = setup.Close("client closed")
		}
		c.ep.stop()
		// Owned by Close: callers wait for exited, and Done closes with it.
		go func() {
			c.ep.wg.Wait()
			c.finish(ErrClosed)
			close(c.exited)
		}()
	})
	if c.callingBack() {
		return nil
	}
	<-c.exited
	return nil
}

// inCallback runs f, a user callback, recording that this goroutine is in it;
// a panic in f is recovered and logged.
func (c *Client) inCallback(name string, f func()) {
	id := goroutineID()
	c.mu.Lock()
	if c.callbacks == nil {
		c.callbacks = make(map[uint64]int)
	}
	c.callbacks[id]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.callbacks[id]--; c.callbacks[id] == 0 {
			delete(c.callbacks, id)
		}
		c.mu.Unlock()
	}()
	c.ep.callback(name, f)
}

// callingBack reports whether the calling goroutine is inside one of the
// client's callbacks or handlers.
func (c *Client) callingBack() bool {
	id := goroutineID()
	if c.ep.onWorker(id) {
		return true // a message or request handler
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callbacks[id] > 0
}
