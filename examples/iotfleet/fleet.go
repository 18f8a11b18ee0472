package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/netmsg/netmsg"
)

// The contract between devices and the server.

// SignIn is the first thing a device says on every connection.
type SignIn struct {
	netmsg.Returns[SignInAck]
	DeviceID string
	Firmware string
}

// SignInAck tells the device how often to report.
type SignInAck struct{ IntervalMs int }

// Telemetry is a one-way reading.
type Telemetry struct {
	DeviceID string
	Seq      int
	TempC    float64
}

// SetInterval is a request from the server to a device.
type SetInterval struct {
	netmsg.Returns[IntervalAck]
	IntervalMs int
}

// IntervalAck confirms the new interval.
type IntervalAck struct {
	DeviceID   string
	IntervalMs int
}

// hub is what the server knows; it outlives a server restart.
type hub struct {
	mu        sync.Mutex
	devices   map[string]*deviceStats
	bySession map[string]string // session ID → device ID
}

type deviceStats struct {
	signIns   int
	readings  int
	lastSeq   int
	intervals int
}

func newHub() *hub {
	return &hub{devices: make(map[string]*deviceStats), bySession: make(map[string]string)}
}

func (h *hub) device(id string) *deviceStats {
	d := h.devices[id]
	if d == nil {
		d = &deviceStats{}
		h.devices[id] = d
	}
	return d
}

// signedIn counts the devices that signed in at least n times.
func (h *hub) signedIn(n int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := 0
	for _, d := range h.devices {
		if d.signIns >= n {
			c++
		}
	}
	return c
}

// server is one run of the fleet's server.
type server struct {
	*netmsg.Server
	addr   string
	served chan struct{} // closed when Serve has returned
}

// shutdown drains the server and waits for Serve to return.
func (s *server) shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := s.Shutdown(ctx)
	<-s.served
	return err
}

// startServer serves the hub's handlers on addr until it is shut down.
func startServer(h *hub, addr string) (*server, error) {
	srv := netmsg.NewServer(netmsg.WithOnSessionClose(func(s *netmsg.Session, _ *netmsg.CloseError) {
		h.mu.Lock()
		delete(h.bySession, s.ID())
		h.mu.Unlock()
	}))
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, in SignIn) (SignInAck, error) {
		if in.DeviceID == "" {
			return SignInAck{}, netmsg.NewError(netmsg.CodeInvalidArgument, "device id is required")
		}
		h.mu.Lock()
		h.device(in.DeviceID).signIns++
		h.bySession[s.ID()] = in.DeviceID
		h.mu.Unlock()
		return SignInAck{IntervalMs: 100}, nil
	})
	netmsg.AddMessageHandler(srv, func(ctx context.Context, s *netmsg.Session, t Telemetry) {
		h.mu.Lock()
		d := h.device(t.DeviceID)
		d.readings++
		d.lastSeq = max(d.lastSeq, t.Seq)
		h.mu.Unlock()
	})
	l, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &server{Server: srv, addr: l.Addr().String(), served: make(chan struct{})}
	go func() {
		defer close(s.served)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("serve:", err)
		}
	}()
	return s, nil
}

// listen listens on addr, retrying briefly: after a restart the old listener
// may take a moment to let go of the port.
func listen(addr string) (net.Listener, error) {
	var err error
	for range 50 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// device is one simulated device: a client that signs in on every
// connection, reports at the interval the server sets, and answers the
// server's requests.
type device struct {
	id       string
	client   *netmsg.Client
	interval atomic.Int64 // ms
	connects atomic.Int32
	hinted   atomic.Int32 // closes by a server shutdown that carried a reconnect hint
}

func newDevice(id, url string) *device {
	d := &device{id: id}
	d.interval.Store(100)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = time.Second
	b.MaxElapsedTime = 0 // never give up
	d.client = netmsg.NewClient(url,
		netmsg.WithReconnect(b),
		netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			if ce.Reason == netmsg.CloseServerShutdown && ce.ReconnectAfter() > 0 {
				d.hinted.Add(1)
			}
		}),
		netmsg.WithOnConnect(func(ctx context.Context, s *netmsg.Session) error {
			ack, err := netmsg.SendRequest(ctx, s, SignIn{DeviceID: d.id, Firmware: "1.4.2"})
			if err != nil {
				return err
			}
			d.interval.Store(int64(ack.IntervalMs))
			d.connects.Add(1)
			return nil
		}))
	netmsg.AddRequestHandler(d.client, func(ctx context.Context, s *netmsg.Session, r SetInterval) (IntervalAck, error) {
		if r.IntervalMs < 10 {
			return IntervalAck{}, netmsg.Errorf(netmsg.CodeOutOfRange, "interval %d ms is below 10 ms", r.IntervalMs)
		}
		d.interval.Store(int64(r.IntervalMs))
		return IntervalAck{DeviceID: d.id, IntervalMs: r.IntervalMs}, nil
	})
	return d
}

