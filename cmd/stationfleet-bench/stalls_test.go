package main

import (
	"math"
	"runtime"
	"testing"
	"time"
)

// TestStallsSummary: the probe's figure is weighted by time, not by count:
// many short stalls do not hide a few long ones.
func TestStallsSummary(t *testing.T) {
	var gaps []time.Duration
	for range 1000 {
		gaps = append(gaps, 30*time.Microsecond) // 30 ms in all
	}
	gaps = append(gaps, 4*time.Millisecond, 5*time.Millisecond, 12*time.Millisecond)
	r := summarizeStalls(gaps, time.Second, 2) // 2 s probed: 1% is 20 ms
	if r.P99 != 4*time.Millisecond {
		t.Errorf("p99 %v; want 4ms (12 ms + 5 ms + 4 ms of stalls reach 1%% of 2 s, 12 + 5 do not)", r.P99)
	}
	if math.Abs(r.Share1ms-0.0105) > 1e-9 || r.Longest != 12*time.Millisecond {
		t.Errorf("share over 1 ms %v, longest %v; want 0.0105 (21 ms of 2 s) and 12ms", r.Share1ms, r.Longest)
	}
	if r := summarizeStalls(gaps[:10], time.Second, 2); r.P99 != 0 {
		t.Errorf("0.3 ms of stalls in 2 s: p99 %v; want 0", r.P99)
	}
}

// TestStallProbeSeesACoreTakenAway: a second thread spinning on the
// probed core takes it from the probe in the scheduler's slices, and the
// probe says how long they are. (Unpinned, the two threads would run on
// two cores and the probe would see next to nothing.)
func TestStallProbeSeesACoreTakenAway(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two cores: the hog and the probe each hold a P")
	}
	const span = 400 * time.Millisecond
	slice := sliceWait(span)
	if slice < 100*time.Microsecond {
		t.Errorf("a thread waiting behind another on its core waited %v (time-weighted median of its stalls); want 100 µs or more", slice)
	}
	alone := summarizeStalls(probeCore(0, span), span, 1)
	t.Logf("alone on core 0: stalls p99 %v, longest %v; behind another thread: %v", alone.P99, alone.Longest, slice)
}
