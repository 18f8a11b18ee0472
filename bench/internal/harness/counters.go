package harness

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// counters is a snapshot of process-wide counters that a window reports as
// deltas: heap allocations, read/write system calls, CPU time and goroutines
// created.
type counters struct {
	mallocs, bytes uint64
	syscalls       uint64
	cpu            time.Duration
	goCreated      uint64
}

var goCreatedSample = []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}

func snapshot() counters {
	var c counters
	c.syscalls = procIO()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	metrics.Read(goCreatedSample)
	if goCreatedSample[0].Value.Kind() == metrics.KindUint64 {
		c.goCreated = goCreatedSample[0].Value.Uint64()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	c.mallocs, c.bytes = m.Mallocs, m.TotalAlloc
	return c
}

// since fills w's counters with what happened after c0.
func (w *Window) since(c0 counters) {
	c1 := snapshot()
	w.Mallocs = c1.mallocs - c0.mallocs
	w.Bytes = c1.bytes - c0.bytes
	w.Syscalls = c1.syscalls - c0.syscalls
	w.CPU = c1.cpu - c0.cpu
	w.GoCreated = c1.goCreated - c0.goCreated
}

// procIO returns the process's read and write system calls so far (syscr +
// syscw of /proc/self/io), or 0 where that file is unavailable.
func procIO() uint64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}
