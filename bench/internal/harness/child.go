package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lesismal/arpc"
	"github.com/lxzan/gws"
	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/bench/internal/benchpb"
	"github.com/netmsg/netmsg/serializer"
)

// RawClient prefixed to a netmsg contender's name has the child dial gws
// clients instead of netmsg clients: the server's fan-out is then timed
// with the same receivers for every contender.
const RawClient = "raw:"

// The broadcast and idle-memory shapes hold 10,000 connections. Both ends in
// one process would need 20,000 descriptors, over this machine's hard limit,
// and would mix the client's memory into the server's, so the clients run in
// a child process: the same binary started again with childEnv set. The
// parent talks to it over stdin/stdout, one command and one answer a line.

const childEnv = "NETMSGBENCH_CHILD"

// MaybeChild turns the process into a client child when childEnv is set. Call
// it first thing in main and in TestMain.
func MaybeChild() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	RaiseFileLimit()
	if err := runChild(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "netmsgbench child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the new soft limit.
func RaiseFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// childClients is what the child holds: n connections of one contender that
// count what they receive.
type childClients struct {
	count  atomic.Int64
	target atomic.Int64
	done   chan struct{}
	closes []func()
	wg     sync.WaitGroup
}

func (c *childClients) received() {
	if c.count.Add(1) == c.target.Load() {
		select {
		case c.done <- struct{}{}:
		default:
		}
	}
}

type childGWS struct {
	gws.BuiltinEventHandler
	cc *childClients
}

func (h childGWS) OnMessage(_ *gws.Conn, m *gws.Message) {
	_ = m.Close()
	h.cc.received()
}

func (c *childClients) dial(kind, addr string, n int) error {
	switch kind {
	case GWSRaw, RawClient + NetmsgJSON, RawClient + NetmsgProto:
		// gws clients; against a netmsg server they offer its subprotocol
		// and count its frames without decoding them.
		var proto []string
		if kind != GWSRaw {
			proto = []string{serializer.Subprotocol(serializerFor(kind[len(RawClient):]))}
		}
		conns := make([]*gws.Conn, n)
		err := parallel(n, func(i int) (err error) {
			conns[i], err = dialGWS(addr, childGWS{cc: c}, &c.wg, proto...)
			return err
		})
		c.closes = append(c.closes, func() {
			for _, conn := range conns {
				if conn != nil {
					_ = conn.NetConn().Close()
				}
			}
			c.wg.Wait()
		})
		return err
	case NetmsgJSON, NetmsgProto:
		clients, err := dialNetmsg(kind, addr, n)
		if err != nil {
			return err
		}
		for _, cli := range clients {
			if kind == NetmsgProto {
				netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, *benchpb.Note) { c.received() })
			} else {
				netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, Note) { c.received() })
			}
		}
		c.closes = append(c.closes, func() { closeNetmsgClients(clients) })
		return nil
	case ARPC:
		h := arpc.DefaultHandler.Clone()
		h.Handle("/bc", func(*arpc.Context) { c.received() })
		clients, err := dialARPC(addr, n, h)
		c.closes = append(c.closes, func() { closeARPC(clients) })
		return err
	case GRPC:
		ccs, err := dialGRPC(addr, n)
		c.closes = append(c.closes, func() { closeGRPC(ccs) })
		return err
	}
	return fmt.Errorf("unknown contender %q", kind)
}

func (c *childClients) close() {
	for _, f := range c.closes {
		f()
	}
	c.closes = nil
}

// runChild serves the parent's commands:
//
//	dial KIND ADDR N   connect N clients → "ok"
//	arm N              reset the counter; print "done" once N messages arrived → "armed"
//	mem                GC, then "mem HEAP STACK GOROUTINES"
//	close              close every client → "closed"
func runChild(in io.Reader, out io.Writer) error {
	var wmu sync.Mutex
	reply := func(format string, a ...any) {
		wmu.Lock()
		fmt.Fprintf(out, format+"\n", a...)
		wmu.Unlock()
	}
	cc := &childClients{done: make(chan struct{}, 1)}
	defer cc.close()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "dial":
			n, _ := strconv.Atoi(f[3])
			if err := cc.dial(f[1], f[2], n); err != nil {
				reply("err %s", strings.ReplaceAll(err.Error(), "\n", " "))
				continue
			}
			reply("ok")
		case "arm":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			select {
			case <-cc.done:
			default:
			}
			cc.count.Store(0)
			cc.target.Store(n)
			go func() {
				select {
				case <-cc.done:
					reply("done")
				case <-time.After(60 * time.Second):
					reply("timeout %d", cc.count.Load())
				}
			}()
			reply("armed")
		case "mem":
			heap, stack, g := MemNow()
			reply("mem %d %d %d", heap, stack, g)
		case "close":
			cc.close()
			reply("closed")
		default:
			reply("err unknown command %q", f[0])
		}
	}
	return sc.Err()
}

// MemNow collects garbage twice and returns the live heap, the stack in use
// and the number of goroutines.
func MemNow() (heap, stack uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
}

// Child is the parent's handle on a client child process.
type Child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// StartChild starts this executable again as a client child.
func StartChild() (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Child{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c, nil
}

// Send writes one command.
func (c *Child) Send(cmd string) error {
	_, err := io.WriteString(c.in, cmd+"\n")
	return err
}

// Next waits for the child's next line.
func (c *Child) Next(limit time.Duration) (string, error) {
	select {
	case l, ok := <-c.lines:
		if !ok {
			return "", errors.New("harness: child exited")
		}
		if strings.HasPrefix(l, "err ") {
			return "", errors.New("harness: child: " + l[4:])
		}
		return l, nil
	case <-time.After(limit):
		return "", fmt.Errorf("harness: child did not answer within %v", limit)
	}
}

// Do sends cmd and waits for the answer.
func (c *Child) Do(cmd string, limit time.Duration) (string, error) {
	if err := c.Send(cmd); err != nil {
		return "", err
	}
	return c.Next(limit)
}

// Mem asks the child for its heap, stack and goroutine count.
func (c *Child) Mem() (heap, stack uint64, g int, err error) {
	l, err := c.Do("mem", time.Minute)
	if err != nil {
		return 0, 0, 0, err
	}
	_, err = fmt.Sscanf(l, "mem %d %d %d", &heap, &stack, &g)
	return heap, stack, g, err
}

// Close ends the child.
func (c *Child) Close() error {
	_ = c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		_ = c.cmd.Process.Kill()
		return <-done
	}
}
