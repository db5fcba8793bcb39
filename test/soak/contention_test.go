package soak

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// burnEnv, when set in the environment to a duration, makes the soak's test
// binary a CPU burner instead of a test run: the contention fault.
const burnEnv = "SOAK_CPU_BURN"

// burnThreadsPerCore is how many busy threads per core the burner runs.
const burnThreadsPerCore = 3

// burnIfAsked turns this process into a CPU burner when burnEnv is set:
// burnThreadsPerCore busy threads per core for that long, so that the
// managers, the API server, the emulator and the stations get a fraction of
// the machine they normally have, as on a machine busy with other builds.
// It reports whether it burned.
func burnIfAsked() bool {
	v := os.Getenv(burnEnv)
	if v == "" {
		return false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		d = 10 * time.Second
	}
	n := burnThreadsPerCore * runtime.NumCPU()
	runtime.GOMAXPROCS(n)
	end := time.Now().Add(d)
	done := make(chan struct{})
	for range n {
		go func() {
			x := uint64(1)
			for time.Now().Before(end) {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			if x == 0 { // keep the loop from being optimized away
				os.Exit(3)
			}
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	return true
}

// contention keeps every core of the machine busy for d with a child
// process (this test binary as a burner, see burnIfAsked): the busy-machine
// fault. It returns when the burner exits, at d or when ctx ends.
func (w *world) contention(ctx context.Context, d time.Duration) {
	w.logf("CPU contention: %d busy threads on %d cores for %s", burnThreadsPerCore*runtime.NumCPU(), runtime.NumCPU(), d)
	w.count(fmt.Sprintf("CPU contention (%d busy threads per core)", burnThreadsPerCore))
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), burnEnv+"="+d.String())
	w.burnMu.Lock()
	err := cmd.Start()
	if err == nil {
		w.burner = cmd.Process
		if w.burnHeld {
			_ = cmd.Process.Signal(syscall.SIGSTOP)
		}
	}
	w.burnMu.Unlock()
	if err == nil {
		err = cmd.Wait()
	}
	w.burnMu.Lock()
	w.burner = nil
	w.burnMu.Unlock()
	if err != nil && ctx.Err() == nil {
		w.logf("CPU burner: %v", err)
	}
}

// holdContention stops the burner (SIGSTOP) until the returned func is
// called: the harness's own restarts (Azurite's, which a busy machine slows
// past the harness's patience) are not the system under test.
func (w *world) holdContention() (release func()) {
	w.burnMu.Lock()
	w.burnHeld = true
	if w.burner != nil {
		_ = w.burner.Signal(syscall.SIGSTOP)
	}
	w.burnMu.Unlock()
	return func() {
		w.burnMu.Lock()
		w.burnHeld = false
		if w.burner != nil {
			_ = w.burner.Signal(syscall.SIGCONT)
		}
		w.burnMu.Unlock()
	}
}

// contentionSchedule runs the contention fault in every chaos cycle, from
// 8 s into the cycle for 35 s (across the Azurite outage, the rollout
// deletion, both managers' SIGKILLs and the big batches; the burner is
// held while Azurite restarts), for as long as the faults run.
func (w *world) contentionSchedule(ctx context.Context, start time.Time) {
	const cycle, from, burn = 50 * time.Second, 8 * time.Second, 35 * time.Second
	for n := 0; ; n++ {
		at := start.Add(time.Duration(n)*cycle + from)
		if at.Sub(start) >= w.cfg.faults {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		w.contention(ctx, min(burn, w.cfg.faults-time.Since(start)+time.Second))
	}
}
