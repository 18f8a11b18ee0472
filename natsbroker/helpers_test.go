package natsbroker_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/natsbroker"
	"github.com/stretchr/testify/require"
)

// wait bounds what must happen "at once" or "promptly": wide, since the
// machine is shared and slow under -race. The timeouts these tests prove
// were not waited for are a minute.
const wait = 5 * time.Second

// long is the timeout of calls that must never run into it.
const long = time.Minute

// ---- contracts ----

type Note struct{ Text string }

type Ping struct {
	netmsg.Returns[Pong]
	Text string
}

type Pong struct {
	Text    string
	Session string
}

// Refuse is answered with a CodePermissionDenied error.
type Refuse struct {
	netmsg.Returns[Pong]
}

// Stall is answered only when its ctx ends; the handler reports why.
type Stall struct {
	netmsg.Returns[Pong]
	Key string
}

// ---- NATS ----

// natsServer is an in-process NATS server on a loopback port, which can be
// stopped and started again on the same port.
type natsServer struct {
	t    testing.TB
	mu   sync.Mutex
	s    *server.Server
	port int
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: -1}
	ns.start()
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	var err error
	for range 50 { // the port may take a moment to be free again
		var s *server.Server
		s, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: ns.port, NoLog: true, NoSigs: true})
		require.NoError(ns.t, err)
		s.Start()
		if s.ReadyForConnections(wait) {
			ns.mu.Lock()
			ns.s = s
			ns.port = s.Addr().(*net.TCPAddr).Port
			ns.mu.Unlock()
			return
		}
		s.Shutdown()
		s.WaitForShutdown()
		err = errors.New("nats-server not ready")
		time.Sleep(100 * time.Millisecond)
	}
	ns.t.Fatalf("starting nats-server: %v", err)
}

func (ns *natsServer) stop() {
	ns.mu.Lock()
	s := ns.s
	ns.s = nil
	ns.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// subscriptions returns how many subscriptions the NATS server has.
func (ns *natsServer) subscriptions() uint32 {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.s.NumSubscriptions()
}

func (ns *natsServer) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(ns.port) }

// connectNATS connects to ns, reconnecting quickly and forever.
func connectNATS(t testing.TB, ns *natsServer) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(10*time.Millisecond, 10*time.Millisecond), nats.NoCallbacksAfterClientClose())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// ---- nodes ----

// node is one netmsg Server of a cluster, on its own NATS connection and
// loopback port.
type node struct {
	*netmsg.Server
	URL    string
	NC     *nats.Conn
	Broker *natsbroker.Broker

	once sync.Once
	err  error
	done chan struct{}
}

func startNode(t testing.TB, ns *natsServer, opts ...netmsg.ServerOption) *node {
	t.Helper()
	nc := connectNATS(t, ns)
	b, err := natsbroker.New(nc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	srv := netmsg.NewServer(append([]netmsg.ServerOption{netmsg.WithBroker(b)}, opts...)...)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &node{Server: srv, URL: "ws://" + l.Addr().String() + "/", NC: nc, Broker: b, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { _ = n.Shutdown() })
	return n
}

func startNodes(t testing.TB, ns *natsServer, count int, opts ...netmsg.ServerOption) []*node {
	nodes := make([]*node, count)
	for i := range nodes {
		nodes[i] = startNode(t, ns, opts...)
	}
	return nodes
}

// Shutdown shuts the server down once and waits for Serve to return.
func (n *node) Shutdown() error {
	n.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.err = n.Server.Shutdown(ctx)
		<-n.done
	})
	return n.err
}

func nodeURLs(nodes []*node) []string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL)
	}
	return urls
}

// ---- clients ----

// device is a client with handlers for everything the tests send it.
type device struct {
	*netmsg.Client
	notes   chan Note
	stalled chan stallEnd
}

// deviceOpts are the options of a device that reconnects over urls and
// re-joins in OnConnect (join may be nil).
func newDevice(t testing.TB, url string, opts ...netmsg.ClientOption) *device {
	t.Helper()
	d := &device{notes: make(chan Note, 1024), stalled: make(chan stallEnd, 16)}
	d.Client = netmsg.NewClient(url, opts...)
	netmsg.AddMessageHandler(d.Client, func(_ context.Context, _ *netmsg.Session, n Note) { d.notes <- n })
	netmsg.AddRequestHandler(d.Client, func(_ context.Context, s *netmsg.Session, p Ping) (Pong, error) {
		return Pong{Text: p.Text, Session: s.ID()}, nil
	})
	netmsg.AddRequestHandler(d.Client, func(context.Context, *netmsg.Session, Refuse) (Pong, error) {
		return Pong{}, netmsg.NewError(netmsg.CodePermissionDenied, "refused by the device")
	})
	netmsg.AddRequestHandler(d.Client, func(ctx context.Context, _ *netmsg.Session, _ Stall) (Pong, error) {
		dl, _ := ctx.Deadline()
		<-ctx.Done()
		d.stalled <- stallEnd{err: ctx.Err(), deadline: dl}
		return Pong{}, ctx.Err()
	})
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// stallEnd is how a Stall handler's ctx ended.
type stallEnd struct {
	err      error
	deadline time.Time // zero: none
}

// connectDevice connects a device to n. The session is there for every node
// as soon as Connect returns: Server.Session waits for a handshake in flight.
func connectDevice(t testing.TB, n *node, opts ...netmsg.ClientOption) *device {
	t.Helper()
	d := newDevice(t, n.URL, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, d.Connect(ctx))
	return d
}

// ID returns the device's current session id.
func (d *device) ID(t testing.TB) string {
	t.Helper()
	s := d.Session()
	require.NotNil(t, s, "device not connected")
	return s.ID()
}

// note waits for the next note.
func (d *device) note(t testing.TB) Note {
	t.Helper()
	select {
	case n := <-d.notes:
		return n
	case <-time.After(wait):
		t.Fatal("no note arrived")
		return Note{}
	}
}

// noNote checks that no note arrives for a while.
func (d *device) noNote(t testing.TB, within time.Duration) {
	t.Helper()
	select {
	case n := <-d.notes:
		t.Fatalf("unexpected note %+v", n)
	case <-time.After(within):
	}
}

func fastReconnect() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 20 * time.Millisecond
	b.MaxInterval = 200 * time.Millisecond
	b.RandomizationFactor = 0.5
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// eventually polls f until it holds.
func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * wait)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
