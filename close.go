package netmsg

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/netmsg/netmsg/internal/transport"
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

// classifyClose turns how the connection ended into a CloseError, for a
// session that had not recorded a reason of its own before. peerIsServer
// says which end the peer is.
func classifyClose(err error, peerIsServer bool) *CloseError {
	end := transport.Classify(err)
	switch end.Kind {
	case transport.EndPeerClose:
		c := &CloseError{Reason: reasonForCode(end.Code), Code: end.Code, Text: end.Text, Remote: true}
		if end.Code == closeCodeGoingAway && !peerIsServer {
			// A client's 1001 is "going away" (a browser leaving the page),
			// not a server shutting down.
			c.Reason = ClosePeerNormal
		}
		if end.Code == closeCodeNoStatus {
			c.Reason = ClosePeerNormal // a close frame without a status code
		}
		if c.Reason == CloseMessageTooLarge {
			c.Err = ErrMessageTooLarge
		}
		return c
	case transport.EndRefused:
		// gws refused the peer's input and sent this code; the fault was the peer's.
		c := &CloseError{Reason: reasonForCode(end.Code), Code: end.Code, Text: end.Text, Err: end.Err}
		if c.Reason == CloseMessageTooLarge {
			c.Err = ErrMessageTooLarge
		}
		return c
	case transport.EndWriteTimeout:
		return &CloseError{Reason: CloseSlowConsumer, Code: closeCodeTryAgainLater, Text: "write timed out", Err: end.Err}
	}
	return &CloseError{Reason: CloseNetworkError, Code: closeCodeAbnormal, Remote: true, Err: end.Err}
}

// closeText cuts a close reason to the 123 bytes a close frame has room for,
// at a character boundary: a reason that is not valid UTF-8 fails the
// connection in browsers.
func closeText(text string) string {
	const room = 123 // control frames carry 125 bytes, 2 of them the code
	if len(text) <= room {
		return text
	}
	cut := room
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut]
}
