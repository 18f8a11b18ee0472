package integration_test

import (
	"bytes"
	"compress/flate"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/internal/wire"
	"github.com/netmsg/netmsg/serializer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// hdTextOfSize returns an hdText whose MESSAGE envelope, as netmsg encodes it
// with the JSON serializer, is exactly n bytes, and that envelope.
func hdTextOfSize(t testing.TB, n int) (hdText, []byte) {
	t.Helper()
	name := netmsg.TypeName(hdText{})
	head := len(wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, name, nil, 0, nil))
	const jsonFrame = len(`{"S":""}`)
	for vs := 1; vs <= 5; vs++ {
		// envelope = head + payload tag (1) + varint(len payload) + payload
		k := n - head - 1 - vs - jsonFrame
		if k < 0 || protowire.SizeVarint(uint64(k+jsonFrame)) != vs {
			continue
		}
		m := hdText{S: strings.Repeat("a", k)}
		payload, err := serializer.JSON{}.Marshal(m)
		require.NoError(t, err)
		env := wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, name, payload, 0, nil)
		require.Len(t, env, n, "envelope size arithmetic")
		return m, env
	}
	t.Fatalf("no hdText encodes to exactly %d bytes", n)
	return hdText{}, nil
}

// hdTextSink counts the sizes of hdText messages a registrar receives.
func hdTextSink(r netmsg.Registrar) chan int {
	got := make(chan int, 16)
	netmsg.AddMessageHandler(r, func(ctx context.Context, s *netmsg.Session, m hdText) { got <- len(m.S) })
	return got
}

func hdExpectText(t testing.TB, got chan int, n int) {
	t.Helper()
	select {
	case k := <-got:
		assert.Equal(t, n, k, "size of the delivered text")
	case <-time.After(nettest.Wait):
		t.Fatalf("the message of exactly the limit was not delivered")
	}
}

func hdAssertTooLarge(t testing.TB, ce *netmsg.CloseError, remote bool) {
	t.Helper()
	require.NotNil(t, ce)
	assert.Equal(t, netmsg.CloseMessageTooLarge.String(), ce.Reason.String(), "reason of %v", ce)
	assert.EqualValues(t, 1009, ce.Code, "close code of %v", ce)
	assert.Equal(t, remote, ce.Remote, "Remote of %v", ce)
	assert.ErrorIs(t, ce, netmsg.ErrMessageTooLarge)
	assert.ErrorIs(t, ce, netmsg.ErrClosed)
}

// TestHardeningSizeLimitExact: a frame of exactly MaxMessageSize is accepted,
// one byte more closes the session with 1009 / CloseMessageTooLarge on both
// sides, in both directions, and a sender's own limit fails only the send.
func TestHardeningSizeLimitExact(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	exactMsg, exactEnv := hdTextOfSize(t, limit)
	overMsg, overEnv := hdTextOfSize(t, limit+1)
	require.Len(t, exactEnv, limit)
	require.Len(t, overEnv, limit+1)

	t.Run("raw peer to server", func(t *testing.T) {
		t.Parallel()
		srv := hdStartServer(t, netmsg.WithMaxMessageSize(limit))
		got := hdTextSink(srv.Server)
		hdEchoHandler(srv.Server)
		by := hdNewBystander(t, srv)
		p := nettest.DialGws(t, srv.URL, nettest.GwsConfig{})
		ss := srv.NextOpen(t)

		p.Send(t, exactEnv)
		hdExpectText(t, got, len(exactMsg.S))

		p.Send(t, overEnv)
		hdAssertTooLarge(t, srv.CloseOf(t, ss).Err, false)
		assert.EqualValues(t, 1009, p.NextCloseCode(t), "the peer is told 1009")
		by.AssertFine(t)
	})

	t.Run("client to server, both netmsg", func(t *testing.T) {
		t.Parallel()
		srv := hdStartServer(t, netmsg.WithMaxMessageSize(limit))
		got := hdTextSink(srv.Server)
		hdEchoHandler(srv.Server)
		disc := make(chan *netmsg.CloseError, 1)
		cli := nettest.Connect(t, srv.URL, netmsg.WithMaxMessageSize(1<<20),
			netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) { disc <- ce }))
		ss := srv.NextOpen(t)

		require.NoError(t, cli.Send(context.Background(), exactMsg))
		hdExpectText(t, got, len(exactMsg.S))

		require.NoError(t, cli.Send(context.Background(), overMsg))
		hdAssertTooLarge(t, srv.CloseOf(t, ss).Err, false)
		select {
		case ce := <-disc:
			hdAssertTooLarge(t, ce, true)
		case <-time.After(nettest.Wait):
			t.Fatal("the client did not see the close")
		}
	})

	t.Run("server to client, both netmsg", func(t *testing.T) {
		t.Parallel()
		srv := hdStartServer(t, netmsg.WithMaxMessageSize(1<<20))
		disc := make(chan *netmsg.CloseError, 1)
		cli := netmsg.NewClient(srv.URL, netmsg.WithMaxMessageSize(limit),
			netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) { disc <- ce }))
		got := hdTextSink(cli)
		ctx, cancel := context.WithTimeout(context.Background(), nettest.Wait)
		defer cancel()
		require.NoError(t, cli.Connect(ctx))
		t.Cleanup(func() { _ = cli.Close() })
		ss := srv.NextOpen(t)

		require.NoError(t, ss.Send(context.Background(), exactMsg))
		hdExpectText(t, got, len(exactMsg.S))

		require.NoError(t, ss.Send(context.Background(), overMsg))
		select {
		case ce := <-disc:
			hdAssertTooLarge(t, ce, false)
		case <-time.After(nettest.Wait):
			t.Fatal("the client did not close")
		}
		hdAssertTooLarge(t, srv.CloseOf(t, ss).Err, true)
	})

	t.Run("own limit fails the send only", func(t *testing.T) {
		t.Parallel()
		srv := hdStartServer(t, netmsg.WithMaxMessageSize(limit))
		got := hdTextSink(srv.Server)
		hdEchoHandler(srv.Server)
		cli := nettest.Connect(t, srv.URL, netmsg.WithMaxMessageSize(limit))
		srv.NextOpen(t)

		require.NoError(t, cli.Send(context.Background(), exactMsg))
		hdExpectText(t, got, len(exactMsg.S))
		err := cli.Send(context.Background(), overMsg)
		assert.ErrorIs(t, err, netmsg.ErrMessageTooLarge)
		r, err := netmsg.SendRequest(context.Background(), cli, hdEcho{Text: "alive"})
		require.NoError(t, err)
		assert.Equal(t, "alive", r.Text)
	})
}

