package integration_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/testpb"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// itEventJSON is what a JSON client that does not use the generated types
// decodes testpb.Event into: same wire name, same JSON field.
type itEventJSON struct {
	Name string `json:"name"`
}

func (itEventJSON) MessageType() string { return "netmsg.test.v1.Event" }

// itCounting wraps a serializer under the same name and counts encodes.
type itCounting struct {
	serializer.Serializer
	encodes atomic.Int64
}

func (c *itCounting) Marshal(v any) ([]byte, error) {
	c.encodes.Add(1)
	return c.Serializer.Marshal(v)
}

func (c *itCounting) MarshalAppend(b []byte, v any) ([]byte, error) {
	c.encodes.Add(1)
	return c.Serializer.(serializer.AppendMarshaler).MarshalAppend(b, v)
}

// A broadcast reaches every client exactly once, in order.
func TestBroadcastReachesEveryClientOnce(t *testing.T) {
	t.Parallel()
	const (
		n    = 50
		msgs = 3
	)
	srv := nettest.StartServer(t)
	var mu sync.Mutex
	got := make([][]int, n)
	all := make(chan struct{}, n*msgs)
	for i := range n {
		c := nettest.NewClient(t, srv.URL)
		netmsg.AddMessageHandler(c, func(ctx context.Context, s *netmsg.Session, m itNote) {
			mu.Lock()
			got[i] = append(got[i], m.Seq)
			mu.Unlock()
			all <- struct{}{}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, c.Connect(ctx))
		cancel()
	}
	// A client's Connect may return a moment before the server has
	// registered its session; Broadcast reaches registered sessions.
	require.Eventually(t, func() bool { return srv.SessionCount() == n }, nettest.Wait, time.Millisecond)

	for seq := range msgs {
		require.NoError(t, srv.Broadcast(context.Background(), itNote{Seq: seq, Text: "all"}))
	}
	for i := range n * msgs {
		nettest.Recv(t, all, "broadcast delivery "+string(rune('0'+i%10)))
	}
	time.Sleep(200 * time.Millisecond) // room for duplicates to show up
	nettest.None(t, all, 0, "a duplicate delivery")
	mu.Lock()
	defer mu.Unlock()
	for i, g := range got {
		assert.Equal(t, []int{0, 1, 2}, g, "client %d", i)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, srv.Broadcast(ctx, itNote{}), context.Canceled, "Broadcast checks its ctx")
}

// One broadcast reaches JSON and protobuf clients, encoded once per
// serializer; a message one serializer cannot encode still reaches the others.
func TestBroadcastMixedSerializers(t *testing.T) {
	t.Parallel()
	const perSer = 10
	cj := &itCounting{Serializer: serializer.JSON{}}
	cp := &itCounting{Serializer: serializer.Protobuf{}}
	require.Equal(t, "json", cj.Name())
	require.Equal(t, "proto", cp.Name())
	srv := nettest.StartServer(t, netmsg.WithSerializer(cj, cp))

	jsonGot := make(chan string, 4*perSer)
	protoGot := make(chan string, 4*perSer)
	for range perSer {
		jc := nettest.NewClient(t, srv.URL) // JSON by default
		netmsg.AddMessageHandler(jc, func(ctx context.Context, s *netmsg.Session, m itEventJSON) { jsonGot <- m.Name })
		netmsg.AddMessageHandler(jc, func(ctx context.Context, s *netmsg.Session, m itNote) { jsonGot <- "note:" + m.Text })
		pc := nettest.NewClient(t, srv.URL, netmsg.WithSerializer(serializer.Protobuf{}))
		netmsg.AddMessageHandler(pc, func(ctx context.Context, s *netmsg.Session, m *testpb.Event) { protoGot <- m.Name })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, jc.Connect(ctx))
		require.NoError(t, pc.Connect(ctx))
		cancel()
		assert.Equal(t, "json", jc.Session().Serializer().Name())
		assert.Equal(t, "proto", pc.Session().Serializer().Name())
	}
	require.Eventually(t, func() bool { return srv.SessionCount() == 2*perSer }, nettest.Wait, time.Millisecond)
	bySer := map[string]int{}
	for s := range srv.Sessions() {
		bySer[s.Serializer().Name()]++
	}
	assert.Equal(t, map[string]int{"json": perSer, "proto": perSer}, bySer)

	j0, p0 := cj.encodes.Load(), cp.encodes.Load()
	require.NoError(t, srv.Broadcast(context.Background(), &testpb.Event{Name: "hello"}))
	for range perSer {
		assert.Equal(t, "hello", nettest.Recv(t, jsonGot, "the JSON clients' copy"))
		assert.Equal(t, "hello", nettest.Recv(t, protoGot, "the protobuf clients' copy"))
	}
	assert.EqualValues(t, 1, cj.encodes.Load()-j0, "JSON encodes for one broadcast")
	assert.EqualValues(t, 1, cp.encodes.Load()-p0, "protobuf encodes for one broadcast")

	// A plain struct has no protobuf encoding: the JSON clients still get it
	// and Broadcast says what failed.
	err := srv.Broadcast(context.Background(), itNote{Text: "json only"})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "proto"), "the error names the serializer: %v", err)
	for range perSer {
		assert.Equal(t, "note:json only", nettest.Recv(t, jsonGot, "the JSON clients' copy"))
	}
	time.Sleep(200 * time.Millisecond)
	nettest.None(t, jsonGot, 0, "an extra JSON delivery")
	nettest.None(t, protoGot, 0, "a protobuf delivery of an unencodable message")
	assert.Equal(t, 2*perSer, srv.SessionCount(), "a failed encode closes no session")
}
