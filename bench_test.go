package netmsg_test

// Library benchmarks: the encode/decode path of one envelope, and requests
// and messages over an in-process server and client on a loopback socket.
// Peer libraries are compared in the bench/ module, not here.
//
//	go test -run '^$' -bench . -benchmem
//
// Every benchmark reports allocations; those that cross the socket count the
// whole process, client and server.

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
)

// benchEcho is the JSON request of the benchmarks; testpb.Echo is the
// protobuf one.
type benchEcho struct {
	netmsg.Returns[benchEchoReply]
	Body []byte
}

type benchEchoReply struct{ Body []byte }

type benchNote struct{ Body []byte }

var benchSizes = []int{128, 4096}

func benchBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func sizeName(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// benchCodec is one serializer with its request value and a fresh value to
// decode into.
type benchCodec struct {
	name string
	ser  serializer.Serializer
	req  func(body []byte) any
	into func() any
}

var benchCodecs = []benchCodec{
	{"json", serializer.JSON{}, func(b []byte) any { return benchEcho{Body: b} }, func() any { return new(benchEcho) }},
	{"proto", serializer.Protobuf{}, func(b []byte) any { return &testpb.Echo{Body: b} }, func() any { return new(testpb.Echo) }},
}

// BenchmarkEncodePath measures what a session does to send a request: the
// type name, the serializer appending the payload into a reused buffer, and
// the envelope header around it.
func BenchmarkEncodePath(b *testing.B) {
	for _, c := range benchCodecs {
		am := c.ser.(serializer.AppendMarshaler)
		for _, size := range benchSizes {
			b.Run(c.name+"/"+sizeName(size), func(b *testing.B) {
				v := c.req(benchBody(size))
				payload := make([]byte, 0, 2*size+64)
				frame := make([]byte, 0, 2*size+128)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					var err error
					payload, err = am.MarshalAppend(payload[:0], v)
					if err != nil {
						b.Fatal(err)
					}
					frame = wire.AppendHeaderAndPayload(frame[:0], wire.KindRequest, 42, netmsg.TypeName(v), payload, 10000, nil)
				}
			})
		}
	}
}

