package netmsg

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"strconv"
	"time"
)

// CallKind says which way a call goes and whether it is a message or a
// request.
type CallKind uint8

// The kinds of calls an Interceptor sees.
const (
	// InboundMessage is a message from the peer, decoded, on its way to the
	// message handlers. The result is always nil.
	InboundMessage CallKind = iota + 1
	// InboundRequest is a request from the peer, decoded, on its way to its
	// request handler. The result is the handler's response; an error is
	// what the peer receives (an *Error keeps its code).
	InboundRequest
	// OutboundMessage is Send on a session or a client. The result is nil.
	OutboundMessage
	// OutboundRequest is SendRequest on a session or a client. The result
	// is the peer's decoded response.
	OutboundRequest
	// OutboundBroadcast is Server.Broadcast or Group.Broadcast: one call for
	// all the sessions it reaches, with Call.Session nil and Call.Group the
	// group's name. The result is nil.
	OutboundBroadcast
)

// Inbound reports whether the call came from the peer.
func (k CallKind) Inbound() bool { return k == InboundMessage || k == InboundRequest }

// Request reports whether the call is a request, which has an answer.
func (k CallKind) Request() bool { return k == InboundRequest || k == OutboundRequest }

// String returns the kind's name, such as "inbound request".
func (k CallKind) String() string {
	switch k {
	case InboundMessage:
		return "inbound message"
	case InboundRequest:
		return "inbound request"
	case OutboundMessage:
		return "outbound message"
	case OutboundRequest:
		return "outbound request"
	case OutboundBroadcast:
		return "outbound broadcast"
	}
	return "call kind " + strconv.Itoa(int(k))
}

// Call is one message or request passing through the interceptors.
type Call struct {
	// Kind says which way the call goes and whether it is a request.
	Kind CallKind
	// Type is the name the value travels under (see TypeName).
	Type string
	// Session is the session the call arrived or leaves on; nil for a
	// broadcast.
	Session *Session
	// Group is the group a Group.Broadcast is for; "" for every other call.
	Group string
	// Metadata is the envelope's metadata. Inbound, it is what arrived (nil
	// when nothing did), the same map Metadata(ctx) returns to the handler.
	// Outbound, it is never nil: it starts as the pairs WithMetadata put on
	// the caller's ctx (copied), interceptors may set and delete keys, and
	// what it holds when the last interceptor calls next is what is sent.
	Metadata map[string]string
	// Value is the decoded message or request (inbound), or the one being
	// sent (outbound). An interceptor may replace it with another value of
	// the same Go type.
	Value any

	// invoke is the library's own step, at the end of the chain: it runs
	// the handlers, or encodes and sends.
	invoke func(ctx context.Context, c *Call) (any, error)
}

// CallFunc is one step of a call: the rest of the interceptor chain and, at
// its end, the library's own step. For an inbound call the library's step
// runs the handlers; for an outbound one it encodes and sends (and, for a
// request, waits for the answer and decodes it). It returns the call's
// result (a request's response, nil otherwise) and its error.
type CallFunc func(ctx context.Context, c *Call) (any, error)

// Interceptor wraps every call an endpoint handles or makes: messages and
// requests received from peers, after they are decoded and before their
// handlers run, and messages, requests and broadcasts sent, before they are
// encoded. An interceptor can look at the call and its metadata, add
// metadata to an outbound call, replace the ctx the rest of the call sees
// (a handler gets the ctx the last interceptor passed on), time the call,
// see its result and error, and refuse it by returning an error without
// calling next. A refused inbound request is answered with that error: an
// *Error reaches the caller with its code and message, any other error as
// CodeInternal "internal error".
//
// Wrap is called once per Server or Client, when it is built (NewServer,
// NewClient); the CallFunc it returns is then called for every call, from
// many goroutines at once. With several interceptors the first one passed
// to WithInterceptors is the outermost: it sees the call first and the
// result last, as in gRPC's interceptor chains.
//
// Interceptors see the calls that reach a handler or leave on a session: a
// request for a type with no handler, or whose payload does not decode, is
// answered (CodeUnimplemented, CodeInvalidArgument) before them, and a call
// on a Client that has no session to go on fails before them. A panic in a
// handler reaches the interceptors as a CodeInternal *Error.
//
// An interceptor that also implements SessionObserver or ReconnectObserver
// gets those events too.
type Interceptor interface {
	Wrap(next CallFunc) CallFunc
}

// InterceptorFunc is a function used as an Interceptor.
type InterceptorFunc func(next CallFunc) CallFunc

// Wrap calls f(next).
func (f InterceptorFunc) Wrap(next CallFunc) CallFunc { return f(next) }

