package integration_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netmsg/netmsg/internal/nettest"

	"github.com/netmsg/netmsg"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Thousands of concurrent requests from many goroutines on several clients
// are each answered with their own value; per-session concurrency stays
// within WithSessionConcurrency.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	const (
		clients    = 4
		goroutines = 20
		perG       = 100 // 4 × 20 × 100 = 8000 requests
	)
	cases := []struct {
		name        string
		concurrency int // 0: the default (1)
		wantMax     int
	}{
		{"default one at a time", 0, 1},
		{"session concurrency 8", 8, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []netmsg.ServerOption
			if tc.concurrency > 0 {
				opts = append(opts, netmsg.WithSessionConcurrency(tc.concurrency))
			}
			srv := nettest.StartServer(t, opts...)

			var mu sync.Mutex
			running := make(map[string]int) // session → handlers running
			peak := make(map[string]int)
			var handled atomic.Int64
			netmsg.AddRequestHandler(srv, func(ctx context.Context, s *netmsg.Session, req itEcho) (itEchoReply, error) {
				mu.Lock()
				running[s.ID()]++
				peak[s.ID()] = max(peak[s.ID()], running[s.ID()])
				mu.Unlock()
				if req.N%4 == 0 {
					time.Sleep(200 * time.Microsecond) // let handlers overlap
				}
				mu.Lock()
				running[s.ID()]--
				mu.Unlock()
				handled.Add(1)
				return itEchoReply{Text: "re:" + req.Text, N: req.N*3 + 1}, nil
			})

			cls := make([]*netmsg.Client, clients)
			for i := range cls {
				cls[i] = nettest.Connect(t, srv.URL)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			var failures atomic.Int64
			start := time.Now()
			for ci, c := range cls {
				for g := range goroutines {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range perG {
							n := (ci*goroutines+g)*perG + i
							text := fmt.Sprintf("c%d-g%d-i%d", ci, g, i)
							r, err := netmsg.SendRequest(ctx, c, itEcho{Text: text, N: n})
							if err != nil || r.Text != "re:"+text || r.N != n*3+1 {
								if failures.Add(1) <= 5 {
									t.Errorf("request %s: got %+v, %v", text, r, err)
								}
							}
						}
					}()
				}
			}
			wg.Wait()
			t.Logf("%d requests in %v", clients*goroutines*perG, time.Since(start))
			require.Zero(t, failures.Load(), "failed requests")
			assert.EqualValues(t, clients*goroutines*perG, handled.Load(), "handler calls")

			mu.Lock()
			defer mu.Unlock()
			require.Len(t, peak, clients)
			for id, p := range peak {
				assert.LessOrEqual(t, p, tc.wantMax, "peak concurrent handlers of session %s", id)
				if tc.wantMax > 1 {
					assert.Greater(t, p, 1, "handlers of session %s never overlapped", id)
				}
			}
			for _, c := range cls {
				st := c.Stats()
				assert.Zero(t, st.LateResponses)
				assert.Zero(t, st.UnknownResponses)
			}
		})
	}
}
