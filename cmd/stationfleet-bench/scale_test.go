package main

import (
	"testing"
	"time"
)

// TestScaleLinear: the scale row calls a curve close to linear only when
// each size's time per station is within maxGrowth of the size before it:
// this session's million (5m53s after 100,000 in 32.7 s) is, the previous
// one (17m41s after 33.4 s) is not.
func TestScaleLinear(t *testing.T) {
	pt := func(n int, d time.Duration) scalePoint { return scalePoint{n: n, written: d} }
	for _, c := range []struct {
		pts  []scalePoint
		want bool
	}{
		{[]scalePoint{pt(10_000, 3840*time.Millisecond)}, true},
		{[]scalePoint{pt(100_000, 32700*time.Millisecond), pt(1_000_000, 5*time.Minute+53*time.Second)}, true},
		{[]scalePoint{pt(100_000, 33400*time.Millisecond), pt(1_000_000, 17*time.Minute+41*time.Second)}, false},
	} {
		if got := linear(c.pts); got != c.want {
			t.Errorf("linear(%v) = %v, want %v", c.pts, got, c.want)
		}
	}
}