// SessionObserver is implemented by an Interceptor that wants to know when
// sessions open and close, for example to count open sessions or the bytes
// they moved (Session.BytesReceived, Session.BytesSent).
//
// Both methods run on the session's callback queue (where OnSessionOpen and
// OnSessionClose run), never on a read loop or under a library lock, and in
// order for one session: SessionOpened before SessionClosed. They should
// return quickly: the session's other callbacks wait for them.
type SessionObserver interface {
	// SessionOpened is called once the session's handshake is complete: on
	// a server just before OnSessionOpen (on the same queue), on a client
	// while OnConnect may be running.
	SessionOpened(s *Session)
	// SessionClosed is called once the session has closed and what arrived
	// before the close has been handled, with why it closed (ce.Reason is
	// CloseSlowConsumer for a peer that stopped reading).
	SessionClosed(s *Session, ce *CloseError)
}

// ReconnectObserver is implemented by an Interceptor that wants to know of
// a Client's reconnection attempts. ReconnectAttempt is called before each
// attempt, on the client's supervisor goroutine, just after the
// OnReconnectAttempt callback; it should return quickly, since the attempt
// waits for it. Attempts are not ordered with the SessionClosed of the
// session that ended: they run on different goroutines.
type ReconnectObserver interface {
	ReconnectAttempt(a ReconnectAttempt)
}

// WithInterceptors adds interceptors to a Server or a Client; see
// Interceptor. The first is the outermost. Given more than once, the lists
// add up in the order given. With none configured the library does no work
// for them: no allocation, one pointer check per call.
func WithInterceptors(ics ...Interceptor) Option {
	ics = append([]Interceptor(nil), ics...)
	return sharedOption(func(c *config) {
		for _, ic := range ics {
			if ic == nil {
				panic("netmsg: WithInterceptors with a nil Interceptor")
			}
		}
		c.interceptors = append(c.interceptors[:len(c.interceptors):len(c.interceptors)], ics...)
	})
}

// interception is an endpoint's interceptors, built once.
type interception struct {
	chain     CallFunc
	sessions  []SessionObserver
	reconnect []ReconnectObserver
}

// newInterception builds the chain; nil when there are no interceptors.
func newInterception(ics []Interceptor) *interception {
	if len(ics) == 0 {
		return nil
	}
	ix := &interception{}
	f := CallFunc(invokeCall)
	for i := len(ics) - 1; i >= 0; i-- {
		f = ics[i].Wrap(f)
		if f == nil {
			panic(fmt.Sprintf("netmsg: interceptor %T returned a nil CallFunc from Wrap", ics[i]))
		}
	}
	ix.chain = f
	for _, ic := range ics {
		if o, ok := ic.(SessionObserver); ok {
			ix.sessions = append(ix.sessions, o)
		}
		if o, ok := ic.(ReconnectObserver); ok {
			ix.reconnect = append(ix.reconnect, o)
		}
	}
	return ix
}

func invokeCall(ctx context.Context, c *Call) (any, error) { return c.invoke(ctx, c) }

// wrongValue is the error of a call whose Value an interceptor replaced with
// a value of another Go type.
func wrongValue(c *Call, want reflect.Type) error {
	return Errorf(CodeInternal, "an interceptor replaced the %s value with a %T, want %v", c.Type, c.Value, want)
}

// interceptRequest runs an inbound request through the chain. h is the
// typed handler, called with the decoded value; a panic in it is answered
// CodeInternal and the interceptors see that error.
func interceptRequest[Req any](ctx context.Context, s *Session, name string, req Req, h func(context.Context, *Session, Req) (any, error)) (any, error) {
	c := &Call{Kind: InboundRequest, Type: name, Session: s, Metadata: Metadata(ctx), Value: req}
	c.invoke = func(ctx context.Context, c *Call) (resp any, err error) {
		r, ok := c.Value.(Req)
		if !ok {
			return nil, wrongValue(c, reflect.TypeFor[Req]())
		}
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, s.handlerPanicked("request", name, p)
			}
		}()
		return h(ctx, s, r)
	}
	return s.ep.ix.chain(ctx, c)
}

// interceptMessage runs an inbound message through the chain; run calls its
// handlers. What the chain returns has nowhere to go but OnError.
func interceptMessage[T any](ctx context.Context, s *Session, msg T, run func(context.Context, *Session, T)) {
	name := typeNameOf(reflect.TypeFor[T]())
	var panicked error
	c := &Call{Kind: InboundMessage, Type: name, Session: s, Metadata: Metadata(ctx), Value: msg}
	c.invoke = func(ctx context.Context, c *Call) (any, error) {
		m, ok := c.Value.(T)
		if !ok {
			return nil, wrongValue(c, reflect.TypeFor[T]())
		}
		defer func() {
			if p := recover(); p != nil {
				panicked = s.handlerPanicked("message", name, p)
			}
		}()
		run(ctx, s, m)
		return nil, nil
	}
	if _, err := s.ep.ix.chain(ctx, c); err != nil && err != panicked {
		s.ep.reportError(s, fmt.Errorf("netmsg: %s message not handled: %w", name, err))
	}
}

