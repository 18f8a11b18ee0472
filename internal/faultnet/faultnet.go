// Package faultnet is a small in-process TCP relay for tests that must break a
// link on purpose.
//
// A Relay listens on 127.0.0.1:0 and forwards every accepted connection to a
// target address. Each accepted connection is a Link with its own controls:
//
//   - Blackhole stops forwarding in both directions while keeping both sockets
//     open, like a middlebox that silently stops passing packets (a half-open
//     link). Nothing is dropped: bytes (and end-of-stream) read meanwhile are
//     held and delivered, in order, after Resume.
//   - Delay adds latency to every chunk forwarded from then on.
//   - Reset closes both sockets with an RST (SO_LINGER 0).
//   - Close closes both sockets normally (FIN).
//
// End-of-stream is forwarded as a half close (CloseWrite), and a reset seen on
// one side is forwarded as a reset to the other. Every goroutine the relay
// starts is owned by it: Close returns only after all of them have exited.
package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Relay accepts connections on a loopback port and forwards each to a target.
type Relay struct {
	ln     net.Listener
	ctx    context.Context // cancelled by Close: ends dials to the target
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	target    string
	links     map[*Link]struct{}
	latest    *Link
	accepted  int
	closed    bool
	blackhole bool // new links start blackholed
	delay     time.Duration
}

// New starts a relay on 127.0.0.1:0 that forwards to target (host:port).
func New(target string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, links: make(map[*Link]struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.acceptLoop()
	return r, nil
}

// Addr returns the address the relay listens on (host:port).
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// SetTarget changes where new links are forwarded to; existing links keep
// their connection.
func (r *Relay) SetTarget(target string) {
	r.mu.Lock()
	r.target = target
	r.mu.Unlock()
}

// Accepted returns how many connections the relay has accepted so far.
func (r *Relay) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

// Links returns the links that are open now, oldest first.
func (r *Relay) Links() []*Link {
	r.mu.Lock()
	list := make([]*Link, 0, len(r.links))
	for l := range r.links {
		list = append(list, l)
	}
	r.mu.Unlock()
	for i := 1; i < len(list); i++ { // insertion sort by id: lists are short
		for j := i; j > 0 && list[j].id < list[j-1].id; j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
	return list
}

// Latest returns the most recently accepted link (open or not), or nil.
func (r *Relay) Latest() *Link {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// Blackhole blackholes every open link and every link accepted from now on,
// until Resume.
func (r *Relay) Blackhole() {
	r.mu.Lock()
	r.blackhole = true
	r.mu.Unlock()
	for _, l := range r.Links() {
		l.Blackhole()
	}
}

// Resume resumes every open link and lets new links forward at once again.
func (r *Relay) Resume() {
	r.mu.Lock()
	r.blackhole = false
	r.mu.Unlock()
	for _, l := range r.Links() {
		l.Resume()
	}
}

// Delay sets the latency of every open link and of links accepted from now on.
func (r *Relay) Delay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
	for _, l := range r.Links() {
		l.Delay(d)
	}
}

// CloseAll closes every open link normally (FIN to both sides). The relay
// keeps accepting.
func (r *Relay) CloseAll() {
	for _, l := range r.Links() {
		l.Close()
	}
}

// ResetAll resets every open link (RST to both sides). The relay keeps
// accepting.
func (r *Relay) ResetAll() {
	for _, l := range r.Links() {
		l.Reset()
	}
}

// Close stops accepting, closes every link and waits for every goroutine the
// relay started to exit.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	err := r.ln.Close()
	r.cancel()
	r.CloseAll()
	r.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = c.Close()
			return
		}
		r.accepted++
		l := &Link{
			r:      r,
			id:     r.accepted,
			client: c.(*net.TCPConn),
			done:   make(chan struct{}),
			resume: make(chan struct{}),
			delay:  r.delay,
		}
		if r.blackhole {
			l.holed = true
		} else {
			close(l.resume)
		}
		r.links[l] = struct{}{}
		r.latest = l
		target := r.target
		r.wg.Add(1)
		r.mu.Unlock()
		go l.run(target)
	}
}

