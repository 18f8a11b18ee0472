package netmsg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Code classifies an error a request handler returns to its caller. The values
// follow gRPC's numbering so they map one to one onto other RPC systems.
type Code uint32

// The error codes. CodeOK (0) is never sent on the wire.
const (
	CodeOK                 Code = 0
	CodeCanceled           Code = 1
	CodeUnknown            Code = 2
	CodeInvalidArgument    Code = 3
	CodeDeadlineExceeded   Code = 4
	CodeNotFound           Code = 5
	CodeAlreadyExists      Code = 6
	CodePermissionDenied   Code = 7
	CodeResourceExhausted  Code = 8
	CodeFailedPrecondition Code = 9
	CodeAborted            Code = 10
	CodeOutOfRange         Code = 11
	CodeUnimplemented      Code = 12
	CodeInternal           Code = 13
	CodeUnavailable        Code = 14
	CodeDataLoss           Code = 15
	CodeUnauthenticated    Code = 16
)

var codeNames = [...]string{
	"ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
	"already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
	"aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
	"unauthenticated",
}

// String returns the code's name in snake case, as gRPC and Connect spell it.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code_" + strconv.FormatUint(uint64(c), 10)
}

// Error is the error a request handler returns to give its caller a code and a
// message, and the error SendRequest returns when the peer answered with one.
// Its Code and Message travel on the wire unchanged.
type Error struct {
	Code    Code
	Message string
}

// NewError returns an *Error with the given code and message.
func NewError(c Code, msg string) *Error { return &Error{Code: c, Message: msg} }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(c Code, format string, a ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, a...)}
}

// Error formats the error as "netmsg: <code>: <message>".
func (e *Error) Error() string {
	if e.Message == "" {
		return "netmsg: " + e.Code.String()
	}
	return "netmsg: " + e.Code.String() + ": " + e.Message
}

// Is reports whether target is ErrNoHandler and e says the peer had no handler,
// or whether target is an *Error with the same code (a code-only match).
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
	}
	return target == ErrNoHandler && e.Code == CodeUnimplemented
}

// Unwrap maps the deadline and cancel codes onto the context errors, so that
// errors.Is(err, context.DeadlineExceeded) holds for a CodeDeadlineExceeded.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeDeadlineExceeded:
		return context.DeadlineExceeded
	case CodeCanceled:
		return context.Canceled
	}
	return nil
}

// CodeOf returns the code carried by err: an *Error's code, CodeCanceled or
// CodeDeadlineExceeded for the context errors, CodeUnavailable for a closed
// session or an unreachable broker, CodeNotFound for ErrNoSession, CodeOK
// for nil and CodeUnknown for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, ErrClosed), errors.Is(err, ErrNotConnected), errors.Is(err, ErrBrokerUnavailable):
		return CodeUnavailable
	case errors.Is(err, ErrNoSession):
		return CodeNotFound
	}
	return CodeUnknown
}

// Sentinel errors. Their texts are part of the API.
var (
	// ErrNotConnected is returned by a client's Send and SendRequest when there
	// is no connection and the call may not wait for one.
	ErrNotConnected = errors.New("netmsg: not connected")
	// ErrNoHandler matches (with errors.Is) the error SendRequest returns when the
	// peer has no handler for the request's type.
	ErrNoHandler = errors.New("netmsg: no handler for type")
	// ErrClosed matches every *CloseError and is returned by calls on a closed
	// session, client or server.
	ErrClosed = errors.New("netmsg: closed")
	// ErrMessageTooLarge is returned when an encoded envelope exceeds the
	// MaxMessageSize; the CloseError of a session closed for an oversized frame
	// unwraps to it.
	ErrMessageTooLarge = errors.New("netmsg: message too large")
)

// HTTPError is returned by an Authorize function to refuse a handshake with a
// particular HTTP status (401 is used for any other error).
type HTTPError struct {
	Status  int
	Message string
}

// Error returns the message, or the status when there is none.
func (e *HTTPError) Error() string {
	if e.Message == "" {
		return "netmsg: handshake refused with status " + strconv.Itoa(e.Status)
	}
	return "netmsg: handshake refused with status " + strconv.Itoa(e.Status) + ": " + e.Message
}

// wireError converts a handler's error to what is sent: *Error passes through,
// context errors keep their meaning, everything else becomes "internal error".
func wireError(err error) (Code, string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, e.Message
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded, "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return CodeCanceled, "canceled"
	}
	return CodeInternal, "internal error"
}
