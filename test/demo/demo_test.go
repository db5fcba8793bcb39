// Package demo_test proves the README's first command: the embedded default
// reaches a Completed rollout on 50 stations, reports the failing ones with
// reasons (health after the update included), and leaves nothing behind
// when interrupted.
package demo_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/demo"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// TestDemoCompletes runs the demo as `make demo` does (50 stations, 6% of them
// never applying, one whose update breaks its network-server connection, one
// whose firmware falls back, a bake time) and checks how the rollout ended.
func TestDemoCompletes(t *testing.T) {
	g := NewWithT(t)
	var out bytes.Buffer
	o := demo.DefaultOptions()
	// Check-ins every second and a bake time of one (1.5x in whole
	// seconds: the twin keeps the bake time in seconds).
	o.PollInterval = time.Second
	o.CUPSAddr = proc.FreeAddr(t)
	o.DashboardAddr = proc.FreeAddr(t)
	o.ExitWhenDone = true
	o.StateDir = t.TempDir()
	o.Out = &out
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := demo.Run(ctx, o)
	g.Expect(err).NotTo(HaveOccurred(), out.String())
	g.Expect(res.Rollout).NotTo(BeNil(), out.String())
	st := res.Rollout.Status
	g.Expect(st.Phase).To(Equal(fwv1.PhaseCompleted), out.String())
	g.Expect(st.Targets).To(BeNumerically("==", 50))
	g.Expect(st.Failed).To(BeNumerically("==", 5), out.String())
	g.Expect(st.Updated).To(BeNumerically("==", 45), out.String())
	g.Expect(st.Baking).To(BeZero())
	g.Expect(st.Failures).To(HaveLen(5))
	reasons := map[fwv1.FailureReason]int{}
	for _, f := range st.Failures {
		reasons[f.Reason]++
	}
	g.Expect(reasons).To(Equal(map[fwv1.FailureReason]int{fwv1.FailureNotApplied: 3, fwv1.FailureUnhealthy: 1, fwv1.FailureRolledBack: 1}))
	g.Expect(res.Rollout.Spec.Strategy.BakeTime).NotTo(BeNil())
	g.Expect(res.Rollout.Spec.Strategy.BakeTime.Duration).To(Equal(time.Second))
	// What a person sees: where to reach each part, the progress, the end.
	g.Expect(out.String()).To(ContainSubstring("export KUBECONFIG="))
	g.Expect(out.String()).To(ContainSubstring("http://" + o.CUPSAddr + "/update-info"))
	g.Expect(out.String()).To(ContainSubstring("connection string in"))
	g.Expect(out.String()).To(MatchRegexp(`dashboard: +http://`+regexp.QuoteMeta(o.DashboardAddr)+`/\?token=[0-9a-f]+`), "the demo prints the dashboard's URL")
	g.Expect(out.String()).To(ContainSubstring("the rollout ended Completed: 45 of 50 stations updated, 5 failed"))
	// The guide says what to look at.
	g.Expect(out.String()).To(MatchRegexp(`breaks its network-server connection .* -> Failed Unhealthy`))
	g.Expect(out.String()).To(MatchRegexp(`falls back to 2\.0\.6 .* -> Failed RolledBack`))
	g.Expect(out.String()).To(ContainSubstring("is baking"))
	// The state directory holds the station's key file (issue 13.5), whose
	// CRC is the rollout's keyChecksum, and the printout says how to enroll
	// a real station.
	sigKey, err := os.ReadFile(filepath.Join(o.StateDir, "keys", "sig-0.key"))
	g.Expect(err).NotTo(HaveOccurred(), "the demo writes the station's sig-0.key")
	g.Expect(sigKey).To(HaveLen(signing.SigKeySize))
	g.Expect(res.Rollout.Spec.Firmware.KeyChecksum).To(BeEquivalentTo(signing.KeyCRC(sigKey)))
	g.Expect(out.String()).To(ContainSubstring("station add EUI --cups-uri http://" + o.CUPSAddr))

	// --keep-state: a second run continues where the first stopped (the
	// rollout is already there and complete; the stations kept 2.0.7).
	out.Reset()
	res, err = demo.Run(ctx, o)
	g.Expect(err).NotTo(HaveOccurred(), out.String())
	g.Expect(res.Rollout.Status.Phase).To(Equal(fwv1.PhaseCompleted))
	g.Expect(res.Rollout.Status.Updated).To(BeNumerically("==", 45))
	b, err := os.ReadFile(filepath.Join(o.StateDir, "stations.json"))
	g.Expect(err).NotTo(HaveOccurred())
	// The Unhealthy station runs 2.0.7 too; the one that fell back, 2.0.6.
	g.Expect(strings.Count(string(b), `"2.0.7"`)).To(Equal(46))
}

