package integration_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/require"
)

// 1000 messages sent without waiting arrive complete and in order, both
// ways, with each serializer.
func TestMessagesInOrder(t *testing.T) {
	t.Parallel()
	const n = 1000
	cases := []struct {
		name string
		ser  serializer.Serializer
		msg  func(i int) any
		// register adds a handler reporting each message's sequence number.
		register func(r netmsg.Registrar, got chan<- int)
	}{
		{
			name: "json structs",
			ser:  serializer.JSON{},
			msg:  func(i int) any { return itNote{Seq: i, Text: strconv.Itoa(i * 7)} },
			register: func(r netmsg.Registrar, got chan<- int) {
				netmsg.AddMessageHandler(r, func(ctx context.Context, s *netmsg.Session, m itNote) {
					if m.Text != strconv.Itoa(m.Seq*7) {
						m.Seq = -1 // corrupted
					}
					got <- m.Seq
				})
			},
		},
		{
			name: "json pointers",
			ser:  serializer.JSON{},
			msg:  func(i int) any { return &itNote{Seq: i, Text: strconv.Itoa(i * 7)} },
			register: func(r netmsg.Registrar, got chan<- int) {
				netmsg.AddMessageHandler(r, func(ctx context.Context, s *netmsg.Session, m *itNote) {
					if m.Text != strconv.Itoa(m.Seq*7) {
						m.Seq = -1
					}
					got <- m.Seq
				})
			},
		},
		{
			name: "protobuf",
			ser:  serializer.Protobuf{},
			msg:  func(i int) any { return &testpb.Event{Name: strconv.Itoa(i)} },
			register: func(r netmsg.Registrar, got chan<- int) {
				netmsg.AddMessageHandler(r, func(ctx context.Context, s *netmsg.Session, m *testpb.Event) {
					i, err := strconv.Atoi(m.Name)
					if err != nil {
						i = -1
					}
					got <- i
				})
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := nettest.NewRecorder()
			srv := nettest.StartServer(t, ev.ServerOptions(netmsg.WithSerializer(tc.ser))...)
			srvGot := make(chan int, n)
			cliGot := make(chan int, n)
			tc.register(srv, srvGot)
			cli := nettest.NewClient(t, srv.URL, netmsg.WithSerializer(tc.ser))
			tc.register(cli, cliGot)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, cli.Connect(ctx))
			ss := nettest.Recv(t, ev.Open, "OnSessionOpen")

			for i := range n {
				require.NoError(t, cli.Send(ctx, tc.msg(i)))
			}
			for i := range n {
				require.Equal(t, i, nettest.Recv(t, srvGot, "message "+strconv.Itoa(i)+" on the server"), "server: message %d", i)
			}
			for i := range n {
				require.NoError(t, ss.Send(ctx, tc.msg(i)))
			}
			for i := range n {
				require.Equal(t, i, nettest.Recv(t, cliGot, "message "+strconv.Itoa(i)+" on the client"), "client: message %d", i)
			}

			// Both directions at once.
			errs := make(chan error, 2)
			go func() {
				for i := range n {
					if err := cli.Send(ctx, tc.msg(i)); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
			go func() {
				for i := range n {
					if err := ss.Send(ctx, tc.msg(i)); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
			next := [2]int{}
			for next[0] < n || next[1] < n {
				select {
				case got := <-srvGot:
					require.Equal(t, next[0], got, "server, concurrent run")
					next[0]++
				case got := <-cliGot:
					require.Equal(t, next[1], got, "client, concurrent run")
					next[1]++
				case <-time.After(nettest.Wait):
					t.Fatalf("concurrent run stalled: server at %d, client at %d", next[0], next[1])
				}
			}
			require.NoError(t, <-errs)
			require.NoError(t, <-errs)
			time.Sleep(50 * time.Millisecond)
			nettest.None(t, srvGot, 0, "extra message on the server")
			nettest.None(t, cliGot, 0, "extra message on the client")
			nettest.None(t, ev.Unhandled, 0, "unhandled message")
		})
	}
}
