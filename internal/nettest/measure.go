package nettest

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Cost is what an attack (or any stretch of a test) cost the process.
type Cost struct {
	Took time.Duration
	// HeapPeak is the highest HeapInuse seen (sampled every 5 ms) above
	// the HeapInuse at the start, after a GC.
	HeapPeak uint64
	// HeapAfter is HeapInuse at the end, after a GC, above the start
	// (0 when lower).
	HeapAfter uint64
	// Alloc is the bytes allocated meanwhile, freed or not.
	Alloc uint64
	// Goroutines is the goroutine count at the end minus at the start.
	Goroutines int
}

// String formats c for a test log.
func (c Cost) String() string {
	return fmt.Sprintf("took %v, heap peak +%s, heap after +%s, allocated %s, goroutines %+d",
		c.Took.Round(time.Millisecond), MiB(c.HeapPeak), MiB(c.HeapAfter), MiB(c.Alloc), c.Goroutines)
}

// Meter measures a Cost; see Measure.
type Meter struct {
	t          testing.TB
	what       string
	start      time.Time
	base       runtime.MemStats
	goroutines int
	heap       *HeapSampler
	done       bool
}

// Measure starts measuring what (named in the log line). Stop ends it and
// logs the cost with t.Logf; it is also stopped (and logged) when the test
// ends. The heap is the whole process's: the test's own peers count too, so
// assert bounds with a wide margin.
func Measure(t testing.TB, what string) *Meter {
	m := &Meter{t: t, what: what, goroutines: runtime.NumGoroutine()}
	m.base = MemStats()
	m.heap = SampleHeap()
	m.start = time.Now()
	t.Cleanup(func() {
		if !m.done {
			m.Stop()
		}
	})
	return m
}

// Stop ends the measurement, logs it and returns it.
func (m *Meter) Stop() Cost {
	m.t.Helper()
	c := Cost{Took: time.Since(m.start)}
	m.done = true
	peak := m.heap.Stop()
	end := MemStats()
	c.HeapPeak = sub(peak, m.base.HeapInuse)
	c.HeapAfter = sub(end.HeapInuse, m.base.HeapInuse)
	c.Alloc = end.TotalAlloc - m.base.TotalAlloc
	c.Goroutines = runtime.NumGoroutine() - m.goroutines
	m.t.Logf("cost of %s: %v", m.what, c)
	return c
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// HeapSampler samples HeapInuse every 5 ms and keeps the peak.
type HeapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

// SampleHeap starts a HeapSampler; Stop it before the test ends.
func SampleHeap() *HeapSampler {
	s := &HeapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.peak.Load() {
				s.peak.Store(ms.HeapInuse)
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak HeapInuse.
func (s *HeapSampler) Stop() uint64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// MemStats returns the memory statistics after a GC.
func MemStats() runtime.MemStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// MiB formats a byte count.
func MiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// GoroutinesSettle waits up to within for the goroutine count to fall to at
// most max, and returns the count seen last.
func GoroutinesSettle(max int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= max || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
