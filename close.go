package netmsg

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lxzan/gws"
)

// CloseReason says why a session ended.
type CloseReason int

// The close reasons. Each names the situation, not only the close code, so that
// a client can decide whether to reconnect.
const (
	// CloseNormal: this side closed on purpose (Session.Close, Client.Close).
	CloseNormal CloseReason = iota
	// ClosePeerNormal: the peer closed on purpose (close frame 1000, or an
	// application code 4000–4999).
	ClosePeerNormal
	// CloseConnectionLost: nothing arrived for ReceiveTimeout (heartbeat loss,
	// a half-open link).
	CloseConnectionLost
	// CloseNetworkError: a read or write failed, the link was reset, or it ended
	// without a close frame.
	CloseNetworkError
	// CloseProtocolError: the peer sent something malformed (1002/1007).
	CloseProtocolError
	// CloseMessageTooLarge: a frame was over MaxMessageSize, also after
	// decompression (1009).
	CloseMessageTooLarge
	// CloseSlowConsumer: the peer stopped reading; the outbound queue or the
	// write deadline ran out (1013 is sent).
	CloseSlowConsumer
	// CloseServerShutdown: the server is going away (1001); clients should
	// reconnect, after the delay the close text suggests.
	CloseServerShutdown
	// ClosePolicyViolation: kicked or refused (1008); clients must not reconnect.
	ClosePolicyViolation
	// CloseInternalError: this side or the peer failed (1011).
	CloseInternalError
)

var closeReasonNames = [...]string{
	"normal", "peer normal", "connection lost", "network error", "protocol error",
	"message too large", "slow consumer", "server shutdown", "policy violation", "internal error",
}

// String returns the reason in words, such as "connection lost".
func (r CloseReason) String() string {
	if r >= 0 && int(r) < len(closeReasonNames) {
		return closeReasonNames[r]
	}
	return "close reason " + strconv.Itoa(int(r))
}

// WebSocket close codes the library sends and interprets.
const (
	closeCodeNormal        uint16 = 1000
	closeCodeGoingAway     uint16 = 1001
	closeCodeProtocol      uint16 = 1002
	closeCodeNoStatus      uint16 = 1005
	closeCodeAbnormal      uint16 = 1006
	closeCodeInvalidData   uint16 = 1007
	closeCodePolicy        uint16 = 1008
	closeCodeTooLarge      uint16 = 1009
	closeCodeInternal      uint16 = 1011
	closeCodeTryAgainLater uint16 = 1013
)

// CloseError describes how a session ended. Session.Err, OnSessionClose and
// OnDisconnect report it, and calls pending on the session fail with it.
// errors.Is(err, ErrClosed) holds for every *CloseError.
type CloseError struct {
	Reason CloseReason
	Code   uint16 // the WebSocket close code sent or received (1006 when none was)
	Text   string // the close frame's reason text
	Remote bool   // the peer initiated the close
	Err    error  // underlying cause, if any
}

