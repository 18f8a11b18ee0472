package otelnetmsg_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/otelnetmsg"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// One request traced from the client to the server: the server's span is a
// child of the client's, although the two ends use separate tracer
// providers and share nothing but the connection.
func ExampleNew() {
	clientSpans, serverSpans := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	clientTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(clientSpans))
	serverTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(serverSpans))

	srv := netmsg.NewServer(netmsg.WithInterceptors(otelnetmsg.New(otelnetmsg.WithTracerProvider(serverTP))))
	netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
		return Pong{N: p.N + 1}, nil
	})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	client := netmsg.NewClient("ws"+strings.TrimPrefix(hs.URL, "http"),
		netmsg.WithInterceptors(otelnetmsg.New(otelnetmsg.WithTracerProvider(clientTP))))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := netmsg.SendRequest(ctx, client, Ping{N: 1}); err != nil {
		fmt.Println(err)
		return
	}
	_ = client.Close()
	_ = srv.Shutdown(ctx)

	c, s := clientSpans.Ended()[0], serverSpans.Ended()[0]
	fmt.Println(c.Name(), c.SpanKind())
	fmt.Println(s.Name(), s.SpanKind())
	fmt.Println("same trace:", c.SpanContext().TraceID() == s.SpanContext().TraceID())
	fmt.Println("server span's parent is the client span:", s.Parent().SpanID() == c.SpanContext().SpanID())
	// Output:
	// otelnetmsg_test.Ping client
	// otelnetmsg_test.Ping server
	// same trace: true
	// server span's parent is the client span: true
}
