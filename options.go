package netmsg

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg/internal/transport"
	"github.com/netmsg/netmsg/serializer"
)

// Defaults, in one place.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultReceiveTimeout    = 15 * time.Second
	DefaultRequestTimeout    = 10 * time.Second
	DefaultDisconnectTimeout = 3 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultDialTimeout       = 10 * time.Second
	DefaultMaxMessageSize    = 1 << 20
	DefaultMaxQueuedBytes    = 4 << 20
	DefaultMailboxSize       = 256
	DefaultMailboxBytes      = 4 << 20
	DefaultFrameTimeout      = 30 * time.Second
)

// config holds what both ends share.
type config struct {
	serializers       []serializer.Serializer
	heartbeatInterval time.Duration
	receiveTimeout    time.Duration
	requestTimeout    time.Duration
	disconnectTimeout time.Duration
	writeTimeout      time.Duration
	handshakeTimeout  time.Duration
	maxMessageSize    int
	maxQueuedBytes    int
	mailboxSize       int
	mailboxBytes      int
	frameTimeout      time.Duration
	concurrency       int
	inline            bool
	compression       bool
	logger            *slog.Logger
	onError           func(*Session, error)
	onUnhandled       func(*Session, string)
	interceptors      []Interceptor
}

func defaultConfig() config {
	return config{
		serializers:       []serializer.Serializer{serializer.JSON{}},
		heartbeatInterval: DefaultHeartbeatInterval,
		receiveTimeout:    DefaultReceiveTimeout,
		requestTimeout:    DefaultRequestTimeout,
		disconnectTimeout: DefaultDisconnectTimeout,
		writeTimeout:      DefaultWriteTimeout,
		handshakeTimeout:  DefaultHandshakeTimeout,
		maxMessageSize:    DefaultMaxMessageSize,
		maxQueuedBytes:    DefaultMaxQueuedBytes,
		mailboxSize:       DefaultMailboxSize,
		mailboxBytes:      DefaultMailboxBytes,
		frameTimeout:      DefaultFrameTimeout,
		concurrency:       1,
		inline:            true,
		logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func (c *config) transportOptions() transport.Options {
	return transport.Options{MaxMessageSize: c.maxMessageSize, Compression: c.compression, Logger: c.logger}
}

type serverConfig struct {
	config
	allowedOrigins []string
	authorize      func(r *http.Request) (context.Context, error)
	onSessionOpen  func(*Session)
	onSessionClose func(*Session, *CloseError)
	broker         Broker
}

type clientConfig struct {
	config
	header         http.Header
	urls           []string
	tlsConfig      *tls.Config
	dialTimeout    time.Duration
	reconnect      backoff.BackOff
	failFast       bool
	onConnect      func(ctx context.Context, s *Session) error
	onDisconnect   func(*CloseError)
	onReconnecting func(attempt int, delay time.Duration)
	onAttempt      func(ReconnectAttempt)
}

// ServerOption configures a Server.
type ServerOption interface{ applyServer(*serverConfig) }

// ClientOption configures a Client.
type ClientOption interface{ applyClient(*clientConfig) }

// Option configures either end; it is both a ServerOption and a ClientOption.
type Option interface {
	ServerOption
	ClientOption
}

type sharedOption func(*config)

func (o sharedOption) applyServer(c *serverConfig) { o(&c.config) }
func (o sharedOption) applyClient(c *clientConfig) { o(&c.config) }

type serverOption func(*serverConfig)

func (o serverOption) applyServer(c *serverConfig) { o(c) }

type clientOption func(*clientConfig)

func (o clientOption) applyClient(c *clientConfig) { o(c) }

// WithSerializer sets the payload serializers. On a server it is the list the
// server accepts, the first preferred when a client offers several; on a client
// the first is the one it offers (a client offers only one). Default: JSON.
//
// It panics when a serializer is nil, when a name is not a valid HTTP token
// (serializer.CheckName: names travel in the Sec-WebSocket-Protocol header)
// or when two serializers share a name.
func WithSerializer(s ...serializer.Serializer) Option {
	s = slices.Clone(s)
	seen := make(map[string]bool, len(s))
	for i, ser := range s {
		if ser == nil {
			panic(fmt.Sprintf("netmsg: WithSerializer: serializer %d is nil", i))
		}
		name := ser.Name()
		if err := serializer.CheckName(name); err != nil {
			panic(fmt.Sprintf("netmsg: WithSerializer: %T: %v", ser, err))
		}
		if seen[name] {
			panic(fmt.Sprintf("netmsg: WithSerializer: two serializers are named %q", name))
		}
		seen[name] = true
	}
	return sharedOption(func(c *config) {
		if len(s) > 0 {
			c.serializers = s
		}
	})
}

// WithHeartbeat sets how often a ping is sent and how long a session may go
// without receiving anything before it closes with CloseConnectionLost.
// An interval ≤ 0 turns both off and leaves only TCP keepalive; a
// receiveTimeout ≤ 0 means three intervals. Default 5 s and 15 s.
func WithHeartbeat(interval, receiveTimeout time.Duration) Option {
	return sharedOption(func(c *config) {
		if interval <= 0 {
			c.heartbeatInterval, c.receiveTimeout = 0, 0
			return
		}
		if receiveTimeout <= 0 {
			receiveTimeout = 3 * interval
		}
		c.heartbeatInterval, c.receiveTimeout = interval, receiveTimeout
	})
}

// WithRequestTimeout sets the timeout SendRequest uses when its ctx has no
// deadline. Default 10 s.
func WithRequestTimeout(d time.Duration) Option {
	return sharedOption(func(c *config) {
		if d > 0 {
			c.requestTimeout = d
		}
	})
}

// WithDisconnectTimeout bounds a graceful close: flushing queued frames, the
// close handshake and waiting for the peer's answer. Default 3 s.
func WithDisconnectTimeout(d time.Duration) Option {
	return sharedOption(func(c *config) {
		if d > 0 {
			c.disconnectTimeout = d
		}
	})
}

// WithWriteTimeout bounds every write to the socket; a peer that reads nothing
// for this long is closed with CloseSlowConsumer. Default 10 s.
func WithWriteTimeout(d time.Duration) Option {
	return sharedOption(func(c *config) {
		if d > 0 {
			c.writeTimeout = d
		}
	})
}

// WithHandshakeTimeout bounds the WebSocket handshake: on a server, reading
// the request headers (with ListenAndServe or Serve) and writing the answer;
// on a client, from the request to the server's answer. Default 10 s.
func WithHandshakeTimeout(d time.Duration) Option {
	return sharedOption(func(c *config) {
		if d > 0 {
			c.handshakeTimeout = d
		}
	})
}

// WithMaxMessageSize sets the largest frame accepted, checked before its
// payload is read and again after decompression; a larger frame closes the
// session with CloseMessageTooLarge (1009). It also bounds what this side
// sends. Default 1 MiB.
func WithMaxMessageSize(n int) Option {
	return sharedOption(func(c *config) {
		if n > 0 {
			c.maxMessageSize = n
		}
	})
}

// WithMaxQueuedBytes bounds the bytes waiting to be written on one session; a
// session over the bound is closed with CloseSlowConsumer. Default 4 MiB.
func WithMaxQueuedBytes(n int) Option {
	return sharedOption(func(c *config) {
		if n > 0 {
			c.maxQueuedBytes = n
		}
	})
}

// WithMailboxSize bounds how many inbound messages and requests one session
// holds before it stops reading from the socket. Default 256.
func WithMailboxSize(n int) Option {
	return sharedOption(func(c *config) {
		if n > 0 {
			c.mailboxSize = n
		}
	})
}

// WithMailboxBytes bounds the memory the inbound messages and requests
// waiting in one session's mailbox may hold (their frames as received, after
// decompression, plus a fixed overhead each); when it is reached the session
// stops reading from the socket until handlers catch up. One envelope is
// always admitted into an empty mailbox, so MaxMessageSize, not this, bounds
// a single frame. Default 4 MiB.
func WithMailboxBytes(n int) Option {
	return sharedOption(func(c *config) {
		if n > 0 {
			c.mailboxBytes = n
		}
	})
}

// WithFrameTimeout bounds how long one frame may take to arrive once its
// first byte has: a peer that announces a large frame and drips it a byte at
// a time is closed with CloseConnectionLost. d ≤ 0 turns the bound off.
// It is checked on the heartbeat's ticks (every HeartbeatInterval, or every
// d/4 with heartbeats off). Default 30 s.
func WithFrameTimeout(d time.Duration) Option {
	return sharedOption(func(c *config) { c.frameTimeout = max(d, 0) })
}

// WithSessionConcurrency lets up to n handlers of one session run at once;
// they still start in arrival order. Default 1: one at a time, in order.
func WithSessionConcurrency(n int) Option {
	return sharedOption(func(c *config) {
		if n > 0 {
			c.concurrency = n
		}
	})
}

// WithInlineHandlers lets a session's read loop run a handler itself when the
// session has no other handler running or waiting (default on). It saves a
// goroutine switch per message and lets the answers to pipelined requests
// leave in one write. A handler that waits (on its ctx, Session.Done, a
// request of its own, or anything else, caught within a few milliseconds by
// a watchdog) hands the reading to another goroutine first, so no handler
// stalls a read loop for longer than that. Off: every handler runs on a
// dispatcher goroutine.
func WithInlineHandlers(on bool) Option {
	return sharedOption(func(c *config) { c.inline = on })
}

// WithCompression turns permessage-deflate on or off. Default off.
func WithCompression(on bool) Option {
	return sharedOption(func(c *config) { c.compression = on })
}

// WithLogger sets the logger for what the library cannot return to a caller
// (handler panics, dropped frames). Default: discard.
func WithLogger(l *slog.Logger) Option {
	return sharedOption(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithOnError is called with errors that have no caller to return to: a
// message that does not decode, a handler's internal error, a panic.
func WithOnError(f func(*Session, error)) Option {
	return sharedOption(func(c *config) { c.onError = f })
}

// WithOnUnhandled is called with the type name of a message that arrived with
// no handler registered for it.
func WithOnUnhandled(f func(*Session, string)) Option {
	return sharedOption(func(c *config) { c.onUnhandled = f })
}

// WithAllowedOrigins sets the browser origins (such as "https://example.com"
// or "*.example.com") a server accepts. By default a request with an Origin
// header must come from the host it is addressed to; requests without one
// (non-browser clients) are always accepted.
func WithAllowedOrigins(origins ...string) ServerOption {
	origins = slices.Clone(origins)
	return serverOption(func(c *serverConfig) { c.allowedOrigins = origins })
}

// WithAuthorize runs before the upgrade. A non-nil error refuses the handshake
// with 401, or with the status of an *HTTPError. The context it returns
// becomes the session's base context (its values reach every handler);
// return one derived from r.Context() to keep the request's own values.
// Without WithAuthorize the base context carries no values.
func WithAuthorize(f func(r *http.Request) (context.Context, error)) ServerOption {
	return serverOption(func(c *serverConfig) { c.authorize = f })
}

// WithOnSessionOpen is called once per session, before any of its messages or
// requests is handled. The session is already reading, so f may send requests
// to the client and wait for their answers (the client's messages wait until
// f returns). OnSessionClose for the session runs only after f has returned.
func WithOnSessionOpen(f func(*Session)) ServerOption {
	return serverOption(func(c *serverConfig) { c.onSessionOpen = f })
}

// WithOnSessionClose is called exactly once per session, after it closed.
func WithOnSessionClose(f func(*Session, *CloseError)) ServerOption {
	return serverOption(func(c *serverConfig) { c.onSessionClose = f })
}

// WithHeader adds headers (such as an auth token) to the client's handshake.
func WithHeader(h http.Header) ClientOption {
	h = h.Clone()
	return clientOption(func(c *clientConfig) { c.header = h })
}

// WithURLs adds servers (ws:// or wss:// URLs) the client may connect to
// besides the one given to NewClient, such as the other nodes of a cluster
// (WithBroker). The client tries them in turn, the NewClient URL first:
// when a connection is lost the next attempt goes to the next server in the
// list, and every failed attempt moves on to the one after it, so clients of
// a node that went away land on one that is up, and re-join in OnConnect.
// Without WithReconnect, Connect tries each one once, in turn. Client.URL
// tells which one a client is on.
func WithURLs(urls ...string) ClientOption {
	urls = slices.Clone(urls)
	return clientOption(func(c *clientConfig) { c.urls = append(c.urls, urls...) })
}

// WithTLSConfig sets the TLS configuration for wss:// URLs. The client uses a
// clone and never modifies the one passed in.
func WithTLSConfig(cfg *tls.Config) ClientOption {
	return clientOption(func(c *clientConfig) {
		if cfg != nil {
			c.tlsConfig = cfg.Clone()
		}
	})
}

// WithDialTimeout bounds dialling one connection attempt, TLS included (the
// WebSocket handshake has WithHandshakeTimeout). Default 10 s.
func WithDialTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) {
		if d > 0 {
			c.dialTimeout = d
		}
	})
}

// WithReconnect makes the client reconnect on its own after a connection is
// lost, waiting as b says between attempts (see DefaultBackOff). Connect then
// also retries the first connection until its ctx ends. The client works on
// its own copy of b when b is one of the backoff package's own types
// (*ExponentialBackOff, *ConstantBackOff, *ZeroBackOff, *StopBackOff), so one
// policy value may configure many clients; give each client its own value of
// any other type.
func WithReconnect(b backoff.BackOff) ClientOption {
	return clientOption(func(c *clientConfig) { c.reconnect = b })
}

// cloneBackOff returns a copy of b that shares no state with it, when b's
// type is known; otherwise b itself.
func cloneBackOff(b backoff.BackOff) backoff.BackOff {
	switch v := b.(type) {
	case *backoff.ExponentialBackOff:
		cp := *v
		cp.Reset()
		return &cp
	case *backoff.ConstantBackOff:
		cp := *v
		return &cp
	}
	return b
}

// WithFailFast makes Send and SendRequest fail at once with ErrNotConnected
// while the client is reconnecting, instead of waiting for the connection.
func WithFailFast() ClientOption {
	return clientOption(func(c *clientConfig) { c.failFast = true })
}

// WithOnConnect runs after every connection and reconnection, before the
// client counts as connected and before calls waiting for the connection are
// released: the place to sign in again or re-subscribe. It may send requests
// on s. An error closes the connection, which is then retried.
func WithOnConnect(f func(ctx context.Context, s *Session) error) ClientOption {
	return clientOption(func(c *clientConfig) { c.onConnect = f })
}

// WithOnDisconnect is called exactly once for every connection that ends.
func WithOnDisconnect(f func(*CloseError)) ClientOption {
	return clientOption(func(c *clientConfig) { c.onDisconnect = f })
}

// WithOnReconnecting is called before each reconnection attempt with the
// attempt number (from 1) and the delay before it.
func WithOnReconnecting(f func(attempt int, delay time.Duration)) ClientOption {
	return clientOption(func(c *clientConfig) { c.onReconnecting = f })
}

// ReconnectAttempt describes one reconnection attempt about to be made.
type ReconnectAttempt struct {
	Attempt int           // from 1, counting since the connection was lost
	Delay   time.Duration // the wait before the attempt: the server's hint, if any, plus the backoff's jittered delay
	Err     error         // why: the *CloseError that ended the connection, or the previous attempt's error
	URL     string        // the server the attempt dials (see WithURLs)
}

// WithOnReconnectAttempt is called before each reconnection attempt (and each
// retry of the first connection) with the attempt, its delay and the error
// that made it necessary. It runs on the client's supervisor goroutine, in
// order with OnConnect and OnDisconnect.
func WithOnReconnectAttempt(f func(ReconnectAttempt)) ClientOption {
	return clientOption(func(c *clientConfig) { c.onAttempt = f })
}

// DefaultBackOff returns the reconnect policy used by the examples: exponential
// from 500 ms, ×1.6, ±50 % jitter, capped at 30 s, never giving up.
func DefaultBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.Multiplier = 1.6
	b.RandomizationFactor = 0.5
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}
