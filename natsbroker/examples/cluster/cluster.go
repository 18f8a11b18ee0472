package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/natsbroker"
)

// The contract between bots and the servers.

// Join is what a bot says on every connection: the node puts it in the
// lobby and records where it is.
type Join struct {
	netmsg.Returns[Welcome]
	Bot string
}

// Welcome names the node that took the bot.
type Welcome struct{ Node string }

// News is broadcast to the lobby.
type News struct{ Text string }

// Status is a request from a server to one bot, wherever it is connected.
type Status struct {
	netmsg.Returns[StatusReply]
}

// StatusReply is a bot's answer.
type StatusReply struct {
	Bot  string
	News int // lobby broadcasts received so far
}

// directory is where the application keeps which session each bot is on.
// A real one would live in a database; here it is shared by the nodes of
// one process.
type directory struct {
	mu    sync.Mutex
	where map[string]place
}

type place struct {
	session string
	node    string
}

func (d *directory) set(bot string, p place) {
	d.mu.Lock()
	d.where[bot] = p
	d.mu.Unlock()
}

func (d *directory) get(bot string) place {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.where[bot]
}

// node is one netmsg server of the cluster, with its own NATS connection.
type node struct {
	name string
	srv  *netmsg.Server
	url  string
	nc   *nats.Conn
	b    *natsbroker.Broker
	done chan struct{}
}

func startNode(name, natsURL string, dir *directory) (*node, error) {
	nc, err := nats.Connect(natsURL, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	b, err := natsbroker.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	srv := netmsg.NewServer(netmsg.WithBroker(b))
	netmsg.AddRequestHandler(srv, func(_ context.Context, s *netmsg.Session, j Join) (Welcome, error) {
		srv.Group("lobby").Add(s)
		dir.set(j.Bot, place{session: s.ID(), node: name})
		return Welcome{Node: name}, nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = b.Close()
		nc.Close()
		return nil, err
	}
	n := &node{name: name, srv: srv, url: "ws://" + l.Addr().String() + "/", nc: nc, b: b, done: make(chan struct{})}
	go func() {
		defer close(n.done)
		_ = srv.Serve(l)
	}()
	return n, nil
}

// stop shuts the server down (its sessions get 1001 and a reconnect hint)
// and then releases its NATS connection.
func (n *node) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := n.srv.Shutdown(ctx)
	<-n.done
	_ = n.b.Close()
	n.nc.Close()
	return err
}

// bot is a client that joins the lobby on every connection.
type bot struct {
	name   string
	client *netmsg.Client
	news   atomic.Int32
	joins  atomic.Int32
	hinted atomic.Int32 // connections ended by a server shutdown with a reconnect hint
	nodeMu sync.Mutex
	node   string
}

func newBot(name string, urls []string) *bot {
	b := &bot{name: name}
	retry := backoff.NewExponentialBackOff()
	retry.InitialInterval = 100 * time.Millisecond
	retry.MaxInterval = time.Second
	retry.MaxElapsedTime = 0
	b.client = netmsg.NewClient(urls[0], netmsg.WithURLs(urls[1:]...), netmsg.WithReconnect(retry),
		netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			if ce.Reason == netmsg.CloseServerShutdown && ce.ReconnectAfter() > 0 {
				b.hinted.Add(1)
			}
		}),
		netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
			w, err := netmsg.SendRequest(ctx, s, Join{Bot: name})
			if err != nil {
				return err
			}
			b.nodeMu.Lock()
			b.node = w.Node
			b.nodeMu.Unlock()
			b.joins.Add(1)
			return nil
		}))
	netmsg.AddMessageHandler(b.client, func(context.Context, *netmsg.Session, News) { b.news.Add(1) })
	netmsg.AddRequestHandler(b.client, func(context.Context, *netmsg.Session, Status) (StatusReply, error) {
		return StatusReply{Bot: name, News: int(b.news.Load())}, nil
	})
	return b
}

func (b *bot) where() string {
	b.nodeMu.Lock()
	defer b.nodeMu.Unlock()
	return b.node
}

