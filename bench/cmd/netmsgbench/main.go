// Command netmsgbench runs netmsg side by side with raw gws, a minimal
// multiplexed gws echo, gRPC-go and arpc on loopback, and prints markdown
// tables: round trips, fire-and-forget messages, broadcast and idle memory.
//
//	cd bench && go run ./cmd/netmsgbench            # full run (about 15 minutes)
//	cd bench && go run ./cmd/netmsgbench -quick     # smoke run (under a minute)
//
// Client and server run on the same machine and share its cores. The
// broadcast and idle shapes run their clients in a child process (this
// binary again), so each side's memory is measured on its own and neither
// process needs more than 10,000 descriptors.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/netmsg/netmsg/bench/internal/harness"
)

type options struct {
	rounds             int
	warm, dur          time.Duration
	sizes              []int
	shapes             []harness.Shape
	kinds              map[string]bool
	skip               map[string]bool
	bcN, bcReps, bcRnd int
	grpN, grpG         int
	grpReps, grpRnd    int
	receivers          []bool // false: each contender's own clients; true: gws clients for all
	idleN              int
	idleHold           time.Duration
	idleHeap           string
}

func main() {
	harness.MaybeChild()
	o := parseFlags()
	limit := harness.RaiseFileLimit()
	start := time.Now()
	out := os.Stdout
	fmt.Fprintf(out, "# netmsgbench\n\n")
	fmt.Fprintf(out, "- command: `%s`\n", strings.Join(append([]string{"netmsgbench"}, os.Args[1:]...), " "))
	fmt.Fprintf(out, "- started: %s\n", start.UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "- machine: %d CPUs (GOMAXPROCS %d), %s %s/%s, RLIMIT_NOFILE %d; client and server share these cores\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, limit)
	fmt.Fprintf(out, "- rounds: %d per contender, alternated (reversed on odd rounds); window %v after %v warm-up\n",
		o.rounds, o.dur, o.warm)
	fmt.Fprintf(out, "- library: %s\n", libraryRevision())
	fmt.Fprintf(out, "- load average at start: %s\n\n", loadAvg())

	if !o.skip["rr"] {
		check(runRR(out, o))
	}
	if !o.skip["ff"] {
		check(runFF(out, o))
	}
	if !o.skip["bc"] || !o.skip["grp"] || !o.skip["idle"] {
		child, err := harness.StartChild()
		check(err)
		for _, raw := range o.receivers {
			if !o.skip["bc"] {
				check(runBroadcast(out, o, child, raw))
			}
			if !o.skip["grp"] {
				check(runGroups(out, o, child, raw))
			}
		}
		if !o.skip["idle"] {
			check(runIdle(out, o, child))
		}
		check(child.Close())
	}
	fmt.Fprintf(out, "Load average at the end: %s. Total run time: %v.\n", loadAvg(), time.Since(start).Round(time.Second))
}

func parseFlags() *options {
	o := &options{}
	quick := flag.Bool("quick", false, "smoke run: few short rounds, 50 instead of 1,000 and 200 instead of 10,000 connections")
	flag.IntVar(&o.rounds, "rounds", 5, "measured rounds per contender and shape")
	flag.DurationVar(&o.warm, "warm", 500*time.Millisecond, "warm-up before each window")
	flag.DurationVar(&o.dur, "dur", 2*time.Second, "measurement window")
	sizes := flag.String("sizes", "128,4096", "body sizes in bytes")
	shapes := flag.String("shapes", "16x1,1x16,1000x1", "round-trip shapes, CONNSxINFLIGHT")
	kinds := flag.String("kinds", "", "only these contenders (comma-separated; default all)")
	skip := flag.String("skip", "", "skip parts: rr,ff,bc,grp,idle")
	flag.IntVar(&o.bcN, "broadcast-n", 10000, "sessions for the broadcast shape")
	flag.IntVar(&o.bcReps, "broadcast-reps", 5, "timed broadcasts per round")
	flag.IntVar(&o.bcRnd, "broadcast-rounds", 3, "broadcast rounds per contender (each reconnects)")
	flag.IntVar(&o.grpN, "groups-n", 10000, "sessions for the group shape")
	flag.IntVar(&o.grpG, "groups", 100, "groups the sessions are spread over")
	flag.IntVar(&o.grpReps, "groups-reps", 10, "timed rounds of one broadcast per group, per contender round")
	flag.IntVar(&o.grpRnd, "groups-rounds", 3, "group rounds per contender (each reconnects)")
	receivers := flag.String("receivers", "own,gws", "broadcast and group shapes: receive with each contender's own clients (own), with gws clients for all (gws), or both")
	flag.IntVar(&o.idleN, "idle-n", 10000, "sessions for the idle-memory shape")
	flag.DurationVar(&o.idleHold, "idle-hold", 7*time.Second, "how long sessions idle before memory is read (heartbeat interval is 5 s)")
	flag.StringVar(&o.idleHeap, "idle-heapprofile", "", "write the server's heap profile with netmsg's idle sessions connected to this file")
	flag.Parse()
	if *quick {
		o.rounds, o.warm, o.dur = 2, 100*time.Millisecond, 300*time.Millisecond
		o.bcN, o.bcReps, o.bcRnd, o.idleN, o.idleHold = 200, 2, 1, 200, time.Second
		o.grpN, o.grpG, o.grpReps, o.grpRnd = 200, 10, 2, 1
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		check(err)
		o.sizes = append(o.sizes, n)
	}
	for _, s := range strings.Split(*shapes, ",") {
		var sh harness.Shape
		_, err := fmt.Sscanf(strings.TrimSpace(s), "%dx%d", &sh.Conns, &sh.InFlight)
		check(err)
		if *quick && sh.Conns > 50 {
			sh.Conns = 50
		}
		o.shapes = append(o.shapes, sh)
	}
	for r := range set(*receivers) {
		switch r {
		case "own":
			o.receivers = append(o.receivers, false)
		case "gws":
			o.receivers = append(o.receivers, true)
		default:
			check(fmt.Errorf("-receivers: %q is neither own nor gws", r))
		}
	}
	slices.SortFunc(o.receivers, func(a, b bool) int { // own first
		switch {
		case a == b:
			return 0
		case b:
			return -1
		}
		return 1
	})
	o.kinds = set(*kinds)
	o.skip = set(*skip)
	return o
}

func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

func (o *options) filter(kinds []string) []string {
	if len(o.kinds) == 0 {
		return kinds
	}
	var out []string
	for _, k := range kinds {
		if o.kinds[k] || k == harness.GWSRaw { // the baseline always runs
			out = append(out, k)
		}
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "netmsgbench:", err)
		os.Exit(1)
	}
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

// order alternates the contenders: as listed on even rounds, reversed on odd.
func order(kinds []string, round int) []string {
	k := slices.Clone(kinds)
	if round%2 == 1 {
		slices.Reverse(k)
	}
	return k
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type rrStats struct {
	rate, allocs, bytes, cpu []float64
	hist                     harness.Hist
}

func runRR(out io.Writer, o *options) error {
	kinds := o.filter(harness.RRKinds)
	for _, k := range harness.RRAblationKinds {
		if o.kinds[k] {
			kinds = append(kinds, k)
		}
	}
	fmt.Fprintf(out, "## Round trips\n\n")
	fmt.Fprintf(out, "rt/s: median of %d rounds (min–max in brackets); p50/p99 over all rounds' samples; CPU, allocations and bytes per round trip for the whole process (client + server), median of rounds. × raw: against gws-raw of the same shape and size; × gRPC: against grpc. The -c16 rows (1×16 only) run the netmsg server with WithSessionConcurrency(16).\n\n", o.rounds)
	fmt.Fprintf(out, "| shape | contender | rt/s | × raw gws | × gRPC | p50 | p99 | CPU µs/rt | allocs/rt | B/rt |\n")
	fmt.Fprintf(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	all := kinds
	for _, base := range o.shapes {
		kinds := all
		if base.Conns == 1 && base.InFlight > 1 {
			kinds = append(slices.Clone(kinds), o.filter(harness.RRVariantKinds)...)
		}
		for _, size := range o.sizes {
			sh := base
			sh.Size = size
			systems := map[string]harness.System{}
			for _, k := range kinds {
				t := time.Now()
				sys, err := harness.StartRR(k, sh)
				if err != nil {
					return err
				}
				systems[k] = sys
				logf("%s: %s connected in %v", sh.Name(), k, time.Since(t).Round(time.Millisecond))
			}
			stats := map[string]*rrStats{}
			for r := range o.rounds {
				for _, k := range order(kinds, r) {
					runtime.GC()
					w, err := harness.RunWindow(systems[k], sh, o.warm, o.dur)
					if err != nil {
						return fmt.Errorf("%s %s: %w", sh.Name(), k, err)
					}
					st := stats[k]
					if st == nil {
						st = &rrStats{}
						stats[k] = st
					}
					st.rate = append(st.rate, w.PerSec())
					st.allocs = append(st.allocs, w.AllocsPerOp())
					st.bytes = append(st.bytes, w.BytesPerOp())
					st.cpu = append(st.cpu, float64(w.CPUPerOp())/1e3)
					st.hist.Merge(&w.Hist)
					logf("%s round %d %-12s %9.0f rt/s  p50 %v  p99 %v  %.1f allocs/rt", sh.Name(), r+1, k,
						w.PerSec(), w.Hist.Quantile(0.5), w.Hist.Quantile(0.99), w.AllocsPerOp())
				}
			}
			for _, k := range kinds {
				systems[k].Close()
			}
			raw := medianF(stats[harness.GWSRaw].rate)
			var grpc float64
			if st := stats[harness.GRPC]; st != nil {
				grpc = medianF(st.rate)
			}
			for _, k := range kinds {
				st := stats[k]
				rate := medianF(st.rate)
				fmt.Fprintf(out, "| %s | %s | %s (%s–%s) | %.2f | %s | %s | %s | %.1f | %.1f | %s |\n",
					sh.Name(), k, kilo(rate), kilo(slices.Min(st.rate)), kilo(slices.Max(st.rate)),
					rate/raw, ratio(rate, grpc), dur(st.hist.Quantile(0.5)), dur(st.hist.Quantile(0.99)),
					medianF(st.cpu), medianF(st.allocs), bytes(medianF(st.bytes)))
			}
		}
	}
	fmt.Fprintln(out)
	return nil
}

func runFF(out io.Writer, o *options) error {
	kinds := o.filter(harness.FFKinds)
	fmt.Fprintf(out, "## Fire-and-forget messages (1 connection, 1 sender)\n\n")
	fmt.Fprintf(out, "msgs/s: messages sent back to back for %v, divided by the time until the server counted the last one; median of %d rounds. grpc is a client stream (StreamingInputCall), its nearest one-way call. Allocations: whole process, per message.\n\n", o.dur, o.rounds)
	fmt.Fprintf(out, "| size | contender | msgs/s | × raw gws | CPU µs/msg | allocs/msg | B/msg |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, size := range o.sizes {
		systems := map[string]harness.FFSystem{}
		for _, k := range kinds {
			sys, err := harness.StartFF(k, size)
			if err != nil {
				return fmt.Errorf("fire-and-forget %s: %w", k, err)
			}
			systems[k] = sys
		}
		stats := map[string]*rrStats{}
		for r := range o.rounds {
			for _, k := range order(kinds, r) {
				runtime.GC()
				w, err := harness.RunFF(systems[k], o.warm, o.dur, 0, nil)
				if err != nil {
					return fmt.Errorf("fire-and-forget %s: %w", k, err)
				}
				st := stats[k]
				if st == nil {
					st = &rrStats{}
					stats[k] = st
				}
				st.rate = append(st.rate, w.PerSec())
				st.allocs = append(st.allocs, w.AllocsPerOp())
				st.bytes = append(st.bytes, w.BytesPerOp())
				st.cpu = append(st.cpu, float64(w.CPUPerOp())/1e3)
				logf("ff %s round %d %-12s %9.0f msgs/s  %.1f allocs/msg", harness.SizeName(size), r+1, k, w.PerSec(), w.AllocsPerOp())
			}
		}
		for _, k := range kinds {
			systems[k].Close()
		}
		raw := medianF(stats[harness.GWSRaw].rate)
		for _, k := range kinds {
			st := stats[k]
			rate := medianF(st.rate)
			fmt.Fprintf(out, "| %s | %s | %s (%s–%s) | %.2f | %.2f | %.1f | %s |\n", harness.SizeName(size), k,
				kilo(rate), kilo(slices.Min(st.rate)), kilo(slices.Max(st.rate)), rate/raw, medianF(st.cpu), medianF(st.allocs), bytes(medianF(st.bytes)))
		}
	}
	fmt.Fprintln(out)
	return nil
}

// receiversText says who receives in the broadcast and group shapes.
func receiversText(raw bool) (title, text string) {
	if raw {
		return " (gws clients receive)", "Every contender's messages are received by the same gws clients in the child (they offer netmsg's subprotocol and count frames without decoding), so the time is the server's fan-out and the sockets."
	}
	return "", "Each contender's messages are received by its own clients in the child (netmsg clients decode and hand each message to a handler)."
}

func runBroadcast(out io.Writer, o *options, child *harness.Child, raw bool) error {
	kinds := o.filter(harness.BroadcastKinds)
	if raw {
		kinds = o.filter(harness.GroupKinds) // arpc has no WebSocket clients
	}
	title, text := receiversText(raw)
	fmt.Fprintf(out, "## Broadcast of one 128 B message to %d sessions%s\n\n%s ", o.bcN, title, text)
	fmt.Fprintf(out, "Time from the Broadcast call until the client process has counted all %d copies; median of %d rounds × %d broadcasts (each round reconnects; contenders alternated). Clients in a child process. Allocations: server process only, per broadcast. gRPC has no broadcast.\n\n", o.bcN, o.bcRnd, o.bcReps)
	fmt.Fprintf(out, "| contender | median | min | max | × raw gws | delivered/s | server allocs/broadcast | allocs/delivered | server B/broadcast |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	times := map[string][]time.Duration{}
	allocs := map[string][]float64{}
	bts := map[string][]float64{}
	for r := range o.bcRnd {
		for _, k := range order(kinds, r) {
			t := time.Now()
			res, err := harness.RunBroadcast(child, k, o.bcN, 128, o.bcReps, raw)
			if err != nil {
				return fmt.Errorf("broadcast %s: %w", k, err)
			}
			times[k] = append(times[k], res.Times...)
			allocs[k] = append(allocs[k], res.Mallocs)
			bts[k] = append(bts[k], res.Bytes)
			logf("broadcast round %d %-12s median %v (round took %v)", r+1, k, harness.Median(slices.Clone(res.Times)), time.Since(t).Round(time.Millisecond))
		}
	}
	base := harness.Median(slices.Clone(times[harness.GWSRaw]))
	for _, k := range kinds {
		ts := times[k]
		m := harness.Median(ts)
		fmt.Fprintf(out, "| %s | %s | %s | %s | %.2f | %s | %.0f | %.2f | %s |\n", k, dur(m), dur(slices.Min(ts)), dur(slices.Max(ts)),
			float64(base)/float64(m), kilo(float64(o.bcN)/m.Seconds()), medianF(allocs[k]), medianF(allocs[k])/float64(o.bcN), bytes(medianF(bts[k])))
	}
	fmt.Fprintf(out, "\n(× raw gws here is raw time / contender time: below 1 means slower.)\n\n")
	return nil
}

func runGroups(out io.Writer, o *options, child *harness.Child, raw bool) error {
	kinds := o.filter(harness.GroupKinds)
	title, text := receiversText(raw)
	fmt.Fprintf(out, "## Group broadcast: %d sessions in %d groups, one 128 B message to each group%s\n\n%s ", o.grpN, o.grpG, title, text)
	fmt.Fprintf(out, "One round is %d broadcast calls, one per group (%d deliveries), timed from the first call until the client process has counted all %d copies; median of %d rounds × %d timed rounds (each round reconnects; contenders alternated). delivered/s is deliveries over that time. gws-raw keeps its connections in one slice per group and runs gws's own Broadcaster (gws.NewBroadcaster) over each. Clients in a child process. Allocations: server process only, per delivered message.\n\n",
		o.grpG, o.grpN, o.grpN, o.grpRnd, o.grpReps)
	fmt.Fprintf(out, "| contender | median (last member has it) | min | max | × raw gws | delivered/s | server allocs/delivered | server B/delivered |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	times := map[string][]time.Duration{}
	allocs := map[string][]float64{}
	bts := map[string][]float64{}
	for r := range o.grpRnd {
		for _, k := range order(kinds, r) {
			t := time.Now()
			res, err := harness.RunGroups(child, k, o.grpN, o.grpG, 128, o.grpReps, raw)
			if err != nil {
				return fmt.Errorf("groups %s: %w", k, err)
			}
			times[k] = append(times[k], res.Times...)
			allocs[k] = append(allocs[k], res.Mallocs)
			bts[k] = append(bts[k], res.Bytes)
			logf("groups round %d %-12s median %v, %.2f allocs/delivered (round took %v)", r+1, k,
				harness.Median(slices.Clone(res.Times)), res.Mallocs, time.Since(t).Round(time.Millisecond))
		}
	}
	base := harness.Median(slices.Clone(times[harness.GWSRaw]))
	for _, k := range kinds {
		ts := times[k]
		m := harness.Median(ts)
		fmt.Fprintf(out, "| %s | %s | %s | %s | %.2f | %s | %.2f | %s |\n", k, dur(m), dur(slices.Min(ts)), dur(slices.Max(ts)),
			float64(base)/float64(m), kilo(float64(o.grpN)/m.Seconds()), medianF(allocs[k]), bytes(medianF(bts[k])))
	}
	fmt.Fprintf(out, "\n(× raw gws is raw time / contender time: below 1 means slower.)\n\n")
	return nil
}

func runIdle(out io.Writer, o *options, child *harness.Child) error {
	kinds := o.filter(harness.IdleKinds)
	if o.idleHeap != "" {
		harness.IdleHook = func(kind string) {
			if kind != harness.NetmsgJSON {
				return
			}
			f, err := os.Create(o.idleHeap)
			check(err)
			check(pprof.Lookup("heap").WriteTo(f, 0))
			check(f.Close())
		}
	}
	fmt.Fprintf(out, "## Memory per idle session (%d sessions, idle %v)\n\n", o.idleN, o.idleHold)
	fmt.Fprintf(out, "Growth of the live heap (after GC) and of goroutine stacks, divided by the sessions; server in this process, clients in the child. netmsg runs its default heartbeats (5 s ping, 15 s receive timeout); the others run with their defaults (no application heartbeat).\n\n")
	fmt.Fprintf(out, "| contender | server heap | server stack | server total | server goroutines | client heap | client stack | client total | client goroutines |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range kinds {
		t := time.Now()
		r, err := harness.RunIdle(child, k, o.idleN, o.idleHold)
		if err != nil {
			return fmt.Errorf("idle %s: %w", k, err)
		}
		logf("idle %-12s server %s + %s stack per session (%v)", k, bytes(r.ServerHeap), bytes(r.ServerStack), time.Since(t).Round(time.Millisecond))
		fmt.Fprintf(out, "| %s | %s | %s | %s | %.1f | %s | %s | %s | %.1f |\n", k,
			bytes(r.ServerHeap), bytes(r.ServerStack), bytes(r.ServerHeap+r.ServerStack), r.ServerG,
			bytes(r.ClientHeap), bytes(r.ClientStack), bytes(r.ClientHeap+r.ClientStack), r.ClientG)
	}
	fmt.Fprintln(out)
	return nil
}

// libraryRevision names the netmsg source measured: the commit of the
// repository around this module and whether its tree had changes.
func libraryRevision() string {
	rev, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not run from bench/ inside the repository)"
	}
	r := strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench").Output(); err == nil && len(st) > 0 {
		r += " with uncommitted changes to tracked files"
	}
	return "git " + r
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ") + " (1, 5, 15 min)"
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func kilo(x float64) string {
	if x >= 1000 {
		return fmt.Sprintf("%.1fk", x/1000)
	}
	return fmt.Sprintf("%.0f", x)
}

func bytes(x float64) string {
	switch {
	case x >= 1<<20:
		return fmt.Sprintf("%.1f MiB", x/(1<<20))
	case x >= 10<<10:
		return fmt.Sprintf("%.1f KiB", x/(1<<10))
	}
	return fmt.Sprintf("%.0f B", x)
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}