// TestDemoInterruptLeavesNothing runs the demo binary, interrupts it, and
// checks that no process it started is left and its CUPS port is free.
func TestDemoInterruptLeavesNothing(t *testing.T) {
	g := NewWithT(t)
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	bin := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/demo")
	build.Dir = root
	outb, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(outb))

	state := t.TempDir()
	addr := proc.FreeAddr(t)
	cmd := exec.Command(bin, "--keep-state", state, "--cups-addr", addr, "--poll-interval", "1s")
	cmd.Dir = root
	stdout, err := cmd.StdoutPipe()
	g.Expect(err).NotTo(HaveOccurred())
	cmd.Stderr = cmd.Stdout
	g.Expect(cmd.Start()).To(Succeed())
	defer func() { _ = cmd.Process.Kill() }()

	// The demo applies its rollout, then its status display prints the
	// rollout again each time the controller changes it ("--- <time>").
	applied, moving := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var isApplied, isMoving bool
		for sc.Scan() {
			switch {
			case !isApplied && strings.HasPrefix(sc.Text(), "applied "):
				close(applied)
				isApplied = true
			case isApplied && !isMoving && strings.HasPrefix(sc.Text(), "--- "):
				close(moving)
				isMoving = true
			}
		}
	}()
	select {
	case <-applied:
	case <-time.After(2 * time.Minute):
		t.Fatal("the demo did not apply its rollout within 2 minutes")
	}
	// Interrupt mid-rollout: once the controller has moved it.
	select {
	case <-moving:
	case <-time.After(time.Minute):
		t.Fatal("the demo's rollout did not move within a minute of being applied")
	}
	g.Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the demo did not stop within a minute of SIGINT")
	}

	// No process refers to the demo's state directory (etcd's data dir is
	// there), and the CUPS port is free again.
	g.Eventually(func() []string { return processesMentioning(state) }, 10*time.Second, 200*time.Millisecond).Should(BeEmpty())
	ln, err := net.Listen("tcp", addr)
	g.Expect(err).NotTo(HaveOccurred(), "the CUPS port is still in use")
	ln.Close()
}

func processesMentioning(s string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestDemoRefusesBadHealthOptions: a bake time a healthy station's second
// check-in could fall within, or negative counts, are refused with a clear
// error before anything starts.
func TestDemoRefusesBadHealthOptions(t *testing.T) {
	g := NewWithT(t)
	o := demo.DefaultOptions()
	o.BakeTime = 4 * time.Second
	_, err := demo.Run(context.Background(), o)
	g.Expect(err).To(MatchError(ContainSubstring("--bake-time 4s must be at most 1.8x --poll-interval")))
	o = demo.DefaultOptions()
	o.PollInterval = 300 * time.Millisecond
	_, err = demo.Run(context.Background(), o)
	g.Expect(err).To(MatchError(ContainSubstring("--bake-time 1s must be at most 1.8x --poll-interval")))
	o = demo.DefaultOptions()
	o.FallBack = -1
	_, err = demo.Run(context.Background(), o)
	g.Expect(err).To(MatchError(ContainSubstring("--break-tc and --fall-back must be 0 or more")))
}