// TestHardeningSizeLimitBeforePayload: a frame header that declares more
// than the limit is refused at once, before any of its payload is sent.
func TestHardeningSizeLimitBeforePayload(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{64<<10 + 1, 1 << 40, 1<<63 - 1} {
		srv := hdStartServer(t, netmsg.WithMaxMessageSize(64<<10))
		hdEchoHandler(srv.Server)
		by := hdNewBystander(t, srv)
		p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{})
		ss := srv.NextOpen(t)

		p.WriteRaw(t, nettest.FrameHeader(0x82, n)) // and no payload at all
		assert.EqualValues(t, 1009, p.ReadCloseCode(t), "declared %d bytes: close code", n)
		hdAssertTooLarge(t, srv.CloseOf(t, ss).Err, false)
		p.AssertClosedByServer(t)
		by.AssertFine(t)
	}
}

// hdDeflate compresses p as one permessage-deflate message (RFC 7692: raw
// deflate, sync flush, the trailing 00 00 ff ff removed).
func hdDeflate(t testing.TB, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestCompression)
	require.NoError(t, err)
	_, err = w.Write(p)
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	out := b.Bytes()
	require.True(t, bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}))
	return bytes.Clone(out[:len(out)-4])
}

// hdBomb returns a permessage-deflate payload that inflates to an hdText
// MESSAGE envelope carrying the given number of letters (a multiple of
// 1 MiB), and the envelope's size. It compresses 1 MiB of
// the letter once and repeats that block: deflate blocks that end in a sync
// flush can be concatenated, and a block that starts without a dictionary
// is valid anywhere in a stream.
func hdBomb(t testing.TB, letters int) ([]byte, int) {
	t.Helper()
	name := netmsg.TypeName(hdText{})
	const chunk = 1 << 20
	require.Zero(t, letters%chunk, "letters must fill whole chunks")
	head := wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, name, nil, 0, nil)
	payloadLen := letters + len(`{"S":""}`)
	n := len(head) + 1 + protowire.SizeVarint(uint64(payloadLen)) + payloadLen
	prefix := protowire.AppendVarint(protowire.AppendTag(head, 4, protowire.BytesType), uint64(payloadLen))
	prefix = append(prefix, `{"S":"`...)
	// The envelope prefix built by hand must be what the codec writes.
	small := wire.AppendHeaderAndPayload(nil, wire.KindMessage, 0, name, []byte(`{"S":"aaaa"}`), 0, nil)
	require.Equal(t, small[:len(head)+2], append(append([]byte(nil), head...), 4<<3|2, 12))

	var out []byte
	out = append(out, hdDeflate(t, prefix)...)
	block := hdDeflate(t, bytes.Repeat([]byte("a"), chunk))
	sync := []byte{0, 0, 0xff, 0xff} // hdDeflate strips it; put it back between parts
	for range letters / chunk {
		out = append(append(out, sync...), block...)
	}
	out = append(append(out, sync...), hdDeflate(t, []byte(`"}`))...)

	// Check: it inflates to a valid envelope of exactly n bytes.
	final := []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff} // sync marker + final empty block, as gws appends
	r := flate.NewReader(io.MultiReader(bytes.NewReader(out), bytes.NewReader(final)))
	env, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Len(t, env, n)
	var e wire.Envelope
	require.NoError(t, wire.Decode(env, &e))
	require.Equal(t, name, string(e.Type))
	return out, n
}

