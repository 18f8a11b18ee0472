package netmsg_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an interceptor that logs what it sees, named so that the order
// of several can be read from the log.
type recorder struct {
	name string
	mu   sync.Mutex
	log  []string
}

func (r *recorder) Wrap(next netmsg.CallFunc) netmsg.CallFunc {
	return func(ctx context.Context, c *netmsg.Call) (any, error) {
		if c.Group != "" {
			r.add(fmt.Sprintf("%s> %s %s to %s", r.name, c.Kind, c.Type, c.Group))
		} else {
			r.add(fmt.Sprintf("%s> %s %s", r.name, c.Kind, c.Type))
		}
		res, err := next(ctx, c)
		r.add(fmt.Sprintf("<%s %s %v %v", r.name, c.Kind, res, netmsg.CodeOf(err)))
		return res, err
	}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *recorder) entries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// shared is a log several recorders append to.
type shared struct {
	mu  sync.Mutex
	log []string
}

func (l *shared) interceptor(name string) netmsg.Interceptor {
	return netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			l.add(name + ">")
			res, err := next(ctx, c)
			l.add("<" + name)
			return res, err
		}
	})
}

func (l *shared) add(s string) {
	l.mu.Lock()
	l.log = append(l.log, s)
	l.mu.Unlock()
}

func (l *shared) entries() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.log...)
}

func TestInterceptorOrder(t *testing.T) {
	t.Parallel()
	var srvLog, cliLog shared
	srvLog.add("") // entries are compared after this marker
	_, cli := pair(t,
		[]netmsg.ServerOption{
			netmsg.WithInterceptors(srvLog.interceptor("a"), srvLog.interceptor("b")),
			netmsg.WithInterceptors(srvLog.interceptor("c")), // adds to the list
		},
		[]netmsg.ClientOption{netmsg.WithInterceptors(cliLog.interceptor("x"), cliLog.interceptor("y"))},
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				srvLog.add("handler")
				return Pong{N: p.N}, nil
			})
		})
	resp, err := netmsg.SendRequest(context.Background(), cli, Ping{N: 7})
	require.NoError(t, err)
	assert.Equal(t, 7, resp.N)
	assert.Equal(t, []string{"", "a>", "b>", "c>", "handler", "<c", "<b", "<a"}, srvLog.entries())
	assert.Equal(t, []string{"x>", "y>", "<y", "<x"}, cliLog.entries())
}

func TestInterceptorSeesEveryKind(t *testing.T) {
	t.Parallel()
	srvRec, cliRec := &recorder{name: "s"}, &recorder{name: "c"}
	gotNote := make(chan string, 4)
	srv, cli := pair(t,
		[]netmsg.ServerOption{netmsg.WithInterceptors(srvRec)},
		[]netmsg.ClientOption{netmsg.WithInterceptors(cliRec)},
		func(srv *netmsg.Server, cli *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				return Pong{N: p.N + 1}, nil
			})
			netmsg.AddMessageHandler(srv, func(_ context.Context, _ *netmsg.Session, n Note) { gotNote <- "server " + n.Text })
			netmsg.AddMessageHandler(cli, func(_ context.Context, _ *netmsg.Session, n Note) { gotNote <- "client " + n.Text })
		})
	ctx := context.Background()
	_, err := netmsg.SendRequest(ctx, cli, Ping{N: 1})
	require.NoError(t, err)
	require.NoError(t, cli.Send(ctx, Note{Text: "hi"}))
	require.Equal(t, "server hi", <-gotNote)
	// The handler has run; the interceptor returns just after.
	require.Eventually(t, func() bool { return len(srvRec.entries()) == 4 }, 5*time.Second, time.Millisecond)
	require.NoError(t, srv.Broadcast(ctx, Note{Text: "all"}))
	require.Equal(t, "client all", <-gotNote)
	room := srv.Group("room")
	for s := range srv.Sessions() {
		room.Add(s)
	}
	require.NoError(t, room.Broadcast(ctx, Note{Text: "room"}))
	require.Equal(t, "client room", <-gotNote)

	// The server's interceptor ends its inbound message before the
	// broadcast; wait for the client's last inbound one to end.
	require.Eventually(t, func() bool { return len(cliRec.entries()) == 8 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{
		"c> outbound request netmsg_test.Ping", "<c outbound request {2} ok",
		"c> outbound message netmsg_test.Note", "<c outbound message <nil> ok",
		"c> inbound message netmsg_test.Note", "<c inbound message <nil> ok",
		"c> inbound message netmsg_test.Note", "<c inbound message <nil> ok",
	}, cliRec.entries())
	assert.Equal(t, []string{
		"s> inbound request netmsg_test.Ping", "<s inbound request {2} ok",
		"s> inbound message netmsg_test.Note", "<s inbound message <nil> ok",
		"s> outbound broadcast netmsg_test.Note", "<s outbound broadcast <nil> ok",
		"s> outbound broadcast netmsg_test.Note to room", "<s outbound broadcast <nil> ok",
	}, srvRec.entries())
}

