package otelnetmsg_test

import (
	"context"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/otelnetmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The contract of the tests.
type Ping struct {
	netmsg.Returns[Pong]
	N int
}
type Pong struct{ N int }

// Back is what the server asks the client while it handles a Ping.
type Back struct {
	netmsg.Returns[Pong]
	N int
}

type Note struct{ Text string }

// telemetry is one end's OpenTelemetry SDK: spans recorded in memory,
// metrics read on demand.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	o      *otelnetmsg.Interceptor
}

func newTelemetry(t *testing.T, opts ...otelnetmsg.Option) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		ctx := context.Background()
		assert.NoError(t, tel.tp.Shutdown(ctx))
		assert.NoError(t, mp.Shutdown(ctx))
	})
	tel.o = otelnetmsg.New(append([]otelnetmsg.Option{
		otelnetmsg.WithTracerProvider(tel.tp), otelnetmsg.WithMeterProvider(mp),
	}, opts...)...)
	return tel
}

// span returns the one ended span named name.
func (tel *telemetry) span(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %q", name)
	return found[0]
}

func attrValue(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// ends is a connected server and client, closed when the test ends.
type ends struct {
	srv *netmsg.Server
	cli *netmsg.Client
	hs  *httptest.Server
}

func start(t *testing.T, srvOpts []netmsg.ServerOption, cliOpts []netmsg.ClientOption, setup func(*netmsg.Server, *netmsg.Client)) *ends {
	t.Helper()
	e := &ends{srv: netmsg.NewServer(srvOpts...)}
	e.hs = httptest.NewServer(e.srv)
	e.cli = netmsg.NewClient("ws"+strings.TrimPrefix(e.hs.URL, "http"), cliOpts...)
	if setup != nil {
		setup(e.srv, e.cli)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.cli.Connect(ctx))
	t.Cleanup(e.stop)
	return e
}

// stop closes the client and shuts the server down; it may be called twice.
func (e *ends) stop() {
	_ = e.cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.srv.Shutdown(ctx)
	e.hs.Close()
}

// TestTracingAcrossTheWire: the spans of one request chain across both
// processes' tracer providers, parented only through the envelope metadata:
// the caller's span → the client span of Ping → the server span of Ping →
// the server's client span of Back (sent from the Ping handler) → the
// client's server span of Back. Messages are producer and consumer spans.
func TestTracingAcrossTheWire(t *testing.T) {
	t.Parallel()
	st, ct := newTelemetry(t), newTelemetry(t)
	noted := make(chan struct{})
	e := start(t,
		[]netmsg.ServerOption{netmsg.WithInterceptors(st.o)},
		[]netmsg.ClientOption{netmsg.WithInterceptors(ct.o)},
		func(srv *netmsg.Server, cli *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
				switch p.N {
				case 1:
					return Pong{}, netmsg.NewError(netmsg.CodeNotFound, "no such ping")
				case 2:
					return Pong{}, netmsg.NewError(netmsg.CodeInternal, "broken")
				}
				r, err := netmsg.SendRequest(ctx, s, Back{N: p.N})
				return Pong{N: r.N + 1}, err
			})
			netmsg.AddRequestHandler(cli, func(_ context.Context, _ *netmsg.Session, b Back) (Pong, error) {
				return Pong{N: b.N * 10}, nil
			})
			netmsg.AddMessageHandler(srv, func(context.Context, *netmsg.Session, Note) { close(noted) })
		})

	ctx, root := ct.tp.Tracer("test").Start(context.Background(), "caller")
	resp, err := netmsg.SendRequest(ctx, e.cli, Ping{N: 5})
	require.NoError(t, err)
	assert.Equal(t, 51, resp.N)
	require.NoError(t, e.cli.Send(ctx, Note{Text: "hi"}))
	<-noted
	root.End()

	cliPing := ct.span(t, "otelnetmsg_test.Ping")
	srvPing := st.span(t, "otelnetmsg_test.Ping")
	srvBack := st.span(t, "otelnetmsg_test.Back")
	cliBack := ct.span(t, "otelnetmsg_test.Back")
	caller := ct.span(t, "caller")
	for _, tc := range []struct {
		name           string
		child, parent  sdktrace.ReadOnlySpan
		kind           trace.SpanKind
		remoteParented bool
	}{
		{"client Ping", cliPing, caller, trace.SpanKindClient, false},
		{"server Ping", srvPing, cliPing, trace.SpanKindServer, true},
		{"server Back", srvBack, srvPing, trace.SpanKindClient, false},
		{"client Back", cliBack, srvBack, trace.SpanKindServer, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.kind, tc.child.SpanKind())
			assert.Equal(t, caller.SpanContext().TraceID(), tc.child.SpanContext().TraceID())
			assert.Equal(t, tc.parent.SpanContext().SpanID(), tc.child.Parent().SpanID())
			assert.Equal(t, tc.remoteParented, tc.child.Parent().IsRemote())
			assert.Equal(t, "netmsg", attrValue(tc.child, "rpc.system.name"))
			assert.Equal(t, "OK", attrValue(tc.child, "rpc.response.status_code"))
			assert.Equal(t, codes.Unset, tc.child.Status().Code)
		})
	}
	assert.Equal(t, e.cli.Session().ID(), attrValue(cliPing, "netmsg.session.id"))
	assert.Equal(t, e.cli.Session().ID(), attrValue(srvPing, "netmsg.session.id"))

	send := ct.span(t, "send otelnetmsg_test.Note")
	process := st.span(t, "process otelnetmsg_test.Note")
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	assert.Equal(t, trace.SpanKindConsumer, process.SpanKind())
	assert.Equal(t, caller.SpanContext().SpanID(), send.Parent().SpanID())
	assert.Equal(t, send.SpanContext().SpanID(), process.Parent().SpanID())
	assert.Equal(t, "otelnetmsg_test.Note", attrValue(process, "netmsg.type"))

	// Errors: the caller's span fails for every code; the handler's only
	// for codes that mean the handler's side failed.
	_, err = netmsg.SendRequest(context.Background(), e.cli, Ping{N: 1})
	require.Equal(t, netmsg.CodeNotFound, netmsg.CodeOf(err))
	_, err = netmsg.SendRequest(context.Background(), e.cli, Ping{N: 2})
	require.Equal(t, netmsg.CodeInternal, netmsg.CodeOf(err))
	for _, tc := range []struct {
		status            string
		client, server    codes.Code
		clientErr, srvErr bool
	}{
		{"NOT_FOUND", codes.Error, codes.Unset, true, false},
		{"INTERNAL", codes.Error, codes.Error, true, true},
	} {
		c, s := spanWithStatus(t, ct, tc.status), spanWithStatus(t, st, tc.status)
		assert.Equal(t, tc.client, c.Status().Code, tc.status)
		assert.Equal(t, tc.server, s.Status().Code, tc.status)
		assert.Equal(t, tc.clientErr, hasException(c), tc.status)
		assert.Equal(t, tc.srvErr, hasException(s), tc.status)
		assert.Equal(t, c.SpanContext().SpanID(), s.Parent().SpanID())
	}
}

