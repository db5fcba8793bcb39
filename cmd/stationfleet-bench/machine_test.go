package main

import (
	"os"
	"strings"
	"testing"
)

// TestSpreadSaysTheRange: a ratio from rounds is printed with its median
// and range, so that a noisy figure shows as one.
func TestSpreadSaysTheRange(t *testing.T) {
	med, s := spread([]float64{0.9, 0.5, 1.1, 0.95}, "%.2fx")
	if med != 0.925 || s != "0.93x (0.50x–1.10x, 4 rounds)" {
		t.Errorf("spread = %v, %q", med, s)
	}
	if _, s := spread([]float64{1.2}, "%.2fx"); !strings.Contains(s, "no spread") {
		t.Errorf("one round: %q", s)
	}
}

// TestMachineLoadCountsThisProcess: the bench's own CPU is told apart
// from the other processes'.
func TestMachineLoadCountsThisProcess(t *testing.T) {
	a := sampleMachine()
	for i := 0; i < 3e7; i++ { // burn some CPU in this process
		_ = os.Getpid() + i
	}
	b := sampleMachine()
	if b.ours <= a.ours && treeCPU(os.Getpid()) == 0 {
		t.Errorf("this process's CPU was not counted: %v -> %v", a.ours, b.ours)
	}
	if s := machineLoad(a, b); !strings.Contains(s, "other processes") || !strings.Contains(s, "load ") || !strings.Contains(s, "stolen by the host") {
		t.Errorf("machineLoad = %q", s)
	}
}

// TestStealIsToldApart: the CPU a virtual machine's host took (the eighth
// field of /proc/stat's cpu line) is reported as steal, not as other
// processes' work; idle and iowait are neither, guest time is in user.
func TestStealIsToldApart(t *testing.T) {
	busy, steal := parseCPULine("cpu  1000 100 400 9000 50 0 200 300 70 0")
	if busy != 17 || steal != 3 {
		t.Errorf("busy %v s, steal %v s; want 17 s (user+nice+system+softirq) and 3 s", busy, steal)
	}
	if busy, steal := parseCPULine("cpu  1000 100 400 9000"); busy != 15 || steal != 0 {
		t.Errorf("an old kernel's short line: busy %v, steal %v", busy, steal)
	}
}