// TestHardeningCompressionBomb: a 64 MiB message compressed to about 64 KiB
// (under the 1 MiB frame limit) is refused while it inflates: 1009 on the
// wire, CloseMessageTooLarge on the server, and the server allocates only a
// small multiple of the limit doing so. Not parallel: it measures memory.
func TestHardeningCompressionBomb(t *testing.T) {
	const limit = netmsg.DefaultMaxMessageSize
	srv := hdStartServer(t, netmsg.WithCompression(true))
	hdEchoHandler(srv.Server)
	got := hdTextSink(srv.Server)
	by := hdNewBystander(t, srv)

	// Build the bomb before measuring: a valid envelope of a registered type
	// carrying 64 MiB of one letter, compressed to about 64 KiB.
	hdBomb(t, 2<<20) // checks the construction by inflating it
	c, inflated := hdBomb(t, 64<<20)
	bomb := nettest.Frame(0xc2, c)
	t.Logf("bomb: %d bytes inflating to %d (limit %d)", len(c), inflated, limit)
	require.Less(t, len(c), limit, "the compressed frame itself must pass the frame size check")

	hdr := http.Header{}
	hdr.Set("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover; server_no_context_takeover")
	p := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{Header: hdr})
	require.Contains(t, p.Resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	ss := srv.NextOpen(t)

	before := nettest.MemStats()
	heap := nettest.SampleHeap()
	start := time.Now()
	p.WriteRaw(t, bomb)
	code := p.ReadCloseCode(t)
	closed := srv.CloseOf(t, ss)
	took := time.Since(start)
	peak := heap.Stop()
	after := nettest.MemStats()

	assert.EqualValues(t, 1009, code, "close code the bomb's sender is told (gws's 1011 mapped)")
	hdAssertTooLarge(t, closed.Err, false)
	allocated := after.TotalAlloc - before.TotalAlloc
	grew := uint64(0)
	if peak > before.HeapInuse {
		grew = peak - before.HeapInuse
	}
	t.Logf("refused in %v; allocated %s in total, peak HeapInuse %s above the start (limit %s)",
		took, nettest.MiB(allocated), nettest.MiB(grew), nettest.MiB(limit))
	assert.Less(t, allocated, uint64(16*limit), "bytes allocated while refusing a 64 MiB bomb")
	assert.Less(t, grew, uint64(16*limit), "peak heap growth while refusing a 64 MiB bomb")

	// A message that inflates to less than the limit is still fine on the
	// same server, and the bystander noticed nothing.
	smallMsg, small := hdTextOfSize(t, limit/2)
	p2 := nettest.DialWSUpgraded(t, srv.Addr, nettest.WSDial{Header: hdr})
	srv.NextOpen(t)
	p2.WriteRaw(t, nettest.Frame(0xc2, hdDeflate(t, small)))
	hdExpectText(t, got, len(smallMsg.S))
	by.AssertFine(t)
}

// TestHardeningCompressedOverLimitBothSides: between two netmsg endpoints
// with compression, a message whose compressed frame is small but which
// inflates past the receiver's limit closes both sides with
// CloseMessageTooLarge and 1009.
func TestHardeningCompressedOverLimitBothSides(t *testing.T) {
	t.Parallel()
	srv := hdStartServer(t, netmsg.WithCompression(true), netmsg.WithMaxMessageSize(64<<10))
	hdTextSink(srv.Server)
	disc := make(chan *netmsg.CloseError, 1)
	cli := nettest.Connect(t, srv.URL, netmsg.WithCompression(true), netmsg.WithMaxMessageSize(8<<20),
		netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) { disc <- ce }))
	ss := srv.NextOpen(t)

	require.NoError(t, cli.Send(context.Background(), hdText{S: strings.Repeat("z", 4<<20)}))
	hdAssertTooLarge(t, srv.CloseOf(t, ss).Err, false)
	select {
	case ce := <-disc:
		hdAssertTooLarge(t, ce, true)
	case <-time.After(nettest.Wait):
		t.Fatal("the client did not see the close")
	}
}