// handlerPanicked logs and reports a handler's panic and returns the error
// its caller gets.
func (s *Session) handlerPanicked(kind, name string, p any) *Error {
	s.ep.cfg.logger.Error("netmsg: "+kind+" handler panicked", "type", name, "session", s.id, "panic", p, "stack", string(debug.Stack()))
	s.ep.reportError(s, fmt.Errorf("netmsg: %s handler panicked: %v", name, p))
	return NewError(CodeInternal, "internal error")
}

// outboundCall is a Call leaving this side; its metadata starts as a copy
// of ctx's.
func outboundCall(ctx context.Context, kind CallKind, s *Session, v any) *Call {
	md := make(map[string]string, 4)
	maps.Copy(md, outgoingMetadata(ctx))
	return &Call{Kind: kind, Type: TypeName(v), Session: s, Metadata: md, Value: v}
}

// sendIntercepted is Session.Send through the chain.
func (s *Session) sendIntercepted(ctx context.Context, msg any) error {
	c := outboundCall(ctx, OutboundMessage, s, msg)
	c.invoke = func(ctx context.Context, c *Call) (any, error) {
		return nil, s.send(context.WithValue(ctx, outgoingKey{}, c.Metadata), c.Value)
	}
	_, err := s.ep.ix.chain(ctx, c)
	return err
}

// sendRequestIntercepted is SendRequest on s through the chain.
func sendRequestIntercepted[Resp any](ctx context.Context, s *Session, req Request[Resp], deadline time.Time) (Resp, error) {
	var zero Resp
	c := outboundCall(ctx, OutboundRequest, s, req)
	c.invoke = func(ctx context.Context, c *Call) (any, error) {
		r, ok := c.Value.(Request[Resp])
		if !ok {
			return nil, wrongValue(c, reflect.TypeOf(req))
		}
		resp, err := sendRequestOn(context.WithValue(ctx, outgoingKey{}, c.Metadata), s, r, deadline)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	v, err := s.ep.ix.chain(ctx, c)
	if err != nil {
		return zero, err
	}
	resp, ok := v.(Resp)
	if !ok && v != nil {
		return zero, Errorf(CodeInternal, "an interceptor returned a %T as the response to %s, want %T", v, c.Type, zero)
	}
	return resp, nil
}

// broadcastIntercepted runs a broadcast through the chain; send does the
// broadcast.
func (ep *endpoint) broadcastIntercepted(ctx context.Context, group string, msg any, send func(context.Context, any) error) error {
	c := outboundCall(ctx, OutboundBroadcast, nil, msg)
	c.Group = group
	c.invoke = func(ctx context.Context, c *Call) (any, error) {
		return nil, send(context.WithValue(ctx, outgoingKey{}, c.Metadata), c.Value)
	}
	_, err := ep.ix.chain(ctx, c)
	return err
}

// observeOpen tells the session observers, on the session's callback queue,
// that s is open.
func (ep *endpoint) observeOpen(s *Session) {
	if ep.ix == nil || len(ep.ix.sessions) == 0 {
		return
	}
	s.cbq.post("SessionOpened", func() {
		for _, o := range ep.ix.sessions {
			ep.callback("SessionOpened", func() { o.SessionOpened(s) })
		}
	})
}

// observeClose tells the session observers, on the session's callback
// queue, that s has closed.
func (ep *endpoint) observeClose(s *Session, ce *CloseError) {
	if ep.ix == nil || len(ep.ix.sessions) == 0 {
		return
	}
	s.cbq.post("SessionClosed", func() {
		for _, o := range ep.ix.sessions {
			ep.callback("SessionClosed", func() { o.SessionClosed(s, ce) })
		}
	})
}

// observeReconnect tells the reconnect observers of an attempt; it runs on
// the client's supervisor (or Connect's) goroutine.
func (ep *endpoint) observeReconnect(a ReconnectAttempt) {
	if ep.ix == nil {
		return
	}
	for _, o := range ep.ix.reconnect {
		ep.callback("ReconnectAttempt", func() { o.ReconnectAttempt(a) })
	}
}

// BytesReceived returns how many bytes the session has read from its
// connection: every WebSocket frame with its header and, on a client, the
// handshake response.
func (s *Session) BytesReceived() uint64 { return s.conn.Received() }

// BytesSent returns how many bytes the session has written to its
// connection: every WebSocket frame with its header and the handshake this
// side wrote (a client's request, a server's 101 response).
func (s *Session) BytesSent() uint64 { return s.conn.Sent() }