func (r *Relay) remove(l *Link) {
	r.mu.Lock()
	delete(r.links, l)
	r.mu.Unlock()
}

// Link is one relayed connection: the accepted client side and the dialled
// target side.
type Link struct {
	r      *Relay
	id     int
	client *net.TCPConn

	mu     sync.Mutex
	server *net.TCPConn // nil until dialled
	holed  bool
	resume chan struct{} // closed while not blackholed
	delay  time.Duration
	halves int // directions that ended with EOF
	ended  bool

	done chan struct{} // closed once both sockets are closed
}

// ID returns the link's number: 1 for the relay's first accepted connection.
func (l *Link) ID() int { return l.id }

// Done returns a channel closed once the link's sockets are closed.
func (l *Link) Done() <-chan struct{} { return l.done }

// Blackhole stops forwarding in both directions; both sockets stay open and
// nothing is sent to either side (no data, no FIN, no RST) until Resume.
func (l *Link) Blackhole() {
	l.mu.Lock()
	if !l.holed {
		l.holed = true
		l.resume = make(chan struct{})
	}
	l.mu.Unlock()
}

// Resume forwards again, starting with what was held during the blackhole.
func (l *Link) Resume() {
	l.mu.Lock()
	if l.holed {
		l.holed = false
		close(l.resume)
	}
	l.mu.Unlock()
}

// Delay holds every chunk read from now on for d before forwarding it (in
// both directions). 0 turns the delay off.
func (l *Link) Delay(d time.Duration) {
	l.mu.Lock()
	l.delay = d
	l.mu.Unlock()
}

// Reset closes both sockets with an RST.
func (l *Link) Reset() { l.end(true) }

// Close closes both sockets normally.
func (l *Link) Close() { l.end(false) }

func (l *Link) end(rst bool) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	server := l.server
	l.mu.Unlock()
	for _, c := range []*net.TCPConn{l.client, server} {
		if c == nil {
			continue
		}
		if rst {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	}
	close(l.done)
	l.r.remove(l)
}

func (l *Link) run(target string) {
	defer l.r.wg.Done()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(l.r.ctx, 10*time.Second)
	sc, err := d.DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		l.end(false)
		return
	}
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		_ = sc.Close()
		return
	}
	l.server = sc.(*net.TCPConn)
	l.mu.Unlock()

	l.r.wg.Add(1)
	go func() {
		defer l.r.wg.Done()
		l.pipe(l.server, l.client)
	}()
	l.pipe(l.client, l.server)
}

// pipe forwards src to dst until src ends or the link ends.
func (l *Link) pipe(dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		at := time.Now()
		if n > 0 {
			if !l.hold(at) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				l.Reset() // the other side is gone: tell this one too
				return
			}
		}
		if err != nil {
			if !l.hold(at) {
				return
			}
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite()
				l.mu.Lock()
				l.halves++
				both := l.halves == 2
				l.mu.Unlock()
				if both {
					l.Close()
				}
			} else {
				l.Reset()
			}
			return
		}
	}
}

// hold applies the delay and waits while the link is blackholed. It reports
// false when the link ended meanwhile.
func (l *Link) hold(readAt time.Time) bool {
	l.mu.Lock()
	d := l.delay
	l.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(time.Until(readAt.Add(d)))
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return false
		}
	}
	for {
		l.mu.Lock()
		resume := l.resume
		l.mu.Unlock()
		select {
		case <-l.done:
			return false
		case <-resume:
		}
		l.mu.Lock()
		holed := l.holed
		l.mu.Unlock()
		if !holed {
			select {
			case <-l.done:
				return false
			default:
				return true
			}
		}
	}
}
