package netmsg

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/netmsg/netmsg/serializer"
	"google.golang.org/protobuf/proto"
)

// Request is implemented by every request type; Resp is the only response
// type the request accepts. Embed Returns[Resp] in a struct to implement it,
// or give a generated protobuf type the method
//
//	func (*WeatherRequest) ResponseType() *WeatherResponse { return nil }
type Request[Resp any] interface{ ResponseType() Resp }

// Returns is embedded in a request struct to declare its response type:
//
//	type WeatherRequest struct {
//		netmsg.Returns[WeatherResponse]
//		City string
//	}
//
// It has no fields and adds nothing to the encoded payload.
type Returns[Resp any] struct{}

// ResponseType names the response type; it is never called by the library.
func (Returns[Resp]) ResponseType() (r Resp) { return r }

// MessageHandler handles a one-way message of type T. ctx is the session's
// base context and ends when the session closes.
type MessageHandler[T any] func(ctx context.Context, s *Session, msg T)

// RequestHandler answers a request of type Req with its declared response
// type. ctx carries the caller's deadline and ends when the caller cancels,
// the deadline passes or the session closes. An *Error reaches the caller with
// its code and message; context.DeadlineExceeded and context.Canceled (also
// wrapped, as ctx.Err() returns them) reach it as CodeDeadlineExceeded and
// CodeCanceled; any other error reaches it as CodeInternal "internal error"
// and is reported locally through OnError.
type RequestHandler[Req Request[Resp], Resp any] func(ctx context.Context, s *Session, req Req) (Resp, error)

// Registrar is where handlers are registered: *Server and *Client.
type Registrar interface {
	handlerRegistry() *registry
}

// AddMessageHandler registers h for messages of type T. Several handlers may
// be registered for one type; all run, in registration order. It is safe to
// call at any time, also while sessions are live. The returned function
// removes the handler.
func AddMessageHandler[T any](r Registrar, h MessageHandler[T]) (remove func()) {
	if h == nil {
		panic("netmsg: AddMessageHandler with a nil handler")
	}
	return r.handlerRegistry().addMessage(newTypeInfo[T](), &messageHandler[T]{h: h})
}

