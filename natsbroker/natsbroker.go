// Package natsbroker runs several netmsg Servers as one cluster through NATS:
// give each Server a Broker made from its NATS connection with
// netmsg.WithBroker, and Server.SendTo, netmsg.SendRequestTo and the
// broadcasts reach sessions on every node.
//
//	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
//	...
//	b, err := natsbroker.New(nc)
//	...
//	defer b.Close()
//	srv := netmsg.NewServer(netmsg.WithBroker(b))
//
// It uses NATS core only (no JetStream): delivery is at most once. The
// connection's reconnect logic is nats.go's; while the connection is down,
// Publish and Request fail at once with an error matching
// netmsg.ErrBrokerUnavailable (rather than buffering), a Request waiting
// for its reply when the connection is lost fails then, and the
// subscriptions are restored by nats.go when it reconnects.
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/netmsg/netmsg"
)

// DefaultSubjectPrefix is the first token of every subject a Broker uses.
const DefaultSubjectPrefix = "netmsg"

// Option configures a Broker.
type Option interface{ apply(*options) }

type options struct {
	prefix string
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithSubjectPrefix sets the subject tokens put before every subject, so that
// several clusters can share one NATS system: "chat" makes the subjects
// "chat.node.<id>", "chat.all" and so on. Default "netmsg". Every node of a
// cluster needs the same prefix.
func WithSubjectPrefix(prefix string) Option {
	return optionFunc(func(o *options) { o.prefix = prefix })
}

// Broker is a netmsg.Broker on a NATS connection. It does not own the
// connection: Close stops the Broker, the caller closes the connection.
//
// All methods may be called concurrently.
type Broker struct {
	nc     *nats.Conn
	prefix string // with its trailing dot

	status chan nats.Status
	done   chan struct{} // closed when the watcher has exited

	mu      sync.Mutex
	waiting map[*waiter]struct{} // requests waiting for their reply
	closed  bool
}

// waiter is a request waiting for its reply.
type waiter struct{ cancel context.CancelCauseFunc }

// flushTimeout bounds the round trip that makes a subscription take effect.
const flushTimeout = 5 * time.Second

// errLost is the cause given to the requests waiting when the connection goes down.
var errLost = errors.New("connection lost")

// New returns a Broker on nc. nc must support headers (NATS server 2.2 or
// later), which is how a request nobody subscribes to is answered at once.
// The Broker watches nc's state on a goroutine of its own until Close or
// until nc is closed.
func New(nc *nats.Conn, opts ...Option) (*Broker, error) {
	if nc == nil {
		return nil, errors.New("natsbroker: nil *nats.Conn")
	}
	o := options{prefix: DefaultSubjectPrefix}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := validPrefix(o.prefix); err != nil {
		return nil, err
	}
	if nc.IsClosed() {
		return nil, fmt.Errorf("natsbroker: %w", nats.ErrConnectionClosed)
	}
	if nc.IsConnected() && !nc.HeadersSupported() {
		return nil, errors.New("natsbroker: the NATS server does not support headers (it needs version 2.2 or later)")
	}
	b := &Broker{
		nc:      nc,
		prefix:  o.prefix + ".",
		status:  nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED),
		done:    make(chan struct{}),
		waiting: make(map[*waiter]struct{}),
	}
	b.setStatus(nc.Status())
	go b.watch()
	return b, nil
}

func validPrefix(p string) error {
	if p == "" {
		return errors.New("natsbroker: empty subject prefix")
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("natsbroker: subject prefix %q: want tokens without spaces or wildcards, joined by dots", p)
		}
	}
	return nil
}

// watch follows the connection's state: requests waiting when it goes down
// fail at once.
func (b *Broker) watch() {
	defer close(b.done)
	for st := range b.status {
		// A request waiting when the connection went down was sent on it:
		// its reply is not coming, even when the connection is up again by
		// the time the event is seen here. (One sent on the new connection
		// meanwhile fails too: a clear error rather than a lost reply.)
		b.setStatus(st)
		if st == nats.CLOSED {
			b.nc.RemoveStatusListener(b.status)
			return
		}
	}
}