// TestInterceptorRejects: an interceptor that refuses a request without
// calling next answers the caller with its *Error; the handler never runs.
// A refused message is reported through OnError.
func TestInterceptorRejects(t *testing.T) {
	t.Parallel()
	var handled sync.WaitGroup
	ran := make(chan string, 4)
	reported := make(chan error, 4)
	deny := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			if c.Kind.Inbound() && c.Metadata["token"] != "secret" {
				return nil, netmsg.NewError(netmsg.CodePermissionDenied, "no token")
			}
			return next(ctx, c)
		}
	})
	_, cli := pair(t,
		[]netmsg.ServerOption{
			netmsg.WithInterceptors(deny),
			netmsg.WithOnError(func(_ *netmsg.Session, err error) { reported <- err }),
		}, nil,
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				ran <- "ping"
				return Pong{N: p.N}, nil
			})
			netmsg.AddMessageHandler(srv, func(_ context.Context, _ *netmsg.Session, n Note) {
				ran <- "note " + n.Text
				handled.Done()
			})
		})
	ctx := context.Background()
	_, err := netmsg.SendRequest(ctx, cli, Ping{N: 1})
	var e *netmsg.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, netmsg.CodePermissionDenied, e.Code)
	assert.Equal(t, "no token", e.Message)

	require.NoError(t, cli.Send(ctx, Note{Text: "refused"}))
	select {
	case err := <-reported:
		assert.Equal(t, netmsg.CodePermissionDenied, netmsg.CodeOf(err))
		assert.Contains(t, err.Error(), "netmsg_test.Note message not handled")
	case <-time.After(5 * time.Second):
		t.Fatal("the refused message was not reported")
	}

	authed := netmsg.WithMetadata(ctx, "token", "secret")
	resp, err := netmsg.SendRequest(authed, cli, Ping{N: 2})
	require.NoError(t, err)
	assert.Equal(t, 2, resp.N)
	handled.Add(1)
	require.NoError(t, cli.Send(authed, Note{Text: "let in"}))
	handled.Wait()
	close(ran)
	var got []string
	for r := range ran {
		got = append(got, r)
	}
	assert.Equal(t, []string{"ping", "note let in"}, got)
}

type ctxKey struct{}