// AddRequestHandler registers h as the handler for requests of type Req. One
// request handler per type: registering a second panics. The returned
// function removes the handler.
func AddRequestHandler[Req Request[Resp], Resp any](r Registrar, h RequestHandler[Req, Resp]) (remove func()) {
	if h == nil {
		panic("netmsg: AddRequestHandler with a nil handler")
	}
	ti := newTypeInfo[Req]()
	run := func(ctx context.Context, s *Session, req Req) (any, error) {
		resp, err := h(ctx, s, req)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	decode := func(s *Session, in *inbound) (context.Context, Req, error) {
		// The request's value and its handler's context, in one allocation:
		// the value lives as long as the handler keeps it, and the small
		// context with it.
		b := new(struct {
			c handlerCtx
			v Req
		})
		ctx := s.bindHandlerCtx(in, &b.c)
		err := s.ser.Unmarshal(in.env.Payload, &b.v)
		return ctx, b.v, err
	}
	if reflect.TypeFor[Req]().Kind() == reflect.Pointer {
		decode = decodeNextToCtx[Req]()
	}
	return r.handlerRegistry().addRequest(ti, func(s *Session, in *inbound) (any, error) {
		ctx, req, err := decode(s, in)
		in.closeMsg()
		if err != nil {
			return nil, Errorf(CodeInvalidArgument, "cannot decode %s: %v", ti.name, err)
		}
		if s.ep.ix != nil {
			return interceptRequest(ctx, s, ti.name, req, run)
		}
		return run(ctx, s, req)
	})
}

// decodeNextToCtx returns the decoder of a request of pointer type T (a
// protobuf message, *T): the value it points to is allocated together with
// the handler's context, in a struct type made once per request type, so a
// request costs one allocation for both.
func decodeNextToCtx[T any]() func(s *Session, in *inbound) (context.Context, T, error) {
	bt := reflect.StructOf([]reflect.StructField{
		{Name: "C", Type: reflect.TypeFor[handlerCtx]()},
		{Name: "V", Type: reflect.TypeFor[T]().Elem()},
	})
	off := bt.Field(1).Offset
	return func(s *Session, in *inbound) (context.Context, T, error) {
		p := reflect.New(bt).UnsafePointer()
		v := unsafe.Add(p, off)
		req := *(*T)(unsafe.Pointer(&v)) // T is a pointer type
		ctx := s.bindHandlerCtx(in, (*handlerCtx)(p))
		return ctx, req, s.ser.Unmarshal(in.env.Payload, req)
	}
}

// Peer is what requests and messages are sent to: *Session and *Client.
type Peer interface {
	// sessionFor returns the session to send on, waiting for a connection
	// until ctx ends or the deadline (if not zero) passes.
	sessionFor(ctx context.Context, deadline time.Time) (*Session, error)
	defaultRequestTimeout() time.Duration
}

// SendRequest sends req to p and waits for its typed response. Without a
// deadline on ctx the endpoint's RequestTimeout applies. When ctx ends first
// the request is cancelled on the peer (its handler's ctx is cancelled), a late
// response is dropped, and the error satisfies errors.Is with
// context.DeadlineExceeded or context.Canceled. A handler's error arrives as
// an *Error; a session that closes fails the call at once with a *CloseError.
// Requests are never resent: delivery is at most once.
func SendRequest[Resp any](ctx context.Context, p Peer, req Request[Resp]) (Resp, error) {
	var zero Resp
	var deadline time.Time // the default timeout, when ctx has no deadline
	if _, ok := ctx.Deadline(); !ok {
		deadline = time.Now().Add(p.defaultRequestTimeout())
	}
	s, err := p.sessionFor(ctx, deadline)
	if err != nil {
		return zero, err
	}
	if s.ep.ix != nil {
		return sendRequestIntercepted(ctx, s, req, deadline)
	}
	return sendRequestOn(ctx, s, req, deadline)
}

// sendRequestOn is SendRequest on s, past its interceptors.
func sendRequestOn[Resp any](ctx context.Context, s *Session, req Request[Resp], deadline time.Time) (Resp, error) {
	var zero Resp
	in, err := s.call(ctx, req, deadline)
	if err != nil {
		return zero, err
	}
	resp, err := decodeAs[Resp](s.ser, in.env.Payload)
	in.recycle()
	if err != nil {
		return zero, Errorf(CodeInvalidArgument, "cannot decode response %T: %v", zero, err)
	}
	return resp, nil
}

// decodeAs decodes data into a new T; a pointer T gets a new element. Each
// branch allocates the one value it decodes into, nothing else.
func decodeAs[T any](ser serializer.Serializer, data []byte) (T, error) {
	if t := reflect.TypeFor[T](); t.Kind() == reflect.Pointer {
		v := reflect.New(t.Elem()).Interface().(T)
		return v, ser.Unmarshal(data, v)
	}
	v := new(T)
	err := ser.Unmarshal(data, v)
	return *v, err
}

// TypeName returns the name v travels under: a protobuf message's full name
// ("game.v1.Move"), else what a MessageType() string method returns, else the
// Go package name and type name ("contract.WeatherRequest"), the same for a
// pointer and its element.
func TypeName(v any) string {
	switch m := v.(type) {
	case proto.Message:
		return string(m.ProtoReflect().Descriptor().FullName())
	case interface{ MessageType() string }:
		if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || !rv.IsNil() {
			return m.MessageType()
		}
	}
	return typeNameOf(reflect.TypeOf(v))
}

var typeNames sync.Map // reflect.Type → string

// typeNameOf computes a type's wire name once and caches it.
func typeNameOf(t reflect.Type) string {
	if t == nil {
		return "<nil>"
	}
	if n, ok := typeNames.Load(t); ok {
		return n.(string)
	}
	base := t
	for base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	var name string
	switch inst := reflect.New(base).Interface().(type) {
	case proto.Message:
		name = string(inst.ProtoReflect().Descriptor().FullName())
	case interface{ MessageType() string }:
		name = inst.MessageType()
	default:
		name = base.String()
	}
	typeNames.Store(t, name)
	return name
}

type typeInfo struct {
	name string
	typ  reflect.Type
}

func newTypeInfo[T any]() typeInfo {
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Interface {
		panic(fmt.Sprintf("netmsg: handler type %v is an interface; register a concrete type", t))
	}
	return typeInfo{name: typeNameOf(t), typ: t}
}

// requestInvoker decodes a request, runs the typed handler and encodes the
// response payload.
type requestInvoker func(s *Session, in *inbound) (any, error)

// messageDispatcher is implemented by the typed list of a type's message handlers.
type messageDispatcher interface {
	dispatch(ctx context.Context, s *Session, in *inbound) error
}

type messageHandler[T any] struct{ h MessageHandler[T] }

// messageList is an immutable list of the handlers for one message type.
type messageList[T any] []*messageHandler[T]

func (l messageList[T]) dispatch(ctx context.Context, s *Session, in *inbound) error {
	msg, err := decodeAs[T](s.ser, in.env.Payload)
	in.closeMsg()
	if err != nil {
		return err
	}
	if s.ep.ix != nil {
		interceptMessage(ctx, s, msg, l.run)
		return nil
	}
	l.run(ctx, s, msg)
	return nil
}

// run calls every handler in the list with msg, in registration order.
func (l messageList[T]) run(ctx context.Context, s *Session, msg T) {
	for _, h := range l {
		h.h(ctx, s, msg)
	}
}

// entry is what one wire type name maps to. Entries are immutable; a change
// replaces the entry in a new table.
type entry struct {
	typeInfo
	request  requestInvoker
	messages messageDispatcher // a messageList[T], nil when empty
	nmsgs    int
}

// registry maps wire type names to handlers. Reads are lock-free (one atomic
// load of an immutable map); writes copy the map under a mutex.
type registry struct {
	mu    sync.Mutex
	table atomic.Pointer[map[string]*entry]
}

func (r *registry) lookup(name []byte) *entry {
	t := r.table.Load()
	if t == nil {
		return nil
	}
	return (*t)[string(name)]
}

// update replaces (or removes, when f returns nil) the entry for ti.
func (r *registry) update(ti typeInfo, f func(old *entry) *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next map[string]*entry
	if t := r.table.Load(); t != nil {
		next = make(map[string]*entry, len(*t)+1)
		for k, v := range *t {
			next[k] = v
		}
	} else {
		next = make(map[string]*entry, 1)
	}
	old := next[ti.name]
	if old != nil && old.typ != ti.typ {
		panic(fmt.Sprintf("netmsg: type name %q is already registered for Go type %v; cannot register Go type %v under it", ti.name, old.typ, ti.typ))
	}
	if e := f(old); e == nil {
		delete(next, ti.name)
	} else {
		next[ti.name] = e
	}
	r.table.Store(&next)
}

func (r *registry) addRequest(ti typeInfo, inv requestInvoker) func() {
	r.update(ti, func(old *entry) *entry {
		if old != nil && old.request != nil {
			panic(fmt.Sprintf("netmsg: a request handler for %q (%v) is already registered", ti.name, ti.typ))
		}
		e := entry{typeInfo: ti}
		if old != nil {
			e = *old
		}
		e.request = inv
		return &e
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			r.update(ti, func(old *entry) *entry {
				if old == nil {
					return nil
				}
				e := *old
				e.request = nil
				if e.nmsgs == 0 {
					return nil
				}
				return &e
			})
		})
	}
}