func spanWithStatus(t *testing.T, tel *telemetry, status string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range tel.spans.Ended() {
		if attrValue(s, "rpc.response.status_code") == status {
			return s
		}
	}
	t.Fatalf("no span with status %s", status)
	return nil
}

func hasException(s sdktrace.ReadOnlySpan) bool {
	for _, ev := range s.Events() {
		if ev.Name == "exception" {
			return true
		}
	}
	return false
}

// TestMessageEvents: with WithMessageEvents a message is an event on the
// sender's span and no span of its own, and the handler's ctx still carries
// the sender's trace.
func TestMessageEvents(t *testing.T) {
	t.Parallel()
	st, ct := newTelemetry(t, otelnetmsg.WithMessageEvents()), newTelemetry(t, otelnetmsg.WithMessageEvents())
	got := make(chan trace.SpanContext, 1)
	e := start(t,
		[]netmsg.ServerOption{netmsg.WithInterceptors(st.o)},
		[]netmsg.ClientOption{netmsg.WithInterceptors(ct.o)},
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddMessageHandler(srv, func(ctx context.Context, _ *netmsg.Session, _ Note) {
				got <- trace.SpanContextFromContext(ctx)
			})
		})
	ctx, root := ct.tp.Tracer("test").Start(context.Background(), "caller")
	require.NoError(t, e.cli.Send(ctx, Note{Text: "hi"}))
	sc := <-got
	root.End()
	assert.Equal(t, root.SpanContext().TraceID(), sc.TraceID())
	assert.Equal(t, root.SpanContext().SpanID(), sc.SpanID())
	assert.True(t, sc.IsRemote())
	caller := ct.span(t, "caller")
	require.Len(t, caller.Events(), 1)
	assert.Equal(t, "netmsg.message.sent", caller.Events()[0].Name)
	assert.Len(t, ct.spans.Ended(), 1)
	assert.Empty(t, st.spans.Ended())
}

