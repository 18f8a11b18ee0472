package harness

import (
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d > 0.04 || d < -0.04 {
			t.Errorf("q%.2f = %v, want about %v", c.q, got, c.want)
		}
	}
	for i := 0; i < histBuckets-1; i++ {
		if histIndex(histLow(i)) != i || histLow(i+1) <= histLow(i) {
			t.Fatalf("bucket %d: low %d maps to %d", i, histLow(i), histIndex(histLow(i)))
		}
	}
}
