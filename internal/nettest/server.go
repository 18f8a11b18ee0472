package nettest

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Server is a netmsg.Server served by Serve on a loopback listener. It is
// shut down when the test ends, after the clients the test made later (which
// t.Cleanup closes first).
type Server struct {
	*netmsg.Server
	Addr string // host:port
	URL  string // ws://host:port/ (wss:// behind TLS)
	Log  *LogRecorder

	ln       *listener
	killed   atomic.Bool
	serveErr chan error
	once     sync.Once
	stopErr  error
	byTest   bool
}

// Listen configures where and how StartServerOn listens. The zero value is
// what StartServer uses.
type Listen struct {
	Addr string // default "127.0.0.1:0"
	// Wrap wraps the listener (tls.NewListener for wss://).
	Wrap func(net.Listener) net.Listener
	// Tune runs on every accepted socket first (buffer sizes, linger).
	Tune func(*net.TCPConn)
	// StrictLog fails the test if the server logs at Error level (a panic
	// recovered by gws or netmsg): for tests in which nothing may panic.
	StrictLog bool
}

// StartServer serves a new server on 127.0.0.1 at a free port.
func StartServer(t testing.TB, opts ...netmsg.ServerOption) *Server {
	t.Helper()
	return StartServerOn(t, Listen{}, opts...)
}

// StartServerOn serves a new server as l says. Its logger is a LogRecorder
// unless opts set another.
func StartServerOn(t testing.TB, l Listen, opts ...netmsg.ServerOption) *Server {
	t.Helper()
	if l.Addr == "" {
		l.Addr = "127.0.0.1:0"
	}
	raw, err := net.Listen("tcp", l.Addr)
	require.NoError(t, err)
	s := &Server{
		Log:      &LogRecorder{},
		ln:       &listener{Listener: raw, tune: l.Tune},
		serveErr: make(chan error, 1),
		Addr:     raw.Addr().String(),
	}
	s.URL = "ws://" + s.Addr + "/"
	var ln net.Listener = s.ln
	if l.Wrap != nil {
		ln = l.Wrap(ln)
		s.URL = "wss://" + s.Addr + "/"
	}
	all := append([]netmsg.ServerOption{netmsg.WithLogger(slog.New(s.Log))}, opts...)
	s.Server = netmsg.NewServer(all...)
	go func() { s.serveErr <- s.Server.Serve(ln) }()
	t.Cleanup(func() {
		err := s.stop(t, 10*time.Second, false)
		if !s.byTest {
			assert.NoError(t, err, "Server.Shutdown at the end of the test")
		}
		if l.StrictLog {
			s.Log.AssertClean(t)
		}
	})
	return s
}

// Stop shuts the server down with a ctx of d, checks that Serve returned,
// and returns Shutdown's error. Later calls return the first call's result;
// the cleanup at the end of the test then does not assert it.
func (s *Server) Stop(t testing.TB, d time.Duration) error {
	t.Helper()
	return s.stop(t, d, true)
}

func (s *Server) stop(t testing.TB, d time.Duration, byTest bool) error {
	s.once.Do(func() {
		s.byTest = byTest
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		s.stopErr = s.Server.Shutdown(ctx)
		select {
		case err := <-s.serveErr:
			if !s.killed.Load() { // after Kill, Serve returns the listener's error
				assert.ErrorIs(t, err, http.ErrServerClosed, "Serve's result after Shutdown")
			}
		case <-time.After(Wait):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return s.stopErr
}

// Kill closes the listener and resets every connection the server accepted,
// as if the server process had died.
func (s *Server) Kill() {
	s.killed.Store(true)
	s.ln.kill()
}

// listener tracks the connections it accepted and may tune their sockets.
type listener struct {
	net.Listener
	tune  func(*net.TCPConn)
	mu    sync.Mutex
	conns []net.Conn
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		if tc, ok := c.(*net.TCPConn); ok && l.tune != nil {
			l.tune(tc)
		}
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *listener) kill() {
	_ = l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, like a killed process
		}
		_ = c.Close()
	}
}

// LogRecorder is a slog.Handler that keeps the messages of Error-level
// records: gws logs the panics it recovers there, and netmsg logs handler
// and callback panics there.
type LogRecorder struct {
	mu   sync.Mutex
	errs []string
}

// Enabled implements slog.Handler.
func (l *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *LogRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		l.mu.Lock()
		l.errs = append(l.errs, r.Message)
		l.mu.Unlock()
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (l *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }

// WithGroup implements slog.Handler.
func (l *LogRecorder) WithGroup(string) slog.Handler { return l }

// Errors returns the messages of the Error-level records so far.
func (l *LogRecorder) Errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// AssertClean fails the test if an Error-level record was logged.
func (l *LogRecorder) AssertClean(t testing.TB) {
	t.Helper()
	assert.Empty(t, l.Errors(), "Error-level log records (a recovered panic?)")
}
