package transport

import (
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func closeFrame(code uint16, text string, key []byte) []byte {
	payload := append([]byte{byte(code >> 8), byte(code)}, text...)
	f := []byte{0x88, byte(len(payload))}
	if key != nil {
		f[1] |= 0x80
		f = append(f, key...)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return append(f, payload...)
}

func TestFixInflateClose(t *testing.T) {
	t.Parallel()
	key := []byte{1, 2, 3, 4}
	cases := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"server frame", closeFrame(1011, gwsInflateOverflow, nil), closeFrame(1009, gwsInflateOverflow, nil)},
		{"client frame", closeFrame(1011, gwsInflateOverflow, key), closeFrame(1009, gwsInflateOverflow, key)},
		{"other 1011", closeFrame(1011, "gws: internal error!!", nil), closeFrame(1011, "gws: internal error!!", nil)},
		{"corrupt deflate", closeFrame(1011, "flate: corrupt input before offset 1", key), closeFrame(1007, "flate: corrupt input before offset 1", key)},
		{"truncated deflate", closeFrame(1011, "unexpected EOF", nil), closeFrame(1007, "unexpected EOF", nil)},
		{"normal close", closeFrame(1000, gwsInflateOverflow, nil), closeFrame(1000, gwsInflateOverflow, nil)},
		{"data frame", []byte{0x82, 3, 1, 2, 3}, []byte{0x82, 3, 1, 2, 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := append([]byte(nil), tc.in...)
			if len(p) > 4 && p[0] == 0x88 {
				fixInflateClose(p)
			}
			assert.Equal(t, tc.want, p)
		})
	}
}

// A connection carries one close frame: gws's answer to the peer's close,
// written after this side's own close frame, must not reach the peer.
func TestOneCloseFramePerConnection(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	nc := new(netConn)
	nc.init(a, nil)
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	first := closeFrame(1000, "see you", nil)
	second := closeFrame(1000, "", nil)
	for _, f := range [][]byte{first, second} {
		n, err := nc.Write(f)
		require.NoError(t, err)
		assert.Equal(t, len(f), n)
	}
	require.NoError(t, a.Close())
	assert.Equal(t, first, <-got)
}