// setStatus fails the requests waiting when the connection is not up.
func (b *Broker) setStatus(st nats.Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st == nats.CONNECTED {
		return
	}
	for w := range b.waiting {
		w.cancel(errLost)
		delete(b.waiting, w)
	}
}

// Close stops the Broker's watcher and fails the requests still waiting. It
// does not close the NATS connection, and it leaves subscriptions to their
// owners (a Server unsubscribes in Shutdown). Calls after Close fail.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closed = true
	for w := range b.waiting {
		w.cancel(errLost)
		delete(b.waiting, w)
	}
	b.mu.Unlock()
	b.nc.RemoveStatusListener(b.status)
	<-b.done
	return nil
}

// unavailable returns the error of a call made while the connection is down
// (or the Broker closed), or nil when it is up. b.mu is held: a request
// registered after this check is failed by the watcher when the connection
// goes down.
func (b *Broker) unavailable() error {
	if b.closed {
		return fmt.Errorf("%w: natsbroker: Broker closed", netmsg.ErrBrokerUnavailable)
	}
	if st := b.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: natsbroker: NATS connection %s", netmsg.ErrBrokerUnavailable, strings.ToLower(st.String()))
	}
	return nil
}

// Publish publishes data on subject. It fails at once, with an error
// matching netmsg.ErrBrokerUnavailable, while the connection is down: nats.go
// would otherwise hold the data and publish it after reconnecting, late.
func (b *Broker) Publish(_ context.Context, subject string, data []byte) error {
	b.mu.Lock()
	err := b.unavailable()
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if err := b.nc.Publish(b.prefix+subject, data); err != nil {
		return b.wrap(err)
	}
	return nil
}

// Request sends data to one subscriber of subject and returns its reply. It
// fails at once with an error matching netmsg.ErrNoResponders when nobody
// subscribes, and with one matching netmsg.ErrBrokerUnavailable when the
// connection is down or goes down before the reply comes.
func (b *Broker) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &waiter{cancel: cancel}
	b.mu.Lock()
	if err := b.unavailable(); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	b.waiting[w] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, w)
		b.mu.Unlock()
	}()
	msg, err := b.nc.RequestWithContext(rctx, b.prefix+subject, data)
	switch {
	case err == nil:
		return msg.Data, nil
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("%w on %s", netmsg.ErrNoResponders, subject)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(context.Cause(rctx), errLost):
		return nil, fmt.Errorf("%w: natsbroker: NATS connection lost while waiting for the reply", netmsg.ErrBrokerUnavailable)
	}
	return nil, b.wrap(err)
}

// wrap marks nats.go's errors of a connection that is down.
func (b *Broker) wrap(err error) error {
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrReconnectBufExceeded):
		return fmt.Errorf("%w: natsbroker: %w", netmsg.ErrBrokerUnavailable, err)
	}
	return fmt.Errorf("natsbroker: %w", err)
}

// Subscribe calls h for every message on subject until unsubscribe is
// called. It returns once the NATS server has the subscription (one round
// trip, at most a few seconds; while the connection is down nats.go makes the
// subscription when it reconnects). nats.go calls h on a goroutine of the
// subscription, one message at a time; a reply is published on the
// message's reply subject.
func (b *Broker) Subscribe(subject string, h netmsg.BrokerHandler) (unsubscribe func(), err error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, errors.New("natsbroker: Subscribe after Close")
	}
	nc := b.nc
	sub, err := nc.Subscribe(b.prefix+subject, func(m *nats.Msg) {
		var reply func([]byte) error
		if m.Reply != "" {
			to := m.Reply
			reply = func(data []byte) error { return nc.Publish(to, data) }
		}
		h(m.Data, reply)
	})
	if err != nil {
		return nil, b.wrap(err)
	}
	// A round trip, so that the server has the subscription when Subscribe
	// returns. While disconnected there is no server to ask (and the round
	// trip would wait for the reconnection): nats.go makes the subscription
	// when it reconnects.
	if nc.IsConnected() {
		_ = nc.FlushTimeout(flushTimeout)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = sub.Unsubscribe() }) }, nil
}

var _ netmsg.Broker = (*Broker)(nil)
