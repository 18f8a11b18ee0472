// Package testcontract holds the message types the TypeScript client's tests
// exchange with the test server, beside the typesafe example's contract. On
// the wire they travel as "testcontract.<Type>".
package testcontract

import "github.com/netmsg/netmsg"

// EchoRequest asks the server to return Text with what it saw of the request.
type EchoRequest struct {
	netmsg.Returns[EchoResponse]
	Text string
}

// EchoResponse returns an EchoRequest's text, the metadata that came with it,
// the deadline the server's handler got and the session's id.
type EchoResponse struct {
	Text       string
	Metadata   map[string]string `json:",omitempty"`
	DeadlineMs int64             // the handler's remaining deadline; 0 when it had none
	Session    string
}

// FailRequest makes the server's handler fail: with an *netmsg.Error of Code
// and Message, or, with Plain, a plain Go error (sent as internal error), or,
// with Panic, a panic.
type FailRequest struct {
	netmsg.Returns[FailResponse]
	Code    uint32
	Message string
	Plain   bool
	Panic   bool
}

// FailResponse is never sent: FailRequest always fails.
type FailResponse struct{}

// AddRequest is sent by the server to the client: the TypeScript test
// registers its handler. FailCode, Throw and SleepMs make the handler fail or
// take its time.
type AddRequest struct {
	netmsg.Returns[AddResponse]
	A, B        int
	FailCode    uint32 `json:",omitempty"`
	FailMessage string `json:",omitempty"`
	Throw       bool   `json:",omitempty"`
	SleepMs     int    `json:",omitempty"`
}

// AddResponse is the client's answer to an AddRequest.
type AddResponse struct {
	Sum      int
	Metadata map[string]string `json:",omitempty"` // what the client's handler saw
}

// AskRequest makes the server send Add to the client that asked, with a
// deadline of TimeoutMs (none when 0) and, after CancelAfterMs, a
// cancellation. The server reports how its call ended.
type AskRequest struct {
	netmsg.Returns[AskResponse]
	Add           AddRequest
	TimeoutMs     int
	CancelAfterMs int
}

// AskResponse says how the server's request to the client ended.
type AskResponse struct {
	Sum       int
	Metadata  map[string]string
	Code      uint32 // 0 when the call succeeded
	Message   string
	ElapsedMs int64
}

// PushRequest makes the server send Count Notice messages to the caller.
type PushRequest struct {
	netmsg.Returns[PushResponse]
	Count int
	Text  string
}

// PushResponse is sent once the notices are queued.
type PushResponse struct{ Sent int }

// CloseRequest makes the server close the caller's session DelayMs after it
// answered: Mode "close" (1000), "kick" (1008, the client must not
// reconnect).
type CloseRequest struct {
	netmsg.Returns[CloseResponse]
	Mode    string
	Text    string
	DelayMs int
}

// CloseResponse is the answer before the close.
type CloseResponse struct{}

// ObserveRequest asks the server what it has seen.
type ObserveRequest struct {
	netmsg.Returns[ObserveResponse]
}

// ObserveResponse lists the server's observations: sessions closed, how slow
// handlers ended, and the caller's session as the server measures it.
type ObserveResponse struct {
	Closes   []CloseEvent
	SlowEnds []string
	RTTNs    int64 // the caller's session: round trip of the server's last WebSocket ping
	Session  string
	Sessions int // sessions open now
}

// CloseEvent is one session that ended, as the server saw it.
type CloseEvent struct {
	Session string
	Reason  string
	Code    uint16
	Text    string
	Remote  bool
}