// Error describes the close in one line.
func (e *CloseError) Error() string {
	var b strings.Builder
	b.WriteString("netmsg: session closed: ")
	b.WriteString(e.Reason.String())
	if e.Remote {
		b.WriteString(" (by peer)")
	}
	b.WriteString(" [")
	b.WriteString(strconv.Itoa(int(e.Code)))
	b.WriteString("]")
	if e.Text != "" {
		b.WriteString(": ")
		b.WriteString(e.Text)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *CloseError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrClosed) hold for every *CloseError, and
// errors.Is(err, ErrMessageTooLarge) for CloseMessageTooLarge.
func (e *CloseError) Is(target error) bool {
	return target == ErrClosed || (target == ErrMessageTooLarge && e.Reason == CloseMessageTooLarge)
}

// ShouldReconnect reports whether a client should try again after this close:
// false for a policy violation, true otherwise.
func (e *CloseError) ShouldReconnect() bool { return e.Reason != ClosePolicyViolation }

// reconnectHintKey prefixes the reconnect hint a server puts in its 1001 close text.
const reconnectHintKey = "reconnect-after="

// ReconnectAfter returns the minimum delay the server asked for in its close
// text ("reconnect-after=1.5s"), or 0 when it named none.
func (e *CloseError) ReconnectAfter() time.Duration {
	i := strings.Index(e.Text, reconnectHintKey)
	if i < 0 {
		return 0
	}
	rest := e.Text[i+len(reconnectHintKey):]
	if j := strings.IndexAny(rest, " ;,"); j >= 0 {
		rest = rest[:j]
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// closeCodeFor returns the close code this side sends for a reason.
func closeCodeFor(r CloseReason) uint16 {
	switch r {
	case CloseServerShutdown:
		return closeCodeGoingAway
	case CloseProtocolError:
		return closeCodeProtocol
	case CloseMessageTooLarge:
		return closeCodeTooLarge
	case CloseSlowConsumer:
		return closeCodeTryAgainLater
	case ClosePolicyViolation:
		return closeCodePolicy
	case CloseInternalError:
		return closeCodeInternal
	}
	return closeCodeNormal
}

// reasonForCode interprets a close code received from the peer.
func reasonForCode(code uint16) CloseReason {
	switch code {
	case closeCodeNormal:
		return ClosePeerNormal
	case closeCodeGoingAway:
		return CloseServerShutdown
	case closeCodeProtocol, closeCodeInvalidData, 1003:
		return CloseProtocolError
	case closeCodePolicy:
		return ClosePolicyViolation
	case closeCodeTooLarge:
		return CloseMessageTooLarge
	case closeCodeTryAgainLater:
		return CloseSlowConsumer
	case closeCodeInternal:
		return CloseInternalError
	case closeCodeNoStatus, closeCodeAbnormal:
		return CloseNetworkError
	}
	if code >= 4000 && code <= 4999 {
		return ClosePeerNormal
	}
	return CloseProtocolError
}

// statusCoder matches gws's internal close status type, which gws hands to
// OnClose after it failed a read for a protocol reason and sent that code.
type statusCoder interface{ Uint16() uint16 }

// classifyGwsClose turns the error gws hands to OnClose into a CloseError, for
// a session that had not recorded a reason of its own before. peerIsServer
// says which end the peer is.
func classifyGwsClose(err error, peerIsServer bool) *CloseError {
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		c := &CloseError{Reason: reasonForCode(ce.Code), Code: ce.Code, Text: string(ce.Reason), Remote: true}
		if ce.Code == closeCodeGoingAway && !peerIsServer {
			// A client's 1001 is "going away" (a browser leaving the page),
			// not a server shutting down.
			c.Reason = ClosePeerNormal
		}
		if ce.Code == closeCodeInternal && c.Text == gwsInflateOverflow {
			c.Reason = CloseMessageTooLarge // a peer whose close frame was not corrected
		}
		if c.Reason == CloseMessageTooLarge {
			c.Err = ErrMessageTooLarge
		}
		return c
	}
	var sc statusCoder
	if errors.As(err, &sc) {
		// gws failed the read (oversized frame or inflation, bad framing) and
		// already sent this code; the fault was the peer's.
		code := sc.Uint16()
		c := &CloseError{Reason: reasonForCode(code), Code: code, Text: err.Error()}
		if c.Reason == CloseMessageTooLarge {
			c.Err = ErrMessageTooLarge
		}
		return c
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Reads carry no deadline here, so this is a write that ran out of time.
		return &CloseError{Reason: CloseSlowConsumer, Code: closeCodeTryAgainLater, Err: err}
	}
	if err != nil && !isNetworkError(err) {
		// gws failed a read on the peer's input and hands over only the inner
		// error: a reserved opcode (it sent 1002), a compressed frame that does
		// not inflate or text that is not UTF-8 (sessionConn made it 1007).
		if errors.Is(err, gws.ErrMessageTooLarge) {
			return &CloseError{Reason: CloseMessageTooLarge, Code: closeCodeTooLarge, Text: err.Error(), Err: ErrMessageTooLarge}
		}
		code := closeCodeProtocol
		if strings.HasPrefix(err.Error(), flateErrPrefix) || errors.Is(err, gws.ErrTextEncoding) {
			code = closeCodeInvalidData
		}
		return &CloseError{Reason: CloseProtocolError, Code: code, Text: err.Error(), Err: err}
	}
	c := &CloseError{Reason: CloseNetworkError, Code: closeCodeAbnormal, Remote: true, Err: err}
	if err == nil {
		c.Err = io.ErrUnexpectedEOF
	}
	return c
}

// isNetworkError reports whether err is the transport failing (EOF, reset,
// a closed or timed-out socket) rather than gws refusing the peer's bytes.
func isNetworkError(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	var errno syscall.Errno
	return errors.As(err, &ne) || errors.As(err, &errno)
}
