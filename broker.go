package netmsg

import (
	"context"
	"errors"
)

// Broker carries messages between the Servers of a cluster, one Server per
// node, so that they act as one: Server.SendTo and SendRequestTo reach a
// session on any node, and broadcasts reach the members on every node. The
// natsbroker module implements it on NATS; WithBroker gives it to a Server.
//
// A Broker delivers at most once: a message may be lost (a node or the
// broker's connection went down), never duplicated. Subjects are the
// library's: tokens of letters, digits, '-' and '_' joined by '.', such as
// "node.k3v9x2" or "group.lobby"; a Broker may prefix them to keep clusters
// apart.
//
// The interface is kept small so that other engines can implement it. The
// core needs "does anyone have this?" answered at once, so request-reply is
// part of the interface rather than built by the core on Publish and a reply
// subject: NATS answers a request nobody subscribed to with "no responders"
// at once, and Redis's PUBLISH returns the number of receivers, which gives
// the same answer; over plain publish the core could only wait for a timeout.
//
// All methods may be called concurrently.
type Broker interface {
	// Publish sends data to every current subscriber of subject. It does not
	// wait for them. While the broker cannot be reached it fails at once
	// with an error matching ErrBrokerUnavailable (rather than holding data
	// for later).
	Publish(ctx context.Context, subject string, data []byte) error
	// Request sends data to one subscriber of subject and returns its reply.
	// It fails at once with an error matching ErrNoResponders when nobody
	// subscribes to subject, with one matching ErrBrokerUnavailable while the
	// broker cannot be reached (also when the connection is lost while the
	// request waits), and with ctx's error when ctx ends first.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
	// Subscribe calls h for every message published or requested on subject
	// until unsubscribe is called. It returns once the subscription is in
	// effect: what is published after that reaches h. Calls of h for one
	// subscription come one at a time, and h returns promptly (the library
	// hands anything slow to a goroutine of its own). h may still be called
	// shortly after unsubscribe; the library ignores such calls.
	Subscribe(subject string, h BrokerHandler) (unsubscribe func(), err error)
}

// BrokerHandler receives what a Broker delivers to a subscription. data is
// the handler's own. reply is nil for a published message; for a request it
// sends the one answer, and may be called later, from any goroutine.
type BrokerHandler func(data []byte, reply func(data []byte) error)

// Errors of a cluster. Their texts are part of the API.
var (
	// ErrNoSession is returned by Server.SendTo and SendRequestTo when no
	// node of the cluster has a session with the id.
	ErrNoSession = errors.New("netmsg: no such session")
	// ErrBrokerUnavailable is returned, wrapped, when a call needs the
	// broker and the broker cannot be reached. A Broker's errors match it
	// while its connection is down.
	ErrBrokerUnavailable = errors.New("netmsg: broker unavailable")
	// ErrNoResponders is what a Broker's Request returns, wrapped, when
	// nobody subscribes to the subject.
	ErrNoResponders = errors.New("netmsg: broker: no responders")
)

// WithBroker makes the Server one node of a cluster whose nodes talk through
// b: SendTo, SendRequestTo, Group.Broadcast and Server.Broadcast then reach
// sessions on every node (see the README, "Running several servers"). Every
// node of a cluster should accept the same serializers. NewServer subscribes
// to the node's subjects (a failure is logged, and the cross-node calls then
// return it), and the server keeps a goroutine that says hello to the other
// nodes every second until Shutdown. Without a broker a Server is one node
// on its own.
func WithBroker(b Broker) ServerOption {
	return serverOption(func(c *serverConfig) { c.broker = b })
}