// ---- metrics ----

// collect reads every metric: name → encoded attribute set → value. Sums
// give their value, histograms their count.
func collect(t *testing.T, tel *telemetry) map[string]map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := make(map[string]map[string]float64)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			pts := make(map[string]float64)
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					pts[enc(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					pts[enc(p.Attributes)] = float64(p.Count)
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", m.Name, m.Data)
			}
			out[m.Name] = pts
		}
	}
	return out
}

func enc(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, strings.TrimPrefix(string(kv.Key), "netmsg.")+"="+kv.Value.Emit())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func call(dir, kind, typ, code string) string {
	return "code=" + code + ",direction=" + dir + ",kind=" + kind + ",type=" + typ
}

// TestMetricsKnownWorkload runs a known set of calls and checks every
// count on both ends, the open sessions while connected and after, the
// close reasons and the bytes each end moved.
func TestMetricsKnownWorkload(t *testing.T) {
	t.Parallel()
	st, ct := newTelemetry(t), newTelemetry(t)
	quiet := netmsg.WithHeartbeat(0, 0) // no pings: the byte counts are the workload's
	var notes sync.WaitGroup
	e := start(t,
		[]netmsg.ServerOption{netmsg.WithInterceptors(st.o), quiet},
		[]netmsg.ClientOption{netmsg.WithInterceptors(ct.o), quiet},
		func(srv *netmsg.Server, cli *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				if p.N < 0 {
					return Pong{}, netmsg.NewError(netmsg.CodeInvalidArgument, "negative")
				}
				return Pong{N: p.N}, nil
			})
			netmsg.AddMessageHandler(srv, func(context.Context, *netmsg.Session, Note) { notes.Done() })
			netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, Note) { notes.Done() })
		})
	ctx := context.Background()
	require.Eventually(t, func() bool {
		return collect(t, st)["netmsg.sessions.open"][""] == 1 && collect(t, ct)["netmsg.sessions.open"][""] == 1
	}, 5*time.Second, time.Millisecond, "SessionOpened runs on the callback queue")

	for n := range 3 {
		_, err := netmsg.SendRequest(ctx, e.cli, Ping{N: n})
		require.NoError(t, err)
	}
	for range 2 {
		_, err := netmsg.SendRequest(ctx, e.cli, Ping{N: -1})
		require.Equal(t, netmsg.CodeInvalidArgument, netmsg.CodeOf(err))
	}
	notes.Add(4)
	for range 2 {
		require.NoError(t, e.cli.Send(ctx, Note{Text: "up"}))
	}
	for range 2 {
		require.NoError(t, e.srv.Broadcast(ctx, Note{Text: "down"}))
	}
	notes.Wait()
	e.stop()

	// Both ends have closed; the close observers run on the sessions'
	// callback queues, which Close and Shutdown wait for.
	sm, cm := collect(t, st), collect(t, ct)
	const typ = "otelnetmsg_test."
	wantSrv := map[string]float64{
		call("inbound", "request", typ+"Ping", "ok"):               3,
		call("inbound", "request", typ+"Ping", "invalid_argument"): 2,
		call("inbound", "message", typ+"Note", "ok"):               2,
		call("outbound", "broadcast", typ+"Note", "ok"):            2,
	}
	wantCli := map[string]float64{
		call("outbound", "request", typ+"Ping", "ok"):               3,
		call("outbound", "request", typ+"Ping", "invalid_argument"): 2,
		call("outbound", "message", typ+"Note", "ok"):               2,
		call("inbound", "message", typ+"Note", "ok"):                2,
	}
	assert.Equal(t, wantSrv, sm["netmsg.calls"])
	assert.Equal(t, wantSrv, sm["netmsg.call.duration"], "histogram counts")
	assert.Equal(t, wantCli, cm["netmsg.calls"])
	assert.Equal(t, wantCli, cm["netmsg.call.duration"], "histogram counts")

	assert.Equal(t, map[string]float64{"": 0}, sm["netmsg.sessions.open"])
	assert.Equal(t, map[string]float64{"": 0}, cm["netmsg.sessions.open"])
	assert.Equal(t, map[string]float64{"close.reason=peer_normal": 1}, sm["netmsg.sessions.closed"])
	assert.Equal(t, map[string]float64{"close.reason=normal": 1}, cm["netmsg.sessions.closed"])
	assert.NotContains(t, sm, "netmsg.slow_consumer.closes")
	assert.NotContains(t, cm, "netmsg.reconnect.attempts")

	// What the server wrote the client read, its 101 response included;
	// the client wrote its handshake request besides, which net/http read
	// for the server before the session began.
	sio, cio := sm["netmsg.io"], cm["netmsg.io"]
	t.Logf("server io %v, client io %v", sio, cio)
	assert.Equal(t, sio["network.io.direction=transmit"], cio["network.io.direction=receive"])
	handshake := cio["network.io.direction=transmit"] - sio["network.io.direction=receive"]
	assert.Greater(t, handshake, 100.0)
	assert.Less(t, handshake, 1000.0)
	assert.Greater(t, sio["network.io.direction=receive"], 5*20.0, "five requests and two notes")
}

