package bench

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/netmsg/netmsg/bench/internal/harness"
)

// quick reports whether this is the one-iteration probe (b.N == 1, which is
// all that -benchtime 1x runs): the big shapes are scaled down for it so CI's
// `go test -run '^$' -bench . -benchtime 1x ./...` stays fast.
func quick(b *testing.B) bool { return b.N == 1 }

// scaled returns n, or small when this is the one-iteration probe.
func scaled(b *testing.B, n, small int) int {
	if quick(b) && n > small {
		return small
	}
	return n
}

var rrShapes = []harness.Shape{
	{Conns: 16, InFlight: 1}, {Conns: 1, InFlight: 16}, {Conns: 1000, InFlight: 1},
}

var sizes = []int{128, 4096}

// BenchmarkRoundTrip: one request and its response, back to back, on every
// contender and shape. ns/op is wall time per round trip (the inverse of
// round trips per second, all workers together); allocs/op and B/op count
// the whole process, client and server. Extra metrics: rt/s, p50/p99
// latency in µs.
func BenchmarkRoundTrip(b *testing.B) {
	for _, base := range rrShapes {
		for _, size := range sizes {
			kinds := harness.RRKinds
			if base.Conns == 1 { // the shared-connection shape also runs the concurrency variants
				kinds = append(slices.Clone(kinds), harness.RRVariantKinds...)
			}
			for _, kind := range kinds {
				sh := base
				sh.Size = size
				name := fmt.Sprintf("%dx%d/%s/%s", sh.Conns, sh.InFlight, harness.SizeName(size), kind)
				b.Run(name, func(b *testing.B) {
					sh.Conns = scaled(b, sh.Conns, 32)
					sys, err := harness.StartRR(kind, sh)
					if err != nil {
						b.Fatal(err)
					}
					defer sys.Close()
					if _, err := harness.RunN(sys, sh, min(sh.Conns*sh.InFlight, 64), nil); err != nil { // warm-up
						b.Fatal(err)
					}
					b.ReportAllocs()
					w, err := harness.RunN(sys, sh, b.N, b.ResetTimer)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(w.PerSec(), "rt/s")
					b.ReportMetric(float64(w.Hist.Quantile(0.5).Nanoseconds())/1e3, "p50-µs")
					b.ReportMetric(float64(w.Hist.Quantile(0.99).Nanoseconds())/1e3, "p99-µs")
					b.ReportMetric(w.SyscallsPerOp(), "syscalls/op")
					b.ReportMetric(float64(w.CPUPerOp().Nanoseconds())/1e3, "cpu-µs/op")
					b.ReportMetric(w.GoPerOp(), "goroutines/op")
				})
			}
		}
	}
}

func TestMain(m *testing.M) {
	harness.MaybeChild() // the broadcast benchmark runs its clients in a child: this binary again
	harness.RaiseFileLimit()
	os.Exit(m.Run())
}

// BenchmarkFireAndForget: one connection, one sender, one-way messages; ns/op
// is the time per message until the server has counted the last one.
func BenchmarkFireAndForget(b *testing.B) {
	for _, size := range sizes {
		for _, kind := range harness.FFKinds {
			b.Run(fmt.Sprintf("%s/%s", harness.SizeName(size), kind), func(b *testing.B) {
				sys, err := harness.StartFF(kind, size)
				if err != nil {
					b.Fatal(err)
				}
				defer sys.Close()
				if _, err := harness.RunFF(sys, 0, 0, 64, nil); err != nil { // warm-up
					b.Fatal(err)
				}
				b.ReportAllocs()
				w, err := harness.RunFF(sys, 0, 0, int64(b.N), b.ResetTimer)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(w.PerSec(), "msgs/s")
				b.ReportMetric(float64(w.CPUPerOp().Nanoseconds())/1e3, "cpu-µs/op")
			})
		}
	}
}

// BenchmarkBroadcast: one 128-byte message from the server to 10,000 sessions
// (100 for the one-iteration probe) held by a child process; ns/op is the
// median time per broadcast until every client has it. allocs/op here is the
// server process only and is reported as a metric.
func BenchmarkBroadcast(b *testing.B) {
	for _, kind := range harness.BroadcastKinds {
		b.Run(kind, func(b *testing.B) {
			n := scaled(b, 10000, 100)
			child, err := harness.StartChild()
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = child.Close() }()
			b.StopTimer()
			r, err := harness.RunBroadcast(child, kind, n, 128, b.N, false)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(harness.Median(r.Times).Nanoseconds()), "ns/op")
			b.ReportMetric(r.Mallocs, "server-allocs/op")
			b.ReportMetric(float64(n), "sessions")
		})
	}
}

// BenchmarkGroups: 10,000 sessions (200 for the one-iteration probe) in 100
// groups (10), one 128-byte message broadcast to each group per iteration;
// ns/op is the median time per round until every client has its copy, and
// server-allocs/delivered counts the server process only.
func BenchmarkGroups(b *testing.B) {
	for _, kind := range harness.GroupKinds {
		b.Run(kind, func(b *testing.B) {
			n, g := scaled(b, 10000, 200), scaled(b, 100, 10)
			child, err := harness.StartChild()
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = child.Close() }()
			b.StopTimer()
			r, err := harness.RunGroups(child, kind, n, g, 128, b.N, false)
			if err != nil {
				b.Fatal(err)
			}
			m := harness.Median(r.Times)
			b.ReportMetric(float64(m.Nanoseconds()), "ns/op")
			b.ReportMetric(float64(n)/m.Seconds(), "delivered/s")
			b.ReportMetric(r.Mallocs, "server-allocs/delivered")
		})
	}
}
