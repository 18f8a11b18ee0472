package netmsg

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lxzan/gws"
	"github.com/stretchr/testify/assert"
)

func TestCloseReasonStrings(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for r := CloseNormal; r <= CloseInternalError; r++ {
		s := r.String()
		assert.NotEmpty(t, s)
		assert.False(t, seen[s], "duplicate name %q", s)
		seen[s] = true
	}
	assert.Equal(t, "connection lost", CloseConnectionLost.String())
	assert.Equal(t, "close reason 42", CloseReason(42).String())
}

func TestCloseCodesRoundTrip(t *testing.T) {
	t.Parallel()
	// What one side sends for a reason, the other side reads as the same
	// reason (seen from the peer: normal becomes peer normal).
	for r := CloseNormal; r <= CloseInternalError; r++ {
		if r == CloseConnectionLost || r == CloseNetworkError {
			continue // no frame is sent for these
		}
		want := r
		if r == CloseNormal {
			want = ClosePeerNormal
		}
		if r == ClosePeerNormal {
			continue
		}
		assert.Equal(t, want, reasonForCode(closeCodeFor(r)), r.String())
	}
	assert.Equal(t, ClosePeerNormal, reasonForCode(4321))
	assert.Equal(t, CloseProtocolError, reasonForCode(1007))
	assert.Equal(t, CloseProtocolError, reasonForCode(2999))
}

type fakeStatus uint16

func (s fakeStatus) Uint16() uint16 { return uint16(s) }
func (s fakeStatus) Error() string  { return "status" }

func TestClassifyGwsClose(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		err    error
		reason CloseReason
		remote bool
	}{
		{"peer close frame", &gws.CloseError{Code: 1000, Reason: []byte("bye")}, ClosePeerNormal, true},
		{"peer shutdown", &gws.CloseError{Code: 1001}, CloseServerShutdown, true},
		{"peer policy", &gws.CloseError{Code: 1008}, ClosePolicyViolation, true},
		{"peer internal", &gws.CloseError{Code: 1011}, CloseInternalError, true},
		{"frame too large", fakeStatus(1009), CloseMessageTooLarge, false},
		{"bad framing", fakeStatus(1002), CloseProtocolError, false},
		{"eof", io.EOF, CloseNetworkError, true},
		{"unexpected eof", io.ErrUnexpectedEOF, CloseNetworkError, true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, CloseNetworkError, true},
		{"closed socket", net.ErrClosed, CloseNetworkError, true},
		{"write deadline", os.ErrDeadlineExceeded, CloseSlowConsumer, false},
		{"reserved opcode", errors.New("gws: unexpected opcode 3"), CloseProtocolError, false},
		{"corrupt deflate", errors.New("flate: corrupt input before offset 1"), CloseProtocolError, false},
		{"bad utf-8", gws.ErrTextEncoding, CloseProtocolError, false},
		{"inflated too large", gws.ErrMessageTooLarge, CloseMessageTooLarge, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ce := classifyClose(tc.err, true)
			assert.Equal(t, tc.reason, ce.Reason)
			assert.Equal(t, tc.remote, ce.Remote)
			assert.ErrorIs(t, ce, ErrClosed)
		})
	}
	ce := classifyClose(&gws.CloseError{Code: 1009}, true)
	assert.ErrorIs(t, ce, ErrMessageTooLarge)
	assert.Equal(t, ClosePeerNormal, classifyClose(&gws.CloseError{Code: 1001}, false).Reason, "a client going away")
	assert.EqualValues(t, 1002, classifyClose(errors.New("gws: unexpected opcode 3"), true).Code)
	assert.EqualValues(t, 1007, classifyClose(errors.New("flate: corrupt input before offset 1"), true).Code)
}

func TestReconnectAfter(t *testing.T) {
	t.Parallel()
	cases := map[string]time.Duration{
		"server shutting down; reconnect-after=500ms": 500 * time.Millisecond,
		"reconnect-after=2s; bye":                     2 * time.Second,
		"reconnect-after=-1s":                         0,
		"reconnect-after=soon":                        0,
		"":                                            0,
	}
	for text, want := range cases {
		assert.Equal(t, want, (&CloseError{Text: text}).ReconnectAfter(), text)
	}
}

func TestCloseErrorText(t *testing.T) {
	t.Parallel()
	ce := &CloseError{Reason: CloseServerShutdown, Code: 1001, Text: "going", Remote: true, Err: io.EOF}
	assert.Equal(t, "netmsg: session closed: server shutdown (by peer) [1001]: going: EOF", ce.Error())
	assert.True(t, errors.Is(ce, io.EOF))
	assert.True(t, ce.ShouldReconnect())
	assert.False(t, (&CloseError{Reason: ClosePolicyViolation}).ShouldReconnect())
}

func TestClassifyInflateOverflow(t *testing.T) {
	t.Parallel()
	ce := classifyClose(&gws.CloseError{Code: 1011, Reason: []byte("gws: message too large")}, true)
	assert.Equal(t, CloseMessageTooLarge, ce.Reason)
	ce = classifyClose(&gws.CloseError{Code: 0}, true)
	assert.Equal(t, ClosePeerNormal, ce.Reason, "a close frame without a status code is a normal close")
	assert.EqualValues(t, 1005, ce.Code)
}

func TestCloseTextFitsAFrameAndStaysUTF8(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "bye", closeText("bye"))
	long := strings.Repeat("é", 100) // 200 bytes, 2 per character
	got := closeText(long)
	assert.LessOrEqual(t, len(got), 123)
	assert.Equal(t, 122, len(got), "cut at the last whole character")
	assert.True(t, utf8.ValidString(got))
}
