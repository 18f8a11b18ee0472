package netmsg

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmsg/netmsg/internal/transport"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// frame is one encoded envelope waiting to be written. A broadcast frame is
// shared by many sessions; refs counts them.
type frame struct {
	b    []byte
	refs atomic.Int32
}

// frameOverhead is what a queued frame costs beyond its buffer: the frame
// itself, its slot in the queue and the header gws builds around it. The
// queue limit counts it, so a flood of tiny frames is bounded in memory, not
// only in payload bytes.
const frameOverhead = 128

// cost is what f holds in memory while queued.
func (f *frame) cost() int { return cap(f.b) + frameOverhead }

var framePool = sync.Pool{New: func() any { return &frame{b: make([]byte, 0, 512)} }}

func getFrame() *frame {
	f := framePool.Get().(*frame)
	f.refs.Store(1)
	return f
}

func (f *frame) release() {
	if f.refs.Add(-1) != 0 {
		return
	}
	if cap(f.b) > 64<<10 {
		return // let big buffers go
	}
	f.b = f.b[:0]
	framePool.Put(f)
}

var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// rawPayload is a value already encoded with the session's serializer
// (what another node of a cluster sends): encodeFrame copies it as it is.
type rawPayload []byte

func encodeFrame(ser serializer.Serializer, limit int, kind wire.Kind, id uint64, name string, v any, timeoutMs uint64, md map[string]string) (*frame, error) {
	if len(md) > wire.MaxMetadataEntries {
		return nil, fmt.Errorf("netmsg: cannot send %s with %d metadata entries: at most %d", name, len(md), wire.MaxMetadataEntries)
	}
	var payload []byte
	var pb *[]byte
	var err error
	if raw, ok := v.(rawPayload); ok {
		payload = raw
	} else if am, ok := ser.(serializer.AppendMarshaler); ok {
		pb = payloadPool.Get().(*[]byte)
		payload, err = am.MarshalAppend((*pb)[:0], v)
	} else {
		payload, err = ser.Marshal(v)
	}
	if err != nil {
		if pb != nil {
			payloadPool.Put(pb)
		}
		return nil, fmt.Errorf("netmsg: cannot encode %s with the %s serializer: %w", name, ser.Name(), err)
	}
	f := getFrame()
	f.b = wire.AppendHeaderAndPayload(f.b[:0], kind, id, name, payload, timeoutMs, md)
	if pb != nil {
		if cap(payload) <= 64<<10 {
			*pb = payload[:0]
		}
		payloadPool.Put(pb)
	}
	if len(f.b) > limit {
		n := len(f.b)
		f.release()
		return nil, fmt.Errorf("%w: %s encodes to %d bytes, over the limit of %d", ErrMessageTooLarge, name, n, limit)
	}
	return f, nil
}

// outbound is a session's write side: a queue of frames bounded by what they
// cost in memory, one slot each for the next ping and pong (control frames
// coalesce: a pong answers the latest ping, RFC 6455 §5.5.3), and the close
// frame, which goes last. Nobody but the writer touches the socket: Send and
// every other caller queue and return. The writer is a goroutine that runs
// while there is something to write and exits when the queue is empty; a
// dispatcher may flush its own session's response itself (flushOwn), since
// it has nothing else to do for that session meanwhile.
type outbound struct {
	s *Session

	mu    sync.Mutex
	q     []*frame
	spare []*frame
	cost  int
	pong  []byte // the pong slot's payload, made on first use
	ping  [8]byte

	state   outState
	writing bool
	hard    bool // closed hard: keep the short deadline, write only the close frame
	pongSet bool
	pingSet bool
	// held: the read loop holds the writing (writing is set, no writer
	// runs) and writes what is queued just before its next read from the
	// socket (flushHeld). Set under mu, taken back by the read loop (unhold).
	held atomic.Bool

	closeCE *CloseError // the close frame's code and text, once queued
	kill    *time.Timer

	// Owned by the writer: when the write deadline was last set
	// (monoNanos), 0 when it must be set before the next write. The writer's other scratch space is not the session's
	// (writeScratch): an idle session does not hold it.
	wdeadline int64
}

// writeScratch is what a flush builds its batch in: the control payloads,
// copied out of their slots, and the frames for the socket. It is pooled,
// not kept per session.
type writeScratch struct {
	pong   [125]byte
	ping   [8]byte
	frames []transport.Frame
}

