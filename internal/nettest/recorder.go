package nettest

import (
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Closed is one OnSessionClose.
type Closed struct {
	S   *netmsg.Session
	Err *netmsg.CloseError
	At  time.Time
}

// Recorder records the callbacks of a server (ServerOptions) and of a client
// (ClientOptions) on buffered channels, and counts them. Its options come
// first; options given after them replace the callbacks they set.
type Recorder struct {
	Open        chan *netmsg.Session
	Close       chan Closed
	Disconnect  chan *netmsg.CloseError
	Attempt     chan netmsg.ReconnectAttempt
	Unhandled   chan string
	Errs        chan error // OnError of either side; dropped when full
	mu          sync.Mutex
	opened      []*netmsg.Session
	closes      map[string]int
	disconnects int
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	const n = 4096
	return &Recorder{
		Open:       make(chan *netmsg.Session, n),
		Close:      make(chan Closed, n),
		Disconnect: make(chan *netmsg.CloseError, n),
		Attempt:    make(chan netmsg.ReconnectAttempt, n),
		Unhandled:  make(chan string, n),
		Errs:       make(chan error, n),
		closes:     make(map[string]int),
	}
}

// ServerOptions records OnSessionOpen, OnSessionClose, OnUnhandled and
// OnError, followed by more.
func (r *Recorder) ServerOptions(more ...netmsg.ServerOption) []netmsg.ServerOption {
	return append([]netmsg.ServerOption{
		netmsg.WithOnSessionOpen(func(s *netmsg.Session) {
			r.mu.Lock()
			r.opened = append(r.opened, s)
			r.mu.Unlock()
			r.Open <- s
		}),
		netmsg.WithOnSessionClose(func(s *netmsg.Session, ce *netmsg.CloseError) {
			r.mu.Lock()
			r.closes[s.ID()]++
			r.mu.Unlock()
			r.Close <- Closed{S: s, Err: ce, At: time.Now()}
		}),
		netmsg.WithOnUnhandled(func(_ *netmsg.Session, typ string) { r.Unhandled <- typ }),
		netmsg.WithOnError(r.onError),
	}, more...)
}

// ClientOptions records OnDisconnect, OnReconnectAttempt and OnError,
// followed by more.
func (r *Recorder) ClientOptions(more ...netmsg.ClientOption) []netmsg.ClientOption {
	return append([]netmsg.ClientOption{
		netmsg.WithOnDisconnect(func(ce *netmsg.CloseError) {
			r.mu.Lock()
			r.disconnects++
			r.mu.Unlock()
			r.Disconnect <- ce
		}),
		netmsg.WithOnReconnectAttempt(func(a netmsg.ReconnectAttempt) { r.Attempt <- a }),
		netmsg.WithOnError(r.onError),
	}, more...)
}

func (r *Recorder) onError(_ *netmsg.Session, err error) {
	select {
	case r.Errs <- err:
	default:
	}
}

// NextOpen waits for the next OnSessionOpen.
func (r *Recorder) NextOpen(t testing.TB) *netmsg.Session {
	t.Helper()
	return Recv(t, r.Open, "OnSessionOpen")
}

// NextClose waits for the next OnSessionClose.
func (r *Recorder) NextClose(t testing.TB) Closed {
	t.Helper()
	c := Recv(t, r.Close, "OnSessionClose")
	require.NotNil(t, c.Err, "OnSessionClose got a nil *CloseError")
	return c
}

// CloseOf waits for the OnSessionClose of s; the closes of other sessions
// that come first are consumed.
func (r *Recorder) CloseOf(t testing.TB, s *netmsg.Session) Closed {
	t.Helper()
	deadline := time.After(Wait)
	for {
		select {
		case c := <-r.Close:
			if c.S == s {
				require.NotNil(t, c.Err, "OnSessionClose got a nil *CloseError")
				return c
			}
		case <-deadline:
			t.Fatalf("session %s did not close within %v", s.ID(), Wait)
			return Closed{}
		}
	}
}

// NextDisconnect waits for the next OnDisconnect.
func (r *Recorder) NextDisconnect(t testing.TB) *netmsg.CloseError {
	t.Helper()
	ce := Recv(t, r.Disconnect, "OnDisconnect")
	require.NotNil(t, ce, "OnDisconnect got a nil *CloseError")
	return ce
}

// Opened returns the sessions OnSessionOpen saw, in order.
func (r *Recorder) Opened() []*netmsg.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*netmsg.Session(nil), r.opened...)
}

// CloseCounts returns how many OnSessionClose calls each session id got.
func (r *Recorder) CloseCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.closes))
	for k, v := range r.closes {
		m[k] = v
	}
	return m
}

// Disconnects returns how many times OnDisconnect ran.
func (r *Recorder) Disconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.disconnects
}

// AssertClosedOnce checks that every session that opened got exactly one
// OnSessionClose and that none got more than one.
func (r *Recorder) AssertClosedOnce(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.opened {
		assert.Equal(t, 1, r.closes[s.ID()], "OnSessionClose calls for session %s", s.ID())
	}
	for id, n := range r.closes {
		assert.Equal(t, 1, n, "OnSessionClose calls for session %s", id)
	}
}

// AssertClose checks the fields every *CloseError must get right; code 0
// skips the code.
func AssertClose(t testing.TB, ce *netmsg.CloseError, reason netmsg.CloseReason, code uint16, remote bool) {
	t.Helper()
	require.NotNil(t, ce)
	assert.Equal(t, reason.String(), ce.Reason.String(), "Reason of %v", ce)
	if code != 0 {
		assert.Equal(t, code, ce.Code, "Code of %v", ce)
	}
	assert.Equal(t, remote, ce.Remote, "Remote of %v", ce)
	assert.ErrorIs(t, ce, netmsg.ErrClosed)
	assert.NotEmpty(t, ce.Error())
}

// CloseErrorOf asserts that err is a *netmsg.CloseError matching
// netmsg.ErrClosed and returns it.
func CloseErrorOf(t testing.TB, err error) *netmsg.CloseError {
	t.Helper()
	var ce *netmsg.CloseError
	require.ErrorAs(t, err, &ce, "want a *netmsg.CloseError, got %v", err)
	assert.ErrorIs(t, err, netmsg.ErrClosed)
	return ce
}
