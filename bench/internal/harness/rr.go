package harness

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Contender names.
const (
	GWSRaw      = "gws-raw"      // raw gws echo: one frame out, one back (FIFO, no ids)
	GWSMux      = "gws-mux"      // 8-byte id + body, a map of waiters, on gws
	NetmsgJSON  = "netmsg-json"  // netmsg, JSON serializer
	NetmsgProto = "netmsg-proto" // netmsg, protobuf serializer
	GRPC        = "grpc"         // gRPC-go unary, interop TestService.UnaryCall

	// Variants with WithSessionConcurrency(16) on the server: handlers of one
	// session may run in parallel (arrival order is then not kept).
	NetmsgJSONC16  = "netmsg-json-c16"
	NetmsgProtoC16 = "netmsg-proto-c16"
	ARPC           = "arpc" // lesismal/arpc over TCP

	// Variants with WithInlineHandlers(false) on both ends: every handler
	// on a dispatcher goroutine, as before inline handlers (for A/B runs;
	// they run only when named in -kinds).
	NetmsgJSONDispatch  = "netmsg-json-dispatch"
	NetmsgProtoDispatch = "netmsg-proto-dispatch"
)

// RRAblationKinds are the A/B variants, run only when asked for by name.
var RRAblationKinds = []string{NetmsgJSONDispatch, NetmsgProtoDispatch}

// RRKinds lists the round-trip contenders in table order.
var RRKinds = []string{GWSRaw, GWSMux, NetmsgJSON, NetmsgProto, GRPC, ARPC}

// RRVariantKinds are extra rows for the shared-connection shape (1×16).
var RRVariantKinds = []string{NetmsgJSONC16, NetmsgProtoC16}

// System is a server and its client connections, ready for round trips.
type System interface {
	// NewCaller returns a caller on client connection conn. A caller is
	// used by one goroutine; several callers may share a connection.
	NewCaller(conn int) Caller
	Close()
}

// Caller makes one round trip of the shape's body and checks the answer.
type Caller interface{ Call() error }

// Shape is a round-trip workload.
type Shape struct {
	Conns, InFlight, Size int
}

// Name is e.g. "16x1 128B".
func (s Shape) Name() string { return fmt.Sprintf("%dx%d %s", s.Conns, s.InFlight, SizeName(s.Size)) }

// SizeName prints 128 as "128B" and 4096 as "4KiB".
func SizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// StartRR starts contender kind for shape sh.
func StartRR(kind string, sh Shape) (System, error) {
	start := map[string]func(conns, inflight, size int) (System, error){
		GWSRaw:              startGWSRaw,
		GWSMux:              startGWSMux,
		NetmsgJSON:          startNetmsg(NetmsgJSON),
		NetmsgProto:         startNetmsg(NetmsgProto),
		NetmsgJSONC16:       startNetmsg(NetmsgJSONC16),
		NetmsgProtoC16:      startNetmsg(NetmsgProtoC16),
		NetmsgJSONDispatch:  startNetmsg(NetmsgJSONDispatch),
		NetmsgProtoDispatch: startNetmsg(NetmsgProtoDispatch),
		GRPC:                startGRPC,
		ARPC:                startARPC,
	}[kind]
	if start == nil {
		return nil, fmt.Errorf("harness: unknown contender %q", kind)
	}
	sys, err := start(sh.Conns, sh.InFlight, sh.Size)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind, sh.Name(), err)
	}
	return sys, nil
}

// Window is what one measurement window saw, for the whole process.
type Window struct {
	Ops       uint64
	Elapsed   time.Duration
	Mallocs   uint64        // heap objects allocated during the window
	Bytes     uint64        // heap bytes allocated during the window
	Syscalls  uint64        // read and write system calls of the process during the window (/proc/self/io)
	CPU       time.Duration // user + system CPU time of the process during the window
	GoCreated uint64        // goroutines created during the window
	Hist      Hist
}

