package netmsg_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type authKey struct{}

// TestHandlerCtxSessionClose checks a request handler's context end to end:
// it carries the Authorize values, the metadata and the caller's deadline,
// and when the session closes it ends with the *CloseError as its cause,
// both for a handler waiting on Done and for one that only looks at Err
// afterwards.
func TestHandlerCtxSessionClose(t *testing.T) {
	t.Parallel()
	for _, waitOnDone := range []bool{true, false} {
		name := "err-only"
		if waitOnDone {
			name = "done"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			type seen struct {
				err, cause error
				auth       any
				md         map[string]string
				deadline   bool
			}
			got := make(chan seen, 1)
			closed := make(chan struct{})
			auth := netmsg.WithAuthorize(func(r *http.Request) (context.Context, error) {
				return context.WithValue(r.Context(), authKey{}, "alice"), nil
			})
			_, cli := pair(t, []netmsg.ServerOption{auth}, nil, func(srv *netmsg.Server, _ *netmsg.Client) {
				netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, p Ping) (Pong, error) {
					go func() { _ = s.Close("bye") }()
					if waitOnDone {
						<-ctx.Done()
					} else {
						<-s.Done()
					}
					_, hasDeadline := ctx.Deadline()
					got <- seen{ctx.Err(), context.Cause(ctx), ctx.Value(authKey{}), netmsg.Metadata(ctx), hasDeadline}
					close(closed)
					return Pong{}, nil
				})
			})
			ctx, cancel := context.WithTimeout(netmsg.WithMetadata(context.Background(), "trace", "t1"), time.Minute)
			defer cancel()
			_, err := netmsg.SendRequest(ctx, cli, Ping{})
			require.Error(t, err)
			<-closed
			s := <-got
			assert.ErrorIs(t, s.err, context.Canceled)
			var ce *netmsg.CloseError
			require.ErrorAs(t, s.cause, &ce)
			assert.Equal(t, netmsg.CloseNormal, ce.Reason)
			assert.Equal(t, "alice", s.auth)
			assert.Equal(t, map[string]string{"trace": "t1"}, s.md)
			assert.True(t, s.deadline)
		})
	}
}
