package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Row 1p's open-loop p99 cannot be lower than the time its threads lose
// while they want to run: to the virtual machine's host, to interrupts, to
// the kernel. /proc/stat's steal counts only part of that, in 10 ms ticks.
// The stall probe measures it the way a request feels it: a thread pinned
// to each core reads the clock in a loop for a while, with nothing else of
// the bench running, and every gap between two readings of more than
// stallGap is time the core was taken from it.

// stallGap is the shortest gap between two clock readings counted as a
// stall (a loop iteration takes tens of nanoseconds).
const stallGap = 20 * time.Microsecond

// stallReport is the stall probe's result over all cores.
type stallReport struct {
	CPUs int `json:"cpus"`
	// Span is how long each core was probed.
	Span time.Duration `json:"span"`
	// Share1ms is the share of the probed time lost in stalls of 1 ms or
	// more.
	Share1ms float64 `json:"share1ms"`
	// P99 is the time-weighted 99th percentile of the stalls: 1% of the
	// probed time was spent in stalls at least this long (0 when all the
	// stalls together are less than 1%). A request that arrives at a random
	// instant waits at least that long once in a hundred.
	P99 time.Duration `json:"p99"`
	// Longest is the longest stall.
	Longest time.Duration `json:"longest"`
	// Slice is how long a thread waits for its core behind another
	// running thread (sliceWait): what a server's thread waits whenever
	// more threads want to run than there are cores.
	Slice time.Duration `json:"slice"`
}

// summarizeStalls reduces the stalls seen over span on each of cpus cores.
func summarizeStalls(gaps []time.Duration, span time.Duration, cpus int) stallReport {
	r := stallReport{CPUs: cpus, Span: span}
	total := time.Duration(cpus) * span
	if total <= 0 {
		return r
	}
	gaps = slices.Clone(gaps)
	slices.Sort(gaps)
	r.P99 = timeWeighted(gaps, total/100)
	var over time.Duration
	for _, g := range gaps {
		if g >= time.Millisecond {
			over += g
		}
	}
	r.Share1ms = float64(over) / float64(total)
	if len(gaps) > 0 {
		r.Longest = gaps[len(gaps)-1]
	}
	return r
}

// timeWeighted returns the longest stall length L such that the stalls of
// L or more (sorted holds them, shortest first) add up to at least want;
// 0 when all of them do not.
func timeWeighted(sorted []time.Duration, want time.Duration) time.Duration {
	var sum time.Duration
	for i := len(sorted) - 1; i >= 0; i-- {
		if sum += sorted[i]; sum >= want {
			return sorted[i]
		}
	}
	return 0
}

// sliceWait is how long a thread that wants to run waits for its core
// while another thread runs there: it spins on core 0 beside a second
// spinning thread pinned to the same core for span, and returns the
// time-weighted median of its stalls, the kernel scheduler's slice.
func sliceWait(span time.Duration) time.Duration {
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pin(0)
		for !stop.Load() {
		}
	})
	gaps := probeCore(0, span)
	stop.Store(true)
	wg.Wait()
	slices.Sort(gaps)
	var lost time.Duration
	for _, g := range gaps {
		lost += g
	}
	return timeWeighted(gaps, lost/2)
}

// pin binds the calling thread to core cpu; unpinned, the probe still sees
// the machine's stalls, only not one core's.
func pin(cpu int) {
	var set unix.CPUSet
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set)
}

// runStallProbe is the child process ("stalls <duration>"): it probes every
// core for the duration and prints its stallReport as JSON. A process of its
// own, so that nothing else of the bench's Go runtime needs the cores while
// it runs.
func runStallProbe(args []string) int {
	span := 2 * time.Second
	if len(args) > 0 {
		d, err := time.ParseDuration(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "stalls:", err)
			return 2
		}
		span = d
	}
	cpus := runtime.NumCPU()
	perCPU := make([][]time.Duration, cpus)
	var wg sync.WaitGroup
	for c := range cpus {
		wg.Go(func() { perCPU[c] = probeCore(c, span) })
	}
	wg.Wait()
	r := summarizeStalls(slices.Concat(perCPU...), span, cpus)
	r.Slice = sliceWait(span / 4)
	_ = json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// probeCore pins the calling goroutine's thread to core cpu and returns
// the gaps of more than stallGap between its clock readings over span.
func probeCore(cpu int, span time.Duration) []time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pin(cpu)
	var gaps []time.Duration
	start := time.Now()
	last := start
	for last.Sub(start) < span {
		now := time.Now()
		if g := now.Sub(last); g > stallGap {
			gaps = append(gaps, g)
		}
		last = now
	}
	return gaps
}

// probeStalls runs the stall probe in a child process for span.
func probeStalls(span time.Duration) (stallReport, error) {
	self, err := os.Executable()
	if err != nil {
		return stallReport{}, err
	}
	// One P per core for the probe's threads, and one for the runtime's
	// own work, so that the runtime never takes a probe's core.
	cmd := exec.Command(self, "stalls", span.String())
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", runtime.NumCPU()+1))
	out, err := cmd.Output()
	if err != nil {
		return stallReport{}, fmt.Errorf("stall probe: %w", err)
	}
	var r stallReport
	if err := json.Unmarshal(out, &r); err != nil {
		return stallReport{}, fmt.Errorf("stall probe answered %q: %w", out, err)
	}
	return r, nil
}

// String is the probe's figure as the table prints it.
func (r stallReport) String() string {
	return fmt.Sprintf("p99 %.2f ms, %.2f%% of the time in stalls of 1 ms or more, longest %.1f ms; a thread waiting behind another on its core: %.1f ms",
		float64(r.P99)/1e6, 100*r.Share1ms, float64(r.Longest)/1e6, float64(r.Slice)/1e6)
}