// CPUPerOp returns process CPU time per operation.
func (w *Window) CPUPerOp() time.Duration { return w.CPU / time.Duration(max(w.Ops, 1)) }

// GoPerOp returns goroutines created per operation.
func (w *Window) GoPerOp() float64 { return float64(w.GoCreated) / float64(max(w.Ops, 1)) }

// SyscallsPerOp returns read+write system calls per operation (0 where
// /proc/self/io is unavailable).
func (w *Window) SyscallsPerOp() float64 { return float64(w.Syscalls) / float64(max(w.Ops, 1)) }

// PerSec returns operations per second.
func (w *Window) PerSec() float64 { return float64(w.Ops) / w.Elapsed.Seconds() }

// AllocsPerOp returns heap allocations per operation.
func (w *Window) AllocsPerOp() float64 { return float64(w.Mallocs) / float64(max(w.Ops, 1)) }

// BytesPerOp returns heap bytes allocated per operation.
func (w *Window) BytesPerOp() float64 { return float64(w.Bytes) / float64(max(w.Ops, 1)) }

func callers(sys System, sh Shape) []Caller {
	cs := make([]Caller, sh.Conns*sh.InFlight)
	for i := range cs {
		cs[i] = sys.NewCaller(i / sh.InFlight)
	}
	return cs
}

const (
	phaseWarm int32 = iota
	phaseMeasure
	phaseStop
)

// RunWindow runs conns×inflight goroutines making round trips back to back:
// warm first, then d measured. Round trips, latencies and the process's heap
// allocations are counted only inside the measured part.
func RunWindow(sys System, sh Shape, warm, d time.Duration) (*Window, error) {
	cs := callers(sys, sh)
	hists := make([]Hist, len(cs))
	var phase atomic.Int32
	var ops atomic.Uint64
	var wg sync.WaitGroup
	errc := make(chan error, len(cs))
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[i]
			for {
				t0 := time.Now()
				if err := c.Call(); err != nil {
					errc <- err
					phase.Store(phaseStop)
					return
				}
				switch phase.Load() {
				case phaseMeasure:
					h.Record(time.Since(t0))
					ops.Add(1)
				case phaseStop:
					return
				}
			}
		}()
	}
	w := &Window{}
	time.Sleep(warm)
	c0 := snapshot()
	t0 := time.Now()
	phase.CompareAndSwap(phaseWarm, phaseMeasure)
	time.Sleep(d)
	stopped := phase.Swap(phaseStop) == phaseStop
	w.Ops = ops.Load()
	w.Elapsed = time.Since(t0)
	w.since(c0)
	if err := waitGroup(&wg, 60*time.Second); err != nil {
		return nil, err
	}
	if stopped {
		return nil, <-errc
	}
	for i := range hists {
		w.Hist.Merge(&hists[i])
	}
	return w, nil
}

// RunN makes exactly n round trips spread over conns×inflight goroutines
// (for testing.B). It counts allocations like RunWindow.
func RunN(sys System, sh Shape, n int, start func()) (*Window, error) {
	cs := callers(sys, sh)
	hists := make([]Hist, len(cs))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, len(cs))
	gate := make(chan struct{})
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			h := &hists[i]
			for next.Add(1) <= int64(n) && !failed.Load() {
				t0 := time.Now()
				if err := c.Call(); err != nil {
					errc <- err
					failed.Store(true)
					return
				}
				h.Record(time.Since(t0))
			}
		}()
	}
	w := &Window{Ops: uint64(n)}
	c0 := snapshot()
	if start != nil {
		start()
	}
	t0 := time.Now()
	close(gate)
	err := waitGroup(&wg, 10*time.Minute)
	w.Elapsed = time.Since(t0)
	w.since(c0)
	if err != nil {
		return nil, err
	}
	if failed.Load() {
		return nil, <-errc
	}
	for i := range hists {
		w.Hist.Merge(&hists[i])
	}
	return w, nil
}

func waitGroup(wg *sync.WaitGroup, limit time.Duration) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("harness: workers did not stop within %v (a call hangs)", limit)
	}
}