// report sends readings until ctx ends. While the client reconnects, Send
// waits for the connection (wait-for-ready), bounded by a short timeout so a
// reading that cannot go out is skipped rather than queued forever.
func (d *device) report(ctx context.Context) {
	temp := 18 + rand.Float64()*4
	for seq := 1; ; seq++ {
		t := time.NewTimer(time.Duration(d.interval.Load()) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		temp += rand.Float64() - 0.5
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = d.client.Send(sctx, Telemetry{DeviceID: d.id, Seq: seq, TempC: temp})
		cancel()
	}
}

// run starts the server and the fleet, restarts the server halfway, changes
// every device's interval from the server, and reports.
func run(ctx context.Context, out io.Writer, n int, duration time.Duration) error {
	start := time.Now()
	h := newHub()
	srv, err := startServer(h, "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := srv.addr
	url := "ws://" + addr + "/"
	printf(out, "server: listening on %s", url)

	// The fleet: every device connects, signs in from OnConnect, reports.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	devices := make([]*device, n)
	var reporters sync.WaitGroup
	for i := range devices {
		d := newDevice(fmt.Sprintf("dev-%04d", i), url)
		devices[i] = d
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		err := d.client.Connect(cctx)
		ccancel()
		if err != nil {
			closeAll(devices[:i+1])
			_ = srv.shutdown(5 * time.Second)
			return fmt.Errorf("%s: connect: %w", d.id, err)
		}
		reporters.Add(1)
		go func() { defer reporters.Done(); d.report(ctx) }()
	}
	printf(out, "fleet: %d devices connected and signed in (%v)", n, time.Since(start).Round(time.Millisecond))

	stopAll := func() {
		cancel()
		reporters.Wait()
		closeAll(devices)
	}

	sleep(ctx, duration/2)

	// Restart the server on the same address; the devices come back by
	// themselves and sign in again.
	if err := srv.shutdown(5 * time.Second); err != nil {
		stopAll()
		return fmt.Errorf("shutdown: %w", err)
	}
	printf(out, "server: shut down")
	if srv, err = startServer(h, addr); err != nil {
		stopAll()
		return fmt.Errorf("restart: %w", err)
	}
	restarted := time.Now()
	printf(out, "server: restarted on %s", url)
	if !waitFor(ctx, 20*time.Second, func() bool { return h.signedIn(2) == n }) {
		stopAll()
		_ = srv.shutdown(5 * time.Second)
		return fmt.Errorf("only %d of %d devices signed in again after the restart", h.signedIn(2), n)
	}
	hinted := 0
	for _, d := range devices {
		if d.hinted.Load() > 0 {
			hinted++
		}
	}
	printf(out, "fleet: %d devices were told 1001 with a reconnect hint; all %d reconnected and signed in again within %v",
		hinted, n, time.Since(restarted).Round(time.Millisecond))

	// A request from the server to every device.
	acks, failed := setIntervals(srv.Server, 50)
	printf(out, "server → devices: SetInterval{50 ms}: %d acknowledged, %d failed", acks, failed)

	sleep(ctx, duration-time.Since(start))
	stopAll()
	if err := srv.shutdown(5 * time.Second); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}

	h.mu.Lock()
	readings, silent := 0, 0
	for _, d := range h.devices {
		readings += d.readings
		if d.readings == 0 {
			silent++
		}
	}
	h.mu.Unlock()
	printf(out, "summary: %d devices, %d readings in %v, %d silent devices, %d SetInterval acks",
		len(h.devices), readings, time.Since(start).Round(time.Millisecond), silent, acks)
	switch {
	case len(h.devices) != n:
		return fmt.Errorf("%d devices reported, want %d", len(h.devices), n)
	case silent > 0:
		return fmt.Errorf("%d devices sent no readings", silent)
	case acks != n:
		return fmt.Errorf("%d of %d devices acknowledged SetInterval", acks, n)
	}
	return nil
}

// setIntervals asks every connected device to report every ms milliseconds,
// all at once, and counts the answers.
func setIntervals(srv *netmsg.Server, ms int) (acks, failed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for s := range srv.Sessions() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ack, err := netmsg.SendRequest(ctx, s, SetInterval{IntervalMs: ms})
			mu.Lock()
			defer mu.Unlock()
			if err != nil || ack.IntervalMs != ms {
				failed++
				return
			}
			acks++
		}()
	}
	wg.Wait()
	return acks, failed
}

func closeAll(devices []*device) {
	var wg sync.WaitGroup
	for _, d := range devices {
		if d == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = d.client.Close() }()
	}
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitFor polls cond until it holds or the timeout or ctx ends.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		sleep(ctx, 10*time.Millisecond)
	}
	return true
}
