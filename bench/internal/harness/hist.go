package harness

import (
	"math/bits"
	"time"
)

// Hist is a log-linear latency histogram: 32 sub-buckets per power of two
// (about 3 % resolution). Recording never allocates; one goroutine owns a
// Hist and Merge combines them afterwards.
type Hist struct {
	b     [histBuckets]uint32
	count uint64
}

const (
	histSub     = 32
	histSubBits = 5
	histBuckets = (64 - histSubBits + 1) * histSub
)

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // shift that leaves 6 significant bits
	return (e+1)*histSub + int((v>>e)&(histSub-1))
}

// histLow is the smallest value that lands in bucket i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	return (histSub + uint64(i%histSub)) << e
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.b[histIndex(uint64(d))]++
	h.count++
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	for i, n := range o.b {
		h.b[i] += n
	}
	h.count += o.count
}

// Reset forgets every sample.
func (h *Hist) Reset() { *h = Hist{} }

// Count returns the number of samples.
func (h *Hist) Count() uint64 { return h.count }

// Quantile returns the q-quantile (0 < q ≤ 1), as the midpoint of its bucket.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.count) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, n := range h.b {
		seen += uint64(n)
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			return time.Duration((lo + hi) / 2)
		}
	}
	return 0
}