// TestInterceptorMetadataAndContext: a client interceptor adds metadata to
// what it sends; the server's interceptor reads it and hands the handler a
// ctx of its own, and the handler sees both.
func TestInterceptorMetadataAndContext(t *testing.T) {
	t.Parallel()
	addTrace := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			if !c.Kind.Inbound() {
				require.NotNil(t, c.Metadata)
				assert.Equal(t, "ctx-value", c.Metadata["from-ctx"]) // WithMetadata's pairs are in it
				c.Metadata["trace"] = "t-1"
				delete(c.Metadata, "drop-me")
			}
			return next(ctx, c)
		}
	})
	readTrace := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			return next(context.WithValue(ctx, ctxKey{}, "seen "+c.Metadata["trace"]), c)
		}
	})
	type seen struct{ md, val string }
	got := make(chan seen, 1)
	_, cli := pair(t,
		[]netmsg.ServerOption{netmsg.WithInterceptors(readTrace)},
		[]netmsg.ClientOption{netmsg.WithInterceptors(addTrace)},
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				md := netmsg.Metadata(ctx)
				got <- seen{md["trace"] + "," + md["from-ctx"] + "," + md["drop-me"], ctx.Value(ctxKey{}).(string)}
				return Pong{}, nil
			})
		})
	ctx := netmsg.WithMetadata(context.Background(), "from-ctx", "ctx-value", "drop-me", "x")
	_, err := netmsg.SendRequest(ctx, cli, Ping{})
	require.NoError(t, err)
	assert.Equal(t, seen{"t-1,ctx-value,", "seen t-1"}, <-got)
	// The caller's ctx is not changed by what the interceptor set.
	_, err = netmsg.SendRequest(ctx, cli, Ping{})
	require.NoError(t, err)
	<-got
	assert.Empty(t, netmsg.Metadata(ctx), "outgoing metadata is not incoming")
}

// TestInterceptorResults: the interceptor sees the handler's result and
// error, a panic as CodeInternal, and how long the call took.
func TestInterceptorResults(t *testing.T) {
	t.Parallel()
	type outcome struct {
		typ  string
		res  any
		code netmsg.Code
		took time.Duration
	}
	outcomes := make(chan outcome, 8)
	// The interceptor sees the handler's own error; the caller gets what
	// travels on the wire (CodeInternal for an error that is no *Error).
	timer := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			start := time.Now()
			res, err := next(ctx, c)
			if c.Kind == netmsg.InboundRequest {
				outcomes <- outcome{c.Type, res, netmsg.CodeOf(err), time.Since(start)}
			}
			return res, err
		}
	})
	_, cli := pair(t,
		[]netmsg.ServerOption{netmsg.WithInterceptors(timer)}, nil,
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) {
				switch p.N {
				case 1:
					return Pong{}, netmsg.NewError(netmsg.CodeNotFound, "no such thing")
				case 2:
					return Pong{}, errors.New("secret failure")
				case 3:
					panic("handler bug")
				}
				return Pong{N: p.N}, nil
			})
			netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, s Slow) (Pong, error) {
				time.Sleep(s.D)
				return Pong{N: 9}, nil
			})
		})
	ctx := context.Background()
	for _, tc := range []struct {
		n          int
		code, seen netmsg.Code
		res        any
	}{
		{0, netmsg.CodeOK, netmsg.CodeOK, Pong{N: 0}},
		{1, netmsg.CodeNotFound, netmsg.CodeNotFound, nil},
		{2, netmsg.CodeInternal, netmsg.CodeUnknown, nil},
		{3, netmsg.CodeInternal, netmsg.CodeInternal, nil},
	} {
		_, err := netmsg.SendRequest(ctx, cli, Ping{N: tc.n})
		assert.Equal(t, tc.code, netmsg.CodeOf(err), "caller, ping %d", tc.n)
		o := <-outcomes
		assert.Equal(t, tc.seen, o.code, "interceptor, ping %d", tc.n)
		assert.Equal(t, tc.res, o.res, "interceptor, ping %d", tc.n)
	}
	_, err := netmsg.SendRequest(ctx, cli, Slow{D: 30 * time.Millisecond})
	require.NoError(t, err)
	o := <-outcomes
	assert.Equal(t, "netmsg_test.Slow", o.typ)
	assert.Equal(t, Pong{N: 9}, o.res)
	assert.GreaterOrEqual(t, o.took, 30*time.Millisecond)
}

