package otelnetmsg

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/netmsg/netmsg"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric attributes.
const (
	attrDirection   = attribute.Key("netmsg.direction")
	attrKind        = attribute.Key("netmsg.kind")
	attrType        = attribute.Key("netmsg.type")
	attrCode        = attribute.Key("netmsg.code")
	attrCloseReason = attribute.Key("netmsg.close.reason")
	attrIODirection = attribute.Key("network.io.direction")
)

// durationBuckets are the call duration histogram's bounds, in seconds: a
// loopback round trip takes tens of microseconds, a slow handler seconds.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

var (
	ioReceive  = metric.WithAttributeSet(attribute.NewSet(attrIODirection.String("receive")))
	ioTransmit = metric.WithAttributeSet(attribute.NewSet(attrIODirection.String("transmit")))
)

// instruments are an Interceptor's metrics, and the sessions it counts.
type instruments struct {
	calls      metric.Int64Counter
	duration   metric.Float64Histogram
	closed     metric.Int64Counter
	slow       metric.Int64Counter
	reconnects metric.Int64Counter
	open       metric.Int64ObservableUpDownCounter
	io         metric.Int64ObservableCounter

	// The sessions open now, and the bytes of those closed: the byte
	// counters are read from the sessions when the metrics are collected.
	mu                  sync.Mutex
	live                map[*netmsg.Session]struct{}
	closedIn, closedOut uint64
}

func newInstruments(m metric.Meter) *instruments {
	in := &instruments{live: make(map[*netmsg.Session]struct{})}
	var err error
	handle := func(e error) {
		if e != nil {
			otel.Handle(e)
		}
	}
	in.calls, err = m.Int64Counter("netmsg.calls", metric.WithUnit("{call}"),
		metric.WithDescription("Messages and requests handled (inbound) and sent (outbound), by type and code."))
	handle(err)
	in.duration, err = m.Float64Histogram("netmsg.call.duration", metric.WithUnit("s"),
		metric.WithDescription("How long calls took: inbound, the handler; outbound, sending and, for a request, waiting for the answer."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	handle(err)
	in.closed, err = m.Int64Counter("netmsg.sessions.closed", metric.WithUnit("{session}"),
		metric.WithDescription("Sessions closed, by close reason."))
	handle(err)
	in.slow, err = m.Int64Counter("netmsg.slow_consumer.closes", metric.WithUnit("{session}"),
		metric.WithDescription("Sessions closed because the peer stopped reading (outbound queue or write deadline ran out)."))
	handle(err)
	in.reconnects, err = m.Int64Counter("netmsg.reconnect.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Reconnection attempts of clients."))
	handle(err)
	in.open, err = m.Int64ObservableUpDownCounter("netmsg.sessions.open", metric.WithUnit("{session}"),
		metric.WithDescription("Sessions open now."))
	handle(err)
	in.io, err = m.Int64ObservableCounter("netmsg.io", metric.WithUnit("By"),
		metric.WithDescription("Bytes read from and written to the connections of sessions, WebSocket framing included."))
	handle(err)
	_, err = m.RegisterCallback(in.observe, in.open, in.io)
	handle(err)
	return in
}

// call records one call's count and duration.
func (in *instruments) call(ctx context.Context, c *netmsg.Call, code netmsg.Code, d time.Duration) {
	dir, kind := "outbound", "message"
	if c.Kind.Inbound() {
		dir = "inbound"
	}
	switch {
	case c.Kind.Request():
		kind = "request"
	case c.Kind == netmsg.OutboundBroadcast:
		kind = "broadcast"
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(
		attrDirection.String(dir), attrKind.String(kind), attrType.String(c.Type), attrCode.String(code.String())))
	in.calls.Add(ctx, 1, attrs)
	in.duration.Record(ctx, d.Seconds(), attrs)
}

func (in *instruments) sessionOpened(s *netmsg.Session) {
	in.mu.Lock()
	in.live[s] = struct{}{}
	in.mu.Unlock()
}

func (in *instruments) sessionClosed(s *netmsg.Session, ce *netmsg.CloseError) {
	// The connection has ended: its counts are final.
	in.mu.Lock()
	delete(in.live, s)
	in.closedIn += s.BytesReceived()
	in.closedOut += s.BytesSent()
	in.mu.Unlock()
	ctx := context.Background()
	reason := "unknown"
	if ce != nil {
		reason = strings.ReplaceAll(ce.Reason.String(), " ", "_")
		if ce.Reason == netmsg.CloseSlowConsumer {
			in.slow.Add(ctx, 1)
		}
	}
	in.closed.Add(ctx, 1, metric.WithAttributes(attrCloseReason.String(reason)))
}

func (in *instruments) reconnect() { in.reconnects.Add(context.Background(), 1) }

// observe reports the open sessions and the bytes of all sessions, open and
// closed.
func (in *instruments) observe(_ context.Context, o metric.Observer) error {
	in.mu.Lock()
	rx, tx := in.closedIn, in.closedOut
	n := len(in.live)
	for s := range in.live {
		rx += s.BytesReceived()
		tx += s.BytesSent()
	}
	in.mu.Unlock()
	o.ObserveInt64(in.open, int64(n))
	o.ObserveInt64(in.io, int64(rx), ioReceive)
	o.ObserveInt64(in.io, int64(tx), ioTransmit)
	return nil
}