var scratchPool = sync.Pool{New: func() any { return new(writeScratch) }}

type outState uint8

const (
	outOpen    outState = iota
	outClosing          // the close frame is queued: nothing new is taken
	outDone             // nothing more is written
)

func (o *outbound) init(s *Session) { o.s = s }

// push queues a data frame. It fails with the session's *CloseError when the
// session is closing, and closes the session as a slow consumer when the
// frame would take the queue over its limit.
//
// When no writer runs, the caller writes what is queued itself, as far as
// the socket takes it at once (a non-blocking write: it never waits for the
// peer), and leaves the rest to a writer goroutine. That saves waking a
// writer for every frame of a session that sends one at a time.
func (o *outbound) push(f *frame) error {
	start, ok := o.enqueue(f)
	if !ok {
		return o.s.closedErr()
	}
	if start {
		if o.s.conn.CanWriteNow() {
			if o.s.calls.waking.Load() > 0 {
				// Callers of this session were just handed their
				// answers and are runnable: let them queue their next
				// requests first, so that they leave in this write.
				runtime.Gosched()
			}
			o.flushQuick()
		} else {
			o.s.ep.startWriter(o)
		}
	}
	return nil
}

// pushOwn queues a frame for the dispatcher that produced it and reports
// whether that dispatcher must flush it (no writer is running).
func (o *outbound) pushOwn(f *frame) (flush bool) {
	start, _ := o.enqueue(f)
	return start
}

// readLoopFlushAfter is how many answers the read loop holds at most before
// it writes them: pipelined requests are answered in groups rather than all
// at once after the last, so the peer starts on the first ones sooner (1×16
// 128 B protobuf ~0.91× → ~0.98× raw gws over five runs each; 4 KiB mixed;
// bench/README.md, item 8).
const readLoopFlushAfter = 4

// pushHeld queues a frame produced on the read loop. When no writer runs,
// the read loop takes the writing and does it just before its next read
// (flushHeld), or once readLoopFlushAfter frames wait, so what it produces
// meanwhile goes in the same write.
func (o *outbound) pushHeld(f *frame, canHold bool) {
	start, _, n := o.enqueueHold(f, canHold)
	if start {
		o.s.ep.startWriter(o)
		return
	}
	if n >= readLoopFlushAfter && o.held.Load() && o.held.Swap(false) {
		o.flushQuick()
	}
}

// enqueue adds f to the queue and reports whether the caller must start the
// writer. A frame that is refused (ok false) is released.
func (o *outbound) enqueue(f *frame) (start, ok bool) {
	start, ok, _ = o.enqueueHold(f, false)
	return start, ok
}

// enqueueHold is enqueue; with hold, the read loop takes the writing instead
// of starting a writer, when it can write without waiting on the socket. n
// is how many frames are queued with f.
func (o *outbound) enqueueHold(f *frame, hold bool) (start, ok bool, n int) {
	c := f.cost()
	max := o.s.ep.cfg.maxQueuedBytes
	o.mu.Lock()
	if o.state != outOpen {
		o.mu.Unlock()
		f.release()
		return false, false, 0
	}
	if o.cost > 0 && o.cost+c > max {
		would := o.cost + c
		o.mu.Unlock()
		f.release()
		o.s.ep.stats.slowConsumers.Add(1)
		o.s.abort(&CloseError{Reason: CloseSlowConsumer, Code: closeCodeTryAgainLater, Text: "outbound queue full",
			Err: fmt.Errorf("netmsg: %d bytes queued, limit %d", would, max)})
		return false, false, 0
	}
	o.q = append(o.q, f)
	o.cost += c
	start = !o.writing
	o.writing = true
	if start && hold {
		o.held.Store(true)
		start = false
	}
	n = len(o.q)
	o.mu.Unlock()
	return start, true, n
}

// flushHeld writes what the read loop holds, if anything; the read loop
// calls it just before it reads from the socket. It never waits for the
// socket (flushQuick): what the socket does not take goes on with a writer
// goroutine.
func (o *outbound) flushHeld() {
	if !o.held.Load() || !o.held.Swap(false) {
		return
	}
	o.flushQuick()
}

// releaseHeld hands what the read loop holds to a writer: the reading moves
// to another goroutine, or the read loop is about to wait.
func (o *outbound) releaseHeld() {
	if o.held.Load() && o.held.Swap(false) {
		o.s.ep.startWriter(o)
	}
}

