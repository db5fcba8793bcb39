package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machineSample is what the machine was doing at one instant: the 1-minute
// load average, the CPU time every process used since boot (/proc/stat),
// and the CPU time of this process and its descendants (the bench's own
// children: manager, load generator, bare handler, test binaries).
type machineSample struct {
	at      time.Time
	load1   float64
	busy    float64 // seconds, all processes (steal excluded)
	steal   float64 // seconds the hypervisor ran something else while this machine wanted its CPUs
	ours    float64 // seconds, this process tree
	running int     // runnable tasks (/proc/loadavg)
}

// sampleMachine reads /proc/loadavg, /proc/stat and /proc/<pid>/stat.
func sampleMachine() machineSample {
	s := machineSample{at: time.Now(), load1: -1}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 4 {
			s.load1, _ = strconv.ParseFloat(f[0], 64)
			if r, _, ok := strings.Cut(f[3], "/"); ok {
				s.running, _ = strconv.Atoi(r)
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		s.busy, s.steal = parseCPULine(line)
	}
	s.ours = treeCPU(os.Getpid())
	return s
}

// parseCPULine reads the "cpu" line of /proc/stat (user nice system idle
// iowait irq softirq steal guest guest_nice, in clock ticks): busy is
// everything but idle, iowait and steal (guest time is already in user),
// steal is what a virtual machine's host took from it.
func parseCPULine(line string) (busy, steal float64) {
	f := strings.Fields(line)
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseFloat(f[i], 64)
		switch i {
		case 4, 5:
		case 8:
			steal = v / clockTicks
		default:
			busy += v / clockTicks
		}
	}
	return busy, steal
}

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/<pid>/stat
// (100 on every Linux this runs on).
const clockTicks = 100

// treeCPU returns the CPU seconds (user+system, with those of reaped
// children) of pid and all its live descendants.
func treeCPU(root int) float64 {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[int]int{}
	cpu := map[int]float64{}
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:strings.IndexByte(s, ' ')]))
		f := strings.Fields(s[i+1:])
		if len(f) < 15 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		var t float64
		for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(f[k], 64)
			t += v
		}
		cpu[pid] = t / clockTicks
	}
	var total float64
	for pid, t := range cpu {
		for p := pid; p > 1; p = parent[p] {
			if p == root {
				total += t
				break
			}
		}
	}
	return total
}

// machineLoad describes the machine between two samples: the load average
// at both ends, the CPU that processes outside this bench used, in cores,
// and the CPU the hypervisor took (steal): on a virtual machine that is
// the busy host, invisible in the load average, and it stalls every
// process for milliseconds at a time.
func machineLoad(a, b machineSample) string {
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return "-"
	}
	others := max(0, (b.busy-a.busy)-(b.ours-a.ours)) / dt
	ours := (b.ours - a.ours) / dt
	steal := max(0, b.steal-a.steal) / dt
	return fmt.Sprintf("load %.1f→%.1f; other processes %.2f of %d cores, bench %.2f, stolen by the host %.2f",
		a.load1, b.load1, others, runtime.NumCPU(), ours, steal)
}

// spread describes per-round values: the median and the range, e.g.
// "0.86x (0.83–0.88, 5 rounds)".
func spread(vals []float64, format string) (median float64, s string) {
	if len(vals) == 0 {
		return 0, "-"
	}
	v := slices.Clone(vals)
	slices.Sort(v)
	median = v[len(v)/2]
	if len(v)%2 == 0 {
		median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	if len(v) == 1 {
		return median, fmt.Sprintf(format+" (1 round: no spread)", median)
	}
	return median, fmt.Sprintf(format+" (%s–%s, %d rounds)", median, fmt.Sprintf(format, v[0]), fmt.Sprintf(format, v[len(v)-1]), len(v))
}