// BenchmarkDecodePath measures the receiving side: the envelope decoded in
// place, then the payload decoded into a new value.
func BenchmarkDecodePath(b *testing.B) {
	for _, c := range benchCodecs {
		for _, size := range benchSizes {
			b.Run(c.name+"/"+sizeName(size), func(b *testing.B) {
				v := c.req(benchBody(size))
				payload, err := c.ser.Marshal(v)
				if err != nil {
					b.Fatal(err)
				}
				frame := wire.AppendHeaderAndPayload(nil, wire.KindRequest, 42, netmsg.TypeName(v), payload, 10000, nil)
				var env wire.Envelope
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					if err := wire.Decode(frame, &env); err != nil {
						b.Fatal(err)
					}
					if err := c.ser.Unmarshal(env.Payload, c.into()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchPair starts a server with the echo handlers on a loopback port and n
// connected clients, all with the library's defaults except the
// serializer. Everything is closed when the benchmark ends.
func benchPair(b *testing.B, ser serializer.Serializer, n int, setup func(*netmsg.Server)) (*netmsg.Server, []*netmsg.Client) {
	b.Helper()
	srv := netmsg.NewServer(netmsg.WithSerializer(ser))
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, r benchEcho) (benchEchoReply, error) {
		return benchEchoReply{Body: r.Body}, nil
	})
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, r *testpb.Echo) (*testpb.EchoReply, error) {
		return &testpb.EchoReply{Body: r.Body}, nil
	})
	if setup != nil {
		setup(srv)
	}
	hs := httptest.NewServer(srv)
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	clients := make([]*netmsg.Client, n)
	b.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Close()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			b.Error(err)
		}
		hs.Close()
	})
	for i := range clients {
		c := netmsg.NewClient(url, netmsg.WithSerializer(ser))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Connect(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	return srv, clients
}

// call makes one request of the codec's contract and checks the echo.
func (c benchCodec) call(ctx context.Context, cli *netmsg.Client, body []byte, req any) error {
	var n int
	switch r := req.(type) {
	case benchEcho:
		resp, err := netmsg.SendRequest(ctx, cli, r)
		if err != nil {
			return err
		}
		n = len(resp.Body)
	case *testpb.Echo:
		resp, err := netmsg.SendRequest(ctx, cli, r)
		if err != nil {
			return err
		}
		n = len(resp.GetBody())
	}
	if n != len(body) {
		return fmt.Errorf("echo of %d bytes came back with %d", len(body), n)
	}
	return nil
}

// BenchmarkSendRequest measures SendRequest round trips to an echo handler
// over a loopback socket: "serial" is one caller, "parallel16" is 16 callers
// sharing one connection. "deadline" passes a ctx that already has a
// deadline instead of context.Background().
func BenchmarkSendRequest(b *testing.B) {
	for _, c := range benchCodecs {
		for _, size := range benchSizes {
			body := benchBody(size)
			req := c.req(body)
			b.Run(c.name+"/"+sizeName(size)+"/serial", func(b *testing.B) {
				_, clients := benchPair(b, c.ser, 1, nil)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if err := c.call(ctx, clients[0], body, req); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(c.name+"/"+sizeName(size)+"/serial-deadline", func(b *testing.B) {
				_, clients := benchPair(b, c.ser, 1, nil)
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				b.ReportAllocs()
				for b.Loop() {
					if err := c.call(ctx, clients[0], body, req); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(c.name+"/"+sizeName(size)+"/parallel16", func(b *testing.B) {
				_, clients := benchPair(b, c.ser, 1, nil)
				b.ReportAllocs()
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0))) // 16 callers
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := c.call(context.Background(), clients[0], body, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkSend measures one-way messages from one sender: the time per
// message until the server's handler has counted all of them.
func BenchmarkSend(b *testing.B) {
	for _, c := range benchCodecs {
		for _, size := range benchSizes {
			body := benchBody(size)
			b.Run(c.name+"/"+sizeName(size), func(b *testing.B) {
				var got atomic.Int64
				var msg any = benchNote{Body: body}
				if c.name == "proto" {
					msg = &testpb.Event{Name: strings.Repeat("x", size)} // proto strings must be UTF-8
				}
				_, clients := benchPair(b, c.ser, 1, func(srv *netmsg.Server) {
					netmsg.AddMessageHandler(srv, func(context.Context, *netmsg.Session, benchNote) { got.Add(1) })
					netmsg.AddMessageHandler(srv, func(context.Context, *netmsg.Session, *testpb.Event) { got.Add(1) })
				})
				ctx := context.Background()
				// Send never waits for the socket, and a queue past
				// MaxQueuedBytes (4 MiB) closes the session as a slow
				// consumer: the sender keeps at most 1 MiB of messages ahead
				// of what the server has handled, as a real one must.
				window := int64(max(1<<20/(size+64), 1))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					for int64(i)-got.Load() >= window {
						time.Sleep(10 * time.Microsecond)
					}
					if err := clients[0].Send(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
				deadline := time.Now().Add(30 * time.Second)
				for got.Load() < int64(b.N) {
					if time.Now().After(deadline) {
						b.Fatalf("server counted %d of %d messages", got.Load(), b.N)
					}
					time.Sleep(10 * time.Microsecond)
				}
			})
		}
	}
}

// BenchmarkBroadcast measures Server.Broadcast of one 128-byte message to 100
// sessions until every client's handler has it. Allocations count both
// sides; the bench/ module runs 10,000 sessions in two processes.
func BenchmarkBroadcast(b *testing.B) {
	const sessions = 100
	for _, c := range benchCodecs {
		b.Run(c.name, func(b *testing.B) {
			var got atomic.Int64
			var msg any = benchNote{Body: benchBody(128)}
			if c.name == "proto" {
				msg = &testpb.Event{Name: strings.Repeat("x", 128)}
			}
			srv, clients := benchPair(b, c.ser, sessions, nil)
			for _, cli := range clients {
				netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, benchNote) { got.Add(1) })
				netmsg.AddMessageHandler(cli, func(context.Context, *netmsg.Session, *testpb.Event) { got.Add(1) })
			}
			for srv.SessionCount() < sessions {
				time.Sleep(time.Millisecond)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := srv.Broadcast(ctx, msg); err != nil {
					b.Fatal(err)
				}
				want := int64(i+1) * sessions
				deadline := time.Now().Add(30 * time.Second)
				for got.Load() < want {
					if time.Now().After(deadline) {
						b.Fatalf("clients counted %d of %d", got.Load(), want)
					}
					time.Sleep(10 * time.Microsecond)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/sessions, "ns/recipient")
		})
	}
}
