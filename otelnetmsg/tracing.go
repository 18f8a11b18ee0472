package otelnetmsg

import (
	"context"
	"strings"

	"github.com/netmsg/netmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attributes. rpc.* follow the OpenTelemetry RPC conventions;
// netmsg.* are this library's.
const (
	attrRPCSystem   = attribute.Key("rpc.system.name")
	attrRPCMethod   = attribute.Key("rpc.method")
	attrRPCStatus   = attribute.Key("rpc.response.status_code")
	attrSessionID   = attribute.Key("netmsg.session.id")
	attrGroup       = attribute.Key("netmsg.group")
	attrMessageType = attribute.Key("netmsg.type")
)

// systemName is rpc.system.name on every span.
var systemName = attrRPCSystem.String("netmsg")

// startSpan starts the span of a call and returns the ctx the rest of the
// call sees. Inbound, the parent is the trace context in the metadata;
// outbound, the span in ctx, and the new span's context is put in the
// metadata. With message events a message gets no span (sp is nil).
func (i *Interceptor) startSpan(ctx context.Context, c *netmsg.Call) (context.Context, trace.Span) {
	carrier := propagation.MapCarrier(c.Metadata)
	if c.Kind.Inbound() {
		ctx = i.prop.Extract(ctx, carrier)
	}
	if i.messageEvents && !c.Kind.Request() {
		if !c.Kind.Inbound() {
			trace.SpanFromContext(ctx).AddEvent("netmsg.message.sent", trace.WithAttributes(callAttributes(c)...))
			i.prop.Inject(ctx, carrier)
		}
		return ctx, nil
	}
	ctx, sp := i.tracer.Start(ctx, spanName(c), trace.WithSpanKind(spanKind(c.Kind)), trace.WithAttributes(callAttributes(c)...))
	if !c.Kind.Inbound() {
		i.prop.Inject(ctx, carrier)
	}
	return ctx, sp
}

func callAttributes(c *netmsg.Call) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, systemName)
	if c.Kind.Request() {
		attrs = append(attrs, attrRPCMethod.String(c.Type))
	} else {
		attrs = append(attrs, attrMessageType.String(c.Type))
	}
	if c.Session != nil {
		attrs = append(attrs, attrSessionID.String(c.Session.ID()))
	}
	if c.Group != "" {
		attrs = append(attrs, attrGroup.String(c.Group))
	}
	return attrs
}

// spanName is the request's type name, like an RPC method, and for a
// message the operation and the type: "send chat.Message",
// "process chat.Message", "broadcast chat.Message".
func spanName(c *netmsg.Call) string {
	switch c.Kind {
	case netmsg.OutboundMessage:
		return "send " + c.Type
	case netmsg.InboundMessage:
		return "process " + c.Type
	case netmsg.OutboundBroadcast:
		return "broadcast " + c.Type
	}
	return c.Type
}

func spanKind(k netmsg.CallKind) trace.SpanKind {
	switch k {
	case netmsg.InboundRequest:
		return trace.SpanKindServer
	case netmsg.OutboundRequest:
		return trace.SpanKindClient
	case netmsg.InboundMessage:
		return trace.SpanKindConsumer
	}
	return trace.SpanKindProducer
}

// endSpan records the outcome and ends sp (nil: no span). Every non-OK code
// is an error of the caller's span; the handler's span marks as errors only
// the codes that say the handler's side failed, as the RPC conventions do
// for gRPC servers.
func endSpan(sp trace.Span, c *netmsg.Call, code netmsg.Code, err error) {
	if sp == nil {
		return
	}
	if c.Kind.Request() {
		sp.SetAttributes(attrRPCStatus.String(strings.ToUpper(code.String())))
	}
	if err != nil && (!c.Kind.Inbound() || handlerFault(code)) {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// handlerFault reports whether code says the handling side failed rather
// than the caller.
func handlerFault(code netmsg.Code) bool {
	switch code {
	case netmsg.CodeUnknown, netmsg.CodeDeadlineExceeded, netmsg.CodeUnimplemented,
		netmsg.CodeInternal, netmsg.CodeUnavailable, netmsg.CodeDataLoss:
		return true
	}
	return false
}