// TestInterceptorOutboundFailures: the client's interceptor sees the errors
// of its own calls: the peer's *Error, a timeout, and its own refusal, which
// sends nothing.
func TestInterceptorOutboundFailures(t *testing.T) {
	t.Parallel()
	rec := &recorder{name: "c"}
	refuse := netmsg.InterceptorFunc(func(next netmsg.CallFunc) netmsg.CallFunc {
		return func(ctx context.Context, c *netmsg.Call) (any, error) {
			if n, ok := c.Value.(Note); ok && n.Text == "forbidden" {
				return nil, netmsg.NewError(netmsg.CodeFailedPrecondition, "not sent")
			}
			return next(ctx, c)
		}
	})
	notes := make(chan string, 2)
	_, cli := pair(t, nil,
		[]netmsg.ClientOption{netmsg.WithInterceptors(rec, refuse)},
		func(srv *netmsg.Server, _ *netmsg.Client) {
			netmsg.AddRequestHandler(srv, func(ctx context.Context, _ *netmsg.Session, s Slow) (Pong, error) {
				select {
				case <-time.After(s.D):
					return Pong{}, nil
				case <-ctx.Done(): // the caller's deadline travels with the request
					return Pong{}, ctx.Err()
				}
			})
			netmsg.AddMessageHandler(srv, func(_ context.Context, _ *netmsg.Session, n Note) { notes <- n.Text })
		})
	ctx := context.Background()
	_, err := netmsg.SendRequest(ctx, cli, Ping{}) // no handler on the server
	require.ErrorIs(t, err, netmsg.ErrNoHandler)
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = netmsg.SendRequest(tctx, cli, Slow{D: 5 * time.Second})
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	err = cli.Send(ctx, Note{Text: "forbidden"})
	assert.Equal(t, netmsg.CodeFailedPrecondition, netmsg.CodeOf(err))
	require.NoError(t, cli.Send(ctx, Note{Text: "fine"}))
	assert.Equal(t, "fine", <-notes)
	assert.Equal(t, []string{
		"c> outbound request netmsg_test.Ping", "<c outbound request <nil> unimplemented",
		"c> outbound request netmsg_test.Slow", "<c outbound request <nil> deadline_exceeded",
		"c> outbound message netmsg_test.Note", "<c outbound message <nil> failed_precondition",
		"c> outbound message netmsg_test.Note", "<c outbound message <nil> ok",
	}, rec.entries())
}

// observer records session and reconnect events.
type observer struct {
	recorder
	events chan string
}

func (o *observer) SessionOpened(s *netmsg.Session) { o.events <- "open " + s.ID() }

func (o *observer) SessionClosed(s *netmsg.Session, ce *netmsg.CloseError) {
	o.events <- fmt.Sprintf("close %s %v in>0:%v out>0:%v", s.ID(), ce.Reason, s.BytesReceived() > 0, s.BytesSent() > 0)
}

func (o *observer) ReconnectAttempt(a netmsg.ReconnectAttempt) {
	o.events <- fmt.Sprintf("reconnect %d %v", a.Attempt, errors.As(a.Err, new(*netmsg.CloseError)))
}

func next(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return ""
	}
}

