package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/lxzan/gws"
)

// SessionHeader is the handshake response header that carries the session
// id the server chose, so that both ends know a session by the same id.
const SessionHeader = "Netmsg-Session-Id"

// Options are what both ends configure on a connection.
type Options struct {
	MaxMessageSize int
	Compression    bool
	Logger         *slog.Logger
}

// Upgrader turns HTTP requests into connections.
type Upgrader struct {
	u        *gws.Upgrader
	compress bool
}

// NewUpgrader returns an upgrader that accepts the given subprotocols (gws
// picks the first of them, in this order, that the client offers on the
// first Sec-WebSocket-Protocol header line).
func NewUpgrader(o Options, subprotocols []string, handshakeTimeout time.Duration) *Upgrader {
	return &Upgrader{compress: o.Compression, u: gws.NewUpgrader(handler{}, &gws.ServerOption{
		ReadMaxPayloadSize:  o.MaxMessageSize,
		WriteMaxPayloadSize: o.MaxMessageSize + 64,
		PermessageDeflate:   gws.PermessageDeflate{Enabled: o.Compression},
		Recovery:            gws.Recovery,
		Logger:              logger{o.Logger},
		HandshakeTimeout:    handshakeTimeout,
		SubProtocols:        subprotocols,
		NewSession:          func() gws.SessionStorage { return new(slot) },
	})}
}

// Upgrade hijacks the request's connection (rather than gws's Upgrade) so
// that gws reads and writes through netConn, and completes the handshake
// with the session id in its response.
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request, sessionID string) (*Conn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "netmsg: this connection cannot be upgraded (HTTP/2?)", http.StatusInternalServerError)
		return nil, errors.New("netmsg: ResponseWriter is not an http.Hijacker")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	// Whatever net/http read ahead (a client that did not wait for the 101)
	// is handed over first.
	var ahead []byte
	if n := brw.Reader.Buffered(); n > 0 {
		p, _ := brw.Reader.Peek(n)
		ahead = bytes.Clone(p)
	}
	conn := &Conn{server: true, compress: u.compress}
	nc := &conn.nc
	nc.init(c, ahead)
	nc.inject = SessionHeader + ": " + sessionID + "\r\n"
	brw.Reader.Reset(nc)
	gc, err := u.u.UpgradeFromConn(nc, brw.Reader, r)
	if err != nil {
		return nil, err
	}
	conn.gc = gc
	gc.Session().(*slot).c = conn
	return conn, nil
}

// DialOptions configure a client connection.
type DialOptions struct {
	Options
	URL              *url.URL
	RawURL           string
	Header           http.Header // cloned by the caller; Sec-WebSocket-Protocol set
	TLS              *tls.Config // nil: defaults; never modified
	DialTimeout      time.Duration
	HandshakeTimeout time.Duration
}

// HandshakeRefused is returned by Dial when the server answered the
// handshake with something other than 101.
type HandshakeRefused struct {
	Status int
	Body   string
	Err    error
}

func (e *HandshakeRefused) Error() string {
	return fmt.Sprintf("handshake refused: %d: %s", e.Status, e.Body)
}

// Dial opens a connection and completes the WebSocket handshake, honouring
// ctx throughout, DialTimeout for dialling and TLS and HandshakeTimeout for
// the WebSocket handshake. It returns the session id the server sent.
func Dial(ctx context.Context, o DialOptions) (*Conn, string, error) {
	u := o.URL
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "wss" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, "", fmt.Errorf("netmsg: dial %s: %w", o.RawURL, err)
	}
	if u.Scheme == "wss" {
		cfg := o.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, "", fmt.Errorf("netmsg: TLS handshake with %s: %w", host, err)
		}
		c = tc
	}
	// gws's handshake has no context: closing the connection when ctx (or
	// the handshake timeout) ends makes it fail at once.
	ctx, cancelHS := context.WithTimeout(ctx, o.HandshakeTimeout)
	defer cancelHS()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })

	conn := &Conn{compress: o.Compression}
	nc := &conn.nc
	nc.init(c, nil)
	sl := new(slot)
	gc, resp, err := gws.NewClientFromConn(handler{}, &gws.ClientOption{
		Addr:                o.RawURL,
		RequestHeader:       o.Header,
		ReadMaxPayloadSize:  o.MaxMessageSize,
		WriteMaxPayloadSize: o.MaxMessageSize + 64,
		PermessageDeflate:   gws.PermessageDeflate{Enabled: o.Compression},
		Recovery:            gws.Recovery,
		Logger:              logger{o.Logger},
		// Longer than ctx can last, so ctx (closing c) always ends it first
		// and gws's own handshake goroutine can deliver its result.
		HandshakeTimeout: o.DialTimeout + o.HandshakeTimeout + time.Minute,
		NewSession:       func() gws.SessionStorage { return sl },
	}, nc)
	if !stop() {
		if err == nil {
			_ = c.Close()
		}
		return nil, "", fmt.Errorf("netmsg: handshake with %s: %w", o.RawURL, context.Cause(ctx))
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return nil, "", &HandshakeRefused{Status: resp.StatusCode, Body: string(bytes.TrimSpace(body)), Err: err}
		}
		return nil, "", fmt.Errorf("netmsg: handshake with %s: %w", o.RawURL, err)
	}
	conn.gc = gc
	sl.c = conn
	return conn, resp.Header.Get(SessionHeader), nil
}