// TestMetricsSlowConsumerAndReconnect: a client that stops reading is
// closed as a slow consumer, counted by reason and on its own; the client
// reconnects, and its attempt is counted.
func TestMetricsSlowConsumerAndReconnect(t *testing.T) {
	t.Parallel()
	st, ct := newTelemetry(t), newTelemetry(t)
	release := make(chan struct{})
	e := start(t,
		[]netmsg.ServerOption{
			netmsg.WithInterceptors(st.o),
			netmsg.WithHeartbeat(0, 0),
			netmsg.WithMaxQueuedBytes(256 << 10),
			netmsg.WithWriteTimeout(time.Minute), // only the queue limit can end it
		},
		[]netmsg.ClientOption{
			netmsg.WithInterceptors(ct.o),
			netmsg.WithHeartbeat(0, 0),
			netmsg.WithMailboxSize(1), // a blocked handler stops the client's reading
			netmsg.WithReconnect(constantBackOff(10 * time.Millisecond)),
		},
		func(_ *netmsg.Server, cli *netmsg.Client) {
			netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, Note) { <-release })
		})
	first := e.cli.Session().ID()
	var ss *netmsg.Session
	require.Eventually(t, func() bool { ss, _ = e.srv.Session(first); return ss != nil }, 5*time.Second, time.Millisecond)
	start := time.Now()
	blob := Note{Text: strings.Repeat("x", 64<<10)}
	sent := 0
	for ss.Err() == nil && time.Since(start) < 30*time.Second {
		require.NoError(t, e.srv.Broadcast(context.Background(), blob))
		sent++
	}
	t.Logf("broadcast %d notes of 64 KiB before the session closed, in %v", sent, time.Since(start))
	close(release)
	require.Eventually(t, func() bool {
		s := e.cli.Session()
		return s != nil && s.ID() != first
	}, 10*time.Second, time.Millisecond, "the client reconnects")
	require.Eventually(t, func() bool {
		m := collect(t, st)
		return m["netmsg.slow_consumer.closes"][""] == 1 && m["netmsg.sessions.open"][""] == 1
	}, 10*time.Second, time.Millisecond, "the close and the new session are observed")
	sm, cm := collect(t, st), collect(t, ct)
	assert.Equal(t, map[string]float64{"close.reason=slow_consumer": 1}, sm["netmsg.sessions.closed"])
	assert.Equal(t, map[string]float64{"": 1}, cm["netmsg.reconnect.attempts"])
	assert.Equal(t, map[string]float64{"": 1}, sm["netmsg.sessions.open"])
}

// constantBackOff retries at a fixed delay.
type constantBackOff time.Duration

func (b constantBackOff) NextBackOff() time.Duration { return time.Duration(b) }
func (constantBackOff) Reset()                       {}