// run is the whole example.
func run(ctx context.Context, out io.Writer, nbots int) error {
	if nbots < 3 {
		return errors.New("at least 3 bots, one per node")
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server did not start")
	}
	printf(out, "nats: embedded server on %s", ns.ClientURL())

	dir := &directory{where: make(map[string]place)}
	var nodes []*node
	stopped := make(map[*node]bool)
	defer func() {
		for _, n := range nodes {
			if !stopped[n] {
				_ = n.stop()
			}
		}
	}()
	for i := range 3 {
		n, err := startNode(fmt.Sprintf("node-%d", i+1), ns.ClientURL(), dir)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		printf(out, "%s: listening on %s", n.name, n.url)
	}

	// Bots: each starts on one node and lists the others after it.
	var bots []*bot
	defer func() {
		for _, b := range bots {
			_ = b.client.Close()
		}
	}()
	for i := range nbots {
		home := i % len(nodes)
		urls := []string{nodes[home].url}
		for k := 1; k < len(nodes); k++ {
			urls = append(urls, nodes[(home+k)%len(nodes)].url)
		}
		b := newBot(fmt.Sprintf("bot-%02d", i+1), urls)
		if err := b.client.Connect(ctx); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		bots = append(bots, b)
	}
	printf(out, "bots: %d connected and in the lobby: %s", len(bots), spread(bots))

	// A broadcast from node-1 reaches the lobby on every node.
	if err := broadcast(ctx, out, nodes[0], bots, 1); err != nil {
		return err
	}

	// A request from node-3 to a bot connected to node-1.
	target := bots[0]
	if err := ask(ctx, out, nodes[2], dir, target); err != nil {
		return err
	}

	// node-2 goes away: its bots move to node-3, the next in their lists.
	victim := nodes[1]
	var moving []*bot
	oldIDs := make(map[string]string)
	for _, b := range bots {
		if b.where() == victim.name {
			moving = append(moving, b)
			oldIDs[b.name] = dir.get(b.name).session
		}
	}
	start := time.Now()
	if err := victim.stop(); err != nil {
		return fmt.Errorf("%s shutdown: %w", victim.name, err)
	}
	stopped[victim] = true
	if err := waitFor(ctx, 30*time.Second, func() bool {
		for _, b := range moving {
			if b.where() == victim.name || dir.get(b.name).session == oldIDs[b.name] {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("fail-over: %w", err)
	}
	hinted := 0
	for _, b := range moving {
		if b.hinted.Load() > 0 {
			hinted++
		}
	}
	printf(out, "%s: shut down; %d of its %d bots were told 1001 with a reconnect hint", victim.name, hinted, len(moving))
	var moved []string
	for _, b := range moving {
		moved = append(moved, b.name+"→"+b.where())
	}
	printf(out, "fail-over: %d bots joined again on another node within %v: %s", len(moving),
		time.Since(start).Round(10*time.Millisecond), strings.Join(moved, " "))

	// The lobby is whole again, and a moved bot is reached where it is now.
	if err := broadcast(ctx, out, nodes[0], bots, 2); err != nil {
		return err
	}
	if err := ask(ctx, out, nodes[0], dir, moving[0]); err != nil {
		return err
	}
	err = nodes[2].srv.SendTo(ctx, oldIDs[moving[0].name], News{Text: "anyone there?"})
	if !errors.Is(err, netmsg.ErrNoSession) {
		return fmt.Errorf("send to %s's old session: got %v, want ErrNoSession", moving[0].name, err)
	}
	printf(out, "node-3 → %s's old session on %s: %v", moving[0].name, victim.name, err)
	printf(out, "done: %d bots, %d nodes left, every broadcast and request answered", len(bots), len(nodes)-1)
	return nil
}

// broadcast sends the lobby its n-th news from n and waits until every bot
// has it.
func broadcast(ctx context.Context, out io.Writer, from *node, bots []*bot, n int) error {
	if err := from.srv.Group("lobby").Broadcast(ctx, News{Text: fmt.Sprintf("news #%d", n)}); err != nil {
		return err
	}
	if err := waitFor(ctx, 10*time.Second, func() bool {
		for _, b := range bots {
			if int(b.news.Load()) < n {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("broadcast #%d: %w", n, err)
	}
	printf(out, "%s → lobby: news #%d reached all %d bots: %s", from.name, n, len(bots), spread(bots))
	return nil
}

// ask sends a Status request from a node to a bot, through the directory.
func ask(ctx context.Context, out io.Writer, from *node, dir *directory, b *bot) error {
	p := dir.get(b.name)
	start := time.Now()
	reply, err := netmsg.SendRequestTo(ctx, from.srv, p.session, Status{})
	if err != nil {
		return fmt.Errorf("%s → %s: %w", from.name, b.name, err)
	}
	printf(out, "%s → %s on %s: Status answered in %v: %s has %d news", from.name, b.name, p.node,
		time.Since(start).Round(time.Microsecond), reply.Bot, reply.News)
	return nil
}

// spread says how many bots each node has.
func spread(bots []*bot) string {
	count := make(map[string]int)
	for _, b := range bots {
		count[b.where()]++
	}
	var parts []string
	for n, c := range count {
		parts = append(parts, fmt.Sprintf("%s %d", n, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func waitFor(ctx context.Context, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
