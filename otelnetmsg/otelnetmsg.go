// Package otelnetmsg traces and measures netmsg servers and clients with
// OpenTelemetry. One value does both:
//
//	o := otelnetmsg.New()
//	srv := netmsg.NewServer(netmsg.WithInterceptors(o))
//	cli := netmsg.NewClient(url, netmsg.WithInterceptors(otelnetmsg.New()))
//
// Tracing: every request gets a client span where it is sent and a server
// span where it is handled, parented across the wire by W3C trace context
// carried in the envelope's metadata; a request handler's ctx carries its
// server span, so what the handler sends in turn joins the trace. Messages
// get a producer span where they are sent (one per Broadcast) and a consumer
// span where they are handled, or, with WithMessageEvents, only events and
// the trace context. Errors set the span's status and carry their code in
// rpc.response.status_code.
//
// Metrics, through the OpenTelemetry metrics API:
//
//	netmsg.calls                 counter    {call}     calls by direction, kind, type and code
//	netmsg.call.duration         histogram  s          how long calls took, same attributes
//	netmsg.sessions.open         up-down    {session}  sessions open now
//	netmsg.sessions.closed       counter    {session}  sessions closed, by netmsg.close.reason
//	netmsg.slow_consumer.closes  counter    {session}  sessions closed because the peer stopped reading
//	netmsg.io                    counter    By         bytes on the connections, by network.io.direction
//	netmsg.reconnect.attempts    counter    {attempt}  a client's reconnection attempts
//
// The call attributes are netmsg.direction ("inbound", "outbound"),
// netmsg.kind ("message", "request", "broadcast"), netmsg.type (the wire
// type name) and netmsg.code (the code's name as netmsg.Code.String spells
// it: "ok", "not_found", ...). An inbound request's code is the one its
// caller receives (an error that is no *netmsg.Error is "internal"); an
// outbound call's is netmsg.CodeOf of its error.
//
// Without options New uses the global tracer and meter providers (otel.SetTracerProvider,
// otel.SetMeterProvider) and propagates W3C trace context and baggage.
package otelnetmsg

import (
	"context"
	"errors"
	"time"

	"github.com/netmsg/netmsg"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/netmsg/netmsg/otelnetmsg"

// Option configures New.
type Option func(*config)

type config struct {
	tp            trace.TracerProvider
	mp            metric.MeterProvider
	prop          propagation.TextMapPropagator
	messageEvents bool
}

// WithTracerProvider sets where spans go. Default: otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets where metrics go. Default: otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithPropagators sets how the trace context travels in the envelope
// metadata. Default: W3C trace context and W3C baggage. Pass
// otel.GetTextMapPropagator() to use the globally configured one.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

// WithMessageEvents records one-way messages as span events instead of
// spans: a message sent adds a "netmsg.message.sent" event to the span in
// the sender's ctx, and a message received gets no span of its own; its
// handler's ctx carries the sender's span context as its remote parent, so
// what the handler does still joins the sender's trace. Requests always get
// spans.
func WithMessageEvents() Option {
	return func(c *config) { c.messageEvents = true }
}

// Interceptor traces and measures the calls and sessions of the netmsg
// Servers and Clients it is given to with netmsg.WithInterceptors. It is a
// netmsg.Interceptor, a netmsg.SessionObserver and a
// netmsg.ReconnectObserver. One Interceptor may serve several Servers and
// Clients; its metrics then add up theirs. All methods may be called
// concurrently.
type Interceptor struct {
	tracer        trace.Tracer
	prop          propagation.TextMapPropagator
	messageEvents bool
	m             *instruments
}

// New returns an Interceptor configured by opts. Errors creating the
// instruments are handed to otel.Handle, as OpenTelemetry instrumentation
// does; the instruments concerned then record nothing.
func New(opts ...Option) *Interceptor {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return &Interceptor{
		tracer:        c.tp.Tracer(ScopeName),
		prop:          c.prop,
		messageEvents: c.messageEvents,
		m:             newInstruments(c.mp.Meter(ScopeName)),
	}
}

var (
	_ netmsg.Interceptor       = (*Interceptor)(nil)
	_ netmsg.SessionObserver   = (*Interceptor)(nil)
	_ netmsg.ReconnectObserver = (*Interceptor)(nil)
)

// Wrap implements netmsg.Interceptor: it traces and measures every call.
func (i *Interceptor) Wrap(next netmsg.CallFunc) netmsg.CallFunc {
	return func(ctx context.Context, c *netmsg.Call) (any, error) {
		start := time.Now()
		ctx, sp := i.startSpan(ctx, c)
		res, err := next(ctx, c)
		code := codeOf(c.Kind, err)
		i.m.call(ctx, c, code, time.Since(start))
		endSpan(sp, c, code, err)
		return res, err
	}
}

// codeOf is the code a call ended with: for an inbound call the one the
// library answers the caller with, for an outbound one netmsg.CodeOf.
func codeOf(k netmsg.CallKind, err error) netmsg.Code {
	if err == nil {
		return netmsg.CodeOK
	}
	if !k.Inbound() {
		return netmsg.CodeOf(err)
	}
	switch c := netmsg.CodeOf(err); c {
	case netmsg.CodeUnknown, netmsg.CodeUnavailable:
		// The library answers an error that is no *Error (a closed
		// session's included) with CodeInternal.
		var e *netmsg.Error
		if errors.As(err, &e) {
			return c
		}
		return netmsg.CodeInternal
	default:
		return c
	}
}

// SessionOpened implements netmsg.SessionObserver.
func (i *Interceptor) SessionOpened(s *netmsg.Session) { i.m.sessionOpened(s) }

// SessionClosed implements netmsg.SessionObserver.
func (i *Interceptor) SessionClosed(s *netmsg.Session, ce *netmsg.CloseError) {
	i.m.sessionClosed(s, ce)
}

// ReconnectAttempt implements netmsg.ReconnectObserver.
func (i *Interceptor) ReconnectAttempt(netmsg.ReconnectAttempt) { i.m.reconnect() }