// quickWrites is how many batches flushQuick writes at most on the calling
// goroutine: frames queued while it wrote (other senders' requests sharing the
// connection) go out in its next non-blocking write instead of waking a writer
// goroutine (1×16 128 B protobuf, median of nine alternated runs, 0.92× →
// 0.98× raw gws; bench/README.md item 9).
const quickWrites = 4

// flushQuick writes on the calling goroutine (the read loop, or a sender),
// the writing already taken, as far as the socket takes it at once: it never
// waits for the peer. It writes what is queued, and again what was queued
// meanwhile, up to quickWrites batches; anything the socket did not take, or
// still queued, or a close frame, goes on with a writer goroutine.
func (o *outbound) flushQuick() {
	sc := scratchPool.Get().(*writeScratch)
	defer scratchPool.Put(sc)
	for range quickWrites {
		o.mu.Lock()
		if o.state != outOpen || o.hard || o.closeCE != nil {
			o.mu.Unlock()
			o.s.ep.startWriter(o)
			return
		}
		batch, ponging, pinging, pongN := o.take(sc)
		if len(batch) == 0 && !ponging && !pinging {
			o.writing = false
			o.spare = batch
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()

		fs := sc.layout(batch, ponging, pinging, pongN)
		pending, err := o.s.conn.WriteFramesNow(fs)
		tail := 0
		if pending {
			tail = o.s.conn.PendingBytes()
		}
		sc.done(fs)
		o.settle(batch)
		// The rest the socket did not take still holds memory: it counts
		// against MaxQueuedBytes until the writer has written it (flush).
		o.cost += tail
		if err != nil {
			o.mu.Unlock()
			o.failed(err)
			return
		}
		more := len(o.q) > 0 || o.pongSet || o.pingSet || o.closeCE != nil
		if !pending && !more {
			o.writing = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		if pending {
			break // the socket is full: a writer waits for it
		}
	}
	o.s.ep.startWriter(o)
}

// take takes the queued frames and the control slots for a write; o.mu is
// held.
func (o *outbound) take(sc *writeScratch) (batch []*frame, ponging, pinging bool, pongN int) {
	ponging, pinging = o.pongSet, o.pingSet
	if ponging {
		pongN = copy(sc.pong[:], o.pong)
	}
	if pinging {
		sc.ping = o.ping
	}
	o.pongSet, o.pingSet = false, false
	batch = o.q
	o.q, o.spare = o.spare, nil
	return batch, ponging, pinging, pongN
}

// layout lays a batch out for the transport, control frames first.
func (sc *writeScratch) layout(batch []*frame, ponging, pinging bool, pongN int) []transport.Frame {
	fs := sc.frames[:0]
	if ponging {
		fs = append(fs, transport.Frame{Op: transport.OpPong, B: sc.pong[:pongN]})
	}
	if pinging {
		fs = append(fs, transport.Frame{Op: transport.OpPing, B: sc.ping[:]})
	}
	for _, f := range batch {
		fs = append(fs, transport.Frame{Op: transport.OpBinary, B: f.b})
	}
	return fs
}

// done gives the frames' space back after a write.
func (sc *writeScratch) done(fs []transport.Frame) {
	clear(fs)
	if cap(fs) <= 256 {
		sc.frames = fs[:0]
	}
}

// settle releases a written (or dropped) batch, takes its cost off the queue
// and keeps its slice for the next batch. It returns with o.mu held.
func (o *outbound) settle(batch []*frame) {
	n := releaseBatch(batch)
	o.mu.Lock()
	o.cost -= n
	if cap(batch) <= 256 {
		o.spare = batch[:0]
	}
}

// releaseBatch releases written (or dropped) frames and returns their cost.
func releaseBatch(batch []*frame) int {
	n := 0
	for i, f := range batch {
		n += f.cost()
		f.release()
		batch[i] = nil
	}
	return n
}

// control sets the ping or pong slot; a newer payload replaces an older one
// not yet written, so a flood of pings costs one slot.
func (o *outbound) control(op transport.Opcode, payload []byte) {
	if o.setControl(op, payload) {
		o.s.ep.startWriter(o)
	}
}

// setControl is control without starting the writer: it reports whether
// the caller must (the heartbeat hands many sessions to the writers at once).
func (o *outbound) setControl(op transport.Opcode, payload []byte) (start bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != outOpen {
		return false
	}
	if op == transport.OpPong {
		o.pong = append(o.pong[:0], payload...)
		o.pongSet = true
	} else {
		copy(o.ping[:], payload)
		o.pingSet = true
	}
	start = !o.writing
	o.writing = true
	return start
}

// closeGracefully queues the close frame after everything queued and drops
// the connection if the peer has not answered within DisconnectTimeout.
func (o *outbound) closeGracefully(ce *CloseError) {
	o.mu.Lock()
	if o.state != outOpen {
		o.mu.Unlock()
		return
	}
	o.state = outClosing
	o.setClose(ce)
	o.kill = time.AfterFunc(o.s.ep.cfg.disconnectTimeout, o.s.conn.Kill)
	start := !o.writing
	o.writing = true
	o.mu.Unlock()
	if start {
		o.s.ep.startWriter(o)
	}
}

// closeHard drops what is queued and writes only the close frame, giving the
// socket at most a second (or the write timeout, if shorter) to take it.
func (o *outbound) closeHard(ce *CloseError) {
	grace := min(time.Second, o.s.ep.cfg.writeTimeout)
	o.mu.Lock()
	if o.state != outOpen {
		o.mu.Unlock()
		return
	}
	o.state = outClosing
	o.hard = true
	o.dropQueued()
	o.setClose(ce)
	o.kill = time.AfterFunc(grace, o.s.conn.Kill)
	// Unblocks a writer stuck on a peer that does not read.
	o.s.conn.SetWriteDeadline(time.Now().Add(grace))
	start := !o.writing
	o.writing = true
	o.mu.Unlock()
	if start {
		o.s.ep.startWriter(o)
	}
}

func (o *outbound) setClose(ce *CloseError) { o.closeCE = ce }

// drop writes nothing more and drops the connection at once.
func (o *outbound) drop() {
	o.stop()
	o.s.conn.Kill()
}

// stop writes nothing more: the connection has ended (or the read loop
// writes the last frame itself).
func (o *outbound) stop() {
	o.mu.Lock()
	o.state = outDone
	o.dropQueued()
	o.mu.Unlock()
}

// hurry makes a graceful close that is still under way end within a second:
// Shutdown's ctx has ended. The close frame may still go out meanwhile.
func (o *outbound) hurry() {
	grace := min(time.Second, o.s.ep.cfg.writeTimeout)
	o.mu.Lock()
	if o.kill != nil {
		o.kill.Reset(grace)
	}
	o.mu.Unlock()
	o.s.conn.SetWriteDeadline(time.Now().Add(grace))
}

// release runs once the connection has ended: what is still queued is
// dropped (and counted).
func (o *outbound) release() {
	o.mu.Lock()
	o.state = outDone
	o.dropQueued()
	if o.kill != nil {
		o.kill.Stop()
	}
	o.mu.Unlock()
}

// dropQueued releases the queued frames, counting them; o.mu is held.
func (o *outbound) dropQueued() {
	if n := len(o.q); n > 0 {
		o.s.ep.stats.droppedOutbound.Add(uint64(n))
		o.s.ep.cfg.logger.Debug("netmsg: dropped queued frames of a closing session", "frames", n, "session", o.s.id)
	}
	for i, f := range o.q {
		f.release()
		o.q[i] = nil
	}
	o.q, o.cost = o.q[:0], 0
	o.pongSet, o.pingSet = false, false
}

// startWriter hands o to a parked writer goroutine, or starts one.
func (ep *endpoint) startWriter(o *outbound) {
	select {
	case ep.flushes <- o:
	default:
		ep.spawn(func() { ep.writer(o) })
	}
}

// writer flushes o (or, when o is nil, the sessions waiting in the fan-out
// queue: fanout.go), then parks for up to ep.workerIdle waiting for another
// session's queue, until the endpoint stops. A writer blocked on one stuck
// peer holds up no other session: the next one finds no parked writer and
// starts its own.
func (ep *endpoint) writer(o *outbound) {
	var idle *time.Timer
	var fw *fanWriting
	for {
		if o != nil {
			o.flush()
		} else {
			if fw == nil {
				fw = new(fanWriting)
			}
			ep.fanServe(fw)
		}
		if ep.workerIdle <= 0 {
			return
		}
		if idle == nil {
			idle = time.NewTimer(ep.workerIdle)
		} else {
			idle.Reset(ep.workerIdle)
		}
		select {
		case o = <-ep.flushes:
			idle.Stop()
		case <-ep.fanWake:
			o = nil
			idle.Stop()
		case <-idle.C:
			return
		case <-ep.stopping:
			idle.Stop()
			return
		}
	}
}

// flushOwn writes the queue on the calling dispatcher (see pushOwn).
func (o *outbound) flushOwn() { o.flush() }

// flush writes until there is nothing left. The caller has set o.writing.
func (o *outbound) flush() {
	sc := scratchPool.Get().(*writeScratch)
	defer scratchPool.Put(sc)
	if tail := o.s.conn.PendingBytes(); tail > 0 {
		// What a write that did not wait left (flushQuick) goes first.
		err := o.write(nil)
		o.mu.Lock()
		o.cost = max(o.cost-tail, 0) // a close may have emptied the queue meanwhile
		o.mu.Unlock()
		if err != nil {
			o.failed(err)
			return
		}
	}
	for {
		o.mu.Lock()
		if o.state == outDone {
			o.writing = false
			o.mu.Unlock()
			return
		}
		batch, ponging, pinging, pongN := o.take(sc)
		closing := o.closeCE != nil && len(batch) == 0 && !ponging && !pinging
		ce := o.closeCE
		if closing {
			o.closeCE = nil
			o.state = outDone
		}
		hard := o.hard
		if len(batch) == 0 && !ponging && !pinging && !closing {
			o.writing = false
			o.spare = batch
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()

		if closing {
			o.writeClose(ce.Code, closeText(ce.Text), hard)
			o.mu.Lock()
			o.writing = false
			o.mu.Unlock()
			return
		}
		var err error
		if !hard {
			fs := sc.layout(batch, ponging, pinging, pongN)
			err = o.write(fs)
			sc.done(fs)
		}
		o.settle(batch)
		o.mu.Unlock()
		if err != nil {
			o.failed(err)
			return
		}
	}
}

// failed stops the writing after a failed write.
func (o *outbound) failed(err error) {
	o.mu.Lock()
	o.writing = false
	if errors.Is(err, net.ErrClosed) {
		// The socket is closed under the session: by Close or Kill (the
		// cause is set already), by gws on the read loop after the peer's
		// close frame or a read error, or by whatever owns the net.Conn.
		// The read loop's next read fails, and ended records why: a
		// network error recorded here would win over the peer's close code
		// and its reconnect hint. A read loop waiting for mailbox room is
		// woken to go and read.
		o.state = outDone
		o.mu.Unlock()
		o.s.mbox.socketGone()
		return
	}
	o.mu.Unlock()
	o.s.writeFailed(err)
}

// write writes a batch of frames with the write deadline, refreshed when an
// eighth of it has passed, so a stuck peer is detected within 7/8 to 8/8 of
// WriteTimeout.
func (o *outbound) write(fs []transport.Frame) error {
	wt := o.s.ep.cfg.writeTimeout
	if now := time.Now(); o.wdeadline == 0 || time.Duration(monoNanos(now)-o.wdeadline) > wt/8 {
		o.s.conn.SetWriteDeadline(now.Add(wt))
		o.wdeadline = monoNanos(now)
	}
	return o.s.conn.WriteFrames(fs)
}

// writeClose writes the close frame. A graceful close then half-closes the
// socket and keeps reading until the peer answers (the kill timer bounds
// that); a hard close closes the socket at once.
func (o *outbound) writeClose(code uint16, text string, hard bool) {
	if hard {
		_ = o.s.conn.WriteClose(code, []byte(text))
		o.s.conn.Kill()
		return
	}
	o.s.conn.SetWriteDeadline(o.s.drainDeadline())
	o.wdeadline = 0
	if err := o.s.conn.WriteCloseFrame(code, []byte(text)); err != nil {
		o.s.conn.Kill()
	}
}

// queuedCost reports the bytes the queue holds, for tests.
func (o *outbound) queuedCost() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cost
}

// writeFailed closes a session whose socket write failed.
func (s *Session) writeFailed(err error) {
	if transport.IsTimeout(err) {
		s.ep.stats.slowConsumers.Add(1)
		s.abort(&CloseError{Reason: CloseSlowConsumer, Code: closeCodeTryAgainLater, Text: "write timed out", Err: err})
		return
	}
	s.abort(&CloseError{Reason: CloseNetworkError, Code: closeCodeAbnormal, Err: err})
}