func addToList[T any](l messageDispatcher, h *messageHandler[T]) messageDispatcher {
	old, _ := l.(messageList[T])
	next := make(messageList[T], 0, len(old)+1)
	return append(append(next, old...), h)
}

// messageRegistration is one registered message handler, typed inside.
type messageRegistration interface {
	add(messageDispatcher) messageDispatcher
	remove(messageDispatcher) (messageDispatcher, int)
}

func (r *registry) addMessage(ti typeInfo, h messageRegistration) func() {
	r.update(ti, func(old *entry) *entry {
		e := entry{typeInfo: ti}
		if old != nil {
			e = *old
		}
		e.messages = h.add(e.messages)
		e.nmsgs++
		return &e
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			r.update(ti, func(old *entry) *entry {
				if old == nil {
					return nil
				}
				e := *old
				var n int
				e.messages, n = h.remove(e.messages)
				e.nmsgs = n
				if e.nmsgs == 0 && e.request == nil {
					return nil
				}
				return &e
			})
		})
	}
}

func (h *messageHandler[T]) add(l messageDispatcher) messageDispatcher { return addToList(l, h) }

func (h *messageHandler[T]) remove(l messageDispatcher) (messageDispatcher, int) {
	old, _ := l.(messageList[T])
	next := make(messageList[T], 0, len(old))
	for _, x := range old {
		if x != h {
			next = append(next, x)
		}
	}
	if len(next) == 0 {
		return nil, 0
	}
	return next, len(next)
}