// TestSessionAndReconnectObservers: an interceptor that is also a
// SessionObserver and a ReconnectObserver gets a session's open and close
// (with its reason and the bytes it moved) on both ends, and a client's
// reconnection attempts.
func TestSessionAndReconnectObservers(t *testing.T) {
	t.Parallel()
	so := &observer{recorder: recorder{name: "s"}, events: make(chan string, 16)}
	co := &observer{recorder: recorder{name: "c"}, events: make(chan string, 16)}
	srv := netmsg.NewServer(netmsg.WithInterceptors(so))
	netmsg.AddRequestHandler(srv, func(_ context.Context, _ *netmsg.Session, p Ping) (Pong, error) { return Pong{N: p.N}, nil })
	hs := httptest.NewServer(srv)
	defer hs.Close()
	cli := netmsg.NewClient("ws"+strings.TrimPrefix(hs.URL, "http"),
		netmsg.WithInterceptors(co),
		netmsg.WithReconnect(&constantBackOff{d: 10 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cli.Connect(ctx))
	id := cli.Session().ID()
	assert.Equal(t, "open "+id, next(t, so.events))
	assert.Equal(t, "open "+id, next(t, co.events))
	_, err := netmsg.SendRequest(ctx, cli, Ping{N: 1})
	require.NoError(t, err)

	// The server closes the session; the client reconnects.
	s, ok := srv.Session(id)
	require.True(t, ok)
	require.NoError(t, s.Close("bye"))
	// A session's close runs on its callback queue, the next session's open
	// on that one's, and a reconnect attempt on the client's supervisor:
	// only the events of one session are ordered.
	assert.ElementsMatch(t, []string{"close " + id + " peer normal in>0:true out>0:true", "reconnect 1 true"},
		[]string{next(t, co.events), next(t, co.events)})
	second := next(t, co.events)
	require.True(t, strings.HasPrefix(second, "open "), second)
	assert.ElementsMatch(t, []string{"close " + id + " normal in>0:true out>0:true", second},
		[]string{next(t, so.events), next(t, so.events)})

	require.NoError(t, cli.Close())
	sid := strings.TrimPrefix(second, "open ")
	assert.Equal(t, "close "+sid+" normal in>0:true out>0:true", next(t, co.events))
	assert.Equal(t, "close "+sid+" peer normal in>0:true out>0:true", next(t, so.events))
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	require.NoError(t, srv.Shutdown(sctx))
	select {
	case e := <-so.events:
		t.Fatalf("unexpected server event %q", e)
	case e := <-co.events:
		t.Fatalf("unexpected client event %q", e)
	default:
	}
}

// constantBackOff retries at a fixed delay.
type constantBackOff struct{ d time.Duration }

func (b *constantBackOff) NextBackOff() time.Duration { return b.d }
func (b *constantBackOff) Reset()                     {}

// TestSessionBytes: what one end writes the other reads, byte for byte,
// and a frame costs its payload plus a few bytes of envelope and header.
func TestSessionBytes(t *testing.T) {
	t.Parallel()
	got := make(chan struct{}, 1)
	quiet := netmsg.WithHeartbeat(0, 0) // no pings in between
	srv, cli := pair(t, []netmsg.ServerOption{quiet}, []netmsg.ClientOption{quiet}, func(srv *netmsg.Server, _ *netmsg.Client) {
		netmsg.AddMessageHandler(srv, func(context.Context, *netmsg.Session, Note) { got <- struct{}{} })
	})
	cs := cli.Session()
	require.NotNil(t, cs)
	var ss *netmsg.Session
	require.Eventually(t, func() bool { // the server registers it just after the handshake
		ss, _ = srv.Session(cs.ID())
		return ss != nil
	}, 5*time.Second, time.Millisecond)
	sent0, recv0 := cs.BytesSent(), ss.BytesReceived()
	assert.Positive(t, sent0, "the client's handshake request")
	assert.Positive(t, cs.BytesReceived(), "the server's 101 response")
	assert.Positive(t, ss.BytesSent(), "the server's 101 response")
	require.NoError(t, cli.Send(context.Background(), Note{Text: strings.Repeat("x", 10000)}))
	<-got
	// The sender counts a write once it has returned, which may be after
	// the peer has read and handled it.
	var sent, recv uint64
	require.Eventually(t, func() bool {
		sent, recv = cs.BytesSent()-sent0, ss.BytesReceived()-recv0
		return sent == recv
	}, 5*time.Second, time.Millisecond, "sent %d, received %d", sent, recv)
	assert.GreaterOrEqual(t, sent, uint64(10000))
	assert.Less(t, sent, uint64(10100))
}
