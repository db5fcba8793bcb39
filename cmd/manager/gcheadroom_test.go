package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCHeadroomFlag(t *testing.T) {
	for _, c := range []struct {
		flag   string
		envSet bool
		want   int64
	}{
		{"64Mi", false, 64 << 20},
		{"off", false, 0},
		{"0", false, 0},
		{"64Mi", true, 0}, // GOGC set: the user's choice stands
	} {
		got, err := gcHeadroom(c.flag, c.envSet)
		if err != nil || got != c.want {
			t.Errorf("gcHeadroom(%q, env %v) = %d, %v; want %d", c.flag, c.envSet, got, err, c.want)
		}
	}
	for _, bad := range []string{"lots", "-1Mi", ""} {
		if _, err := gcHeadroom(bad, false); err == nil {
			t.Errorf("gcHeadroom(%q) accepted", bad)
		}
	}
}

func TestGCPercentFor(t *testing.T) {
	const mi = 1 << 20
	for _, c := range []struct {
		live, headroom int64
		base, want     int
	}{
		{8 * mi, 64 * mi, 100, 800},   // the CUPS server's small heap: collected at 72 MiB, not 16
		{270 * mi, 64 * mi, 100, 100}, // a million-station rollout keeps GOGC's doubling
		{48 * mi, 64 * mi, 100, 134},  // in between: live + 64 MiB
		{270 * mi, 64 * mi, 200, 200}, // never below GOGC
		{0, 64 * mi, 100, gcPercentMax},
		{1024, 64 * mi, 100, gcPercentMax},
	} {
		if got := gcPercentFor(c.live, c.headroom, c.base); got != c.want {
			t.Errorf("gcPercentFor(%d MiB, %d MiB, %d) = %d; want %d", c.live/mi, c.headroom/mi, c.base, got, c.want)
		}
	}
}

// What the headroom is for: a small live heap allocating a lot (a server
// answering polls) is collected a handful of times instead of dozens.
func TestGCHeadroomCollectsLessOften(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	churn := func() uint32 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var keep [][]byte
		for i := range 256 << 10 { // 256 MiB in 1 KiB pieces, 64 KiB live at most
			b := make([]byte, 1024)
			if len(keep) < 64 {
				keep = append(keep, b)
			} else {
				keep[i%64] = b
			}
		}
		runtime.ReadMemStats(&after)
		return after.NumGC - before.NumGC
	}
	without := churn()
	g := newGCTuner(256 << 20)
	// A full collection first: the live heap a concurrent cycle measures
	// includes what was allocated while it marked (up to its goal).
	runtime.GC()
	if p := g.tune(); p <= 100 {
		t.Fatalf("GC percent with a 256 MiB headroom over this test's small heap: %d, want more than GOGC's 100", p)
	}
	with := churn()
	t.Logf("collections while allocating 256 MiB: %d with GOGC=100, %d with a 256 MiB headroom (GC percent %d)", without, with, g.current)
	if with*4 > without {
		t.Errorf("with the headroom the heap was collected %d times, without %d: want at most a quarter", with, without)
	}
}

// The tuner follows the heap at every collection: a heap that grows from
// small gets GOGC's percent back by its next cycles, not a second later.
func TestGCTunerFollowsAGrowingHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newGCTuner(16 << 20)
	done := make(chan struct{})
	go func() { g.run(ctx); close(done) }()
	percent := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}

	deadline := time.Now().Add(10 * time.Second)
	for percent() <= 200 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if p := percent(); p <= 200 {
		t.Fatalf("GC percent over this test's small heap with a 16 MiB headroom: %d, want more than 200", p)
	}
	live := make([][]byte, 0, 256)
	for range 256 { // 256 MiB live: the headroom is now a sixteenth of it
		live = append(live, make([]byte, 1<<20))
	}
	runtime.GC()
	for percent() != 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if p := percent(); p != 100 {
		t.Errorf("GC percent with 256 MiB live and a 16 MiB headroom: %d, want GOGC's 100", p)
	}
	runtime.KeepAlive(live)
	cancel()
	runtime.GC()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the tuner did not stop with its context")
	}
}
