package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/cli"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/stationsim"
)

// Issue 15 items 3 and 4 end to end: the manager binary, simulated
// stations, the IoT Hub emulator, Azurite, kubectl and the CLI.

// TestAbortOnFailureRestoresEveryTouchedTwin: with failurePolicy Abort, the
// manager aborts a rollout whose failures pass maxFailures by itself: every
// twin it wrote desires the previous firmware again, the updated stations
// go back to it, and kubectl shows why.
func TestAbortOnFailureRestoresEveryTouchedTwin(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, worldOptions{stations: 10, tweak: func(i int, sp *embedded.StationSpec) {
		if i%5 == 2 {
			sp.Behavior.NeverApply = true
		}
	}})
	r := w.rollout("r", batch("100%"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(1))
	r.Spec.Strategy.FailurePolicy = fwv1.FailurePolicyAbort
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseAborted, 60*time.Second)

	g.Expect(r.Spec.Abort).To(BeFalse())
	g.Expect(r.Status.AbortReason).To(Equal(fwv1.ReasonFailureLimitAborted))
	stalled := meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionStalled)
	g.Expect(stalled).NotTo(BeNil(), statusString(r))
	g.Expect(stalled.Reason).To(Equal(fwv1.ReasonFailureLimitAborted))
	g.Expect(stalled.Message).To(ContainSubstring("2 stations failed, more than maxFailures allows (1)"))
	for i := range w.specs {
		tw := w.twinOf(i)
		g.Expect(tw.Ownership).To(BeNil(), "station %d still owned", i)
		g.Expect(tw.CUPS.Firmware.Equal(firmwareOf(w.old))).To(BeTrue(), "station %d desires %+v", i, tw.CUPS.Firmware)
	}
	g.Eventually(func() []int {
		var behind []int
		for i, s := range w.stations {
			if s.Package() != oldPackage {
				behind = append(behind, i)
			}
		}
		return behind
	}, 30*time.Second, 100*time.Millisecond).Should(BeEmpty(), "stations not back on the previous firmware")

	row := getFWR(t, kubectlBinary(t), w.ns, "r")
	g.Expect(row).To(HaveKeyWithValue("PHASE", "Aborted"))
	g.Expect(row).To(HaveKeyWithValue("REASON", fwv1.ReasonFailureLimitAborted))
}

// TestRaiseMaxFailuresThenRetry: a halted rollout goes on when maxFailures
// is raised in Git (and halts again on new failures); `kubectl stationfleet
// retry` then sends the update again to the failed stations, their
// attempts counted afresh, and they end Updated.
func TestRaiseMaxFailuresThenRetry(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, worldOptions{stations: 6, tweak: func(_ int, sp *embedded.StationSpec) { sp.Behavior.NeverApply = true }})
	r := w.rollout("r", batch("1"), batch("2"), batch("100%"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseHalted, 30*time.Second)
	g.Expect(r.Status.Failed).To(BeNumerically("==", 1), statusString(r))
	g.Expect(r.Status.CurrentStep).To(BeNumerically("==", 1))

	// Raised in Git: the rollout writes its second batch, whose stations
	// fail too, and halts again.
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(1)) })
	g.Eventually(func() int32 { return w.get("r").Status.Failed }, 30*time.Second, 100*time.Millisecond).Should(BeNumerically("==", 3))
	r = w.waitPhase("r", fwv1.PhaseHalted, 30*time.Second)
	g.Expect(r.Status.CurrentStep).To(BeNumerically("==", 2), statusString(r))
	g.Expect(r.Status.Pending).To(BeNumerically("==", 3))

	// The stations are fixed; retry sends them the update again.
	for _, s := range w.stations {
		s.SetBehavior(stationsim.Behavior{})
	}
	out := runStationfleet(t, "retry", "r", "-n", w.ns)
	g.Expect(out).To(ContainSubstring("retry requested: the update is sent again to its 3 failed stations"))
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 6), statusString(r))
	g.Expect(r.Status.Failed).To(BeZero())
	for i, s := range w.stations {
		g.Expect(s.Package()).To(Equal(newPackage), "station %d", i)
		g.Expect(w.twinOf(i).Ownership.Failed).To(BeEmpty(), "station %d", i)
	}
	// Retry refuses a completed rollout, saying what to do instead.
	errOut := runStationfleetFails(t, "retry", "r", "-n", w.ns)
	g.Expect(errOut).To(ContainSubstring("is Completed: a finished rollout sends nothing again; to update its failed stations"))
}

// runStationfleet runs `kubectl stationfleet args...` in process against
// the test's API server and returns its output; it fails t on a non-zero
// exit.
func runStationfleet(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := execStationfleet(args...)
	if code != 0 {
		t.Fatalf("kubectl stationfleet %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// runStationfleetFails is runStationfleet for a command that must fail; it
// returns the error output.
func runStationfleetFails(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := execStationfleet(args...)
	if code == 0 {
		t.Fatalf("kubectl stationfleet %s succeeded: %s", strings.Join(args, " "), out)
	}
	return errOut
}

func execStationfleet(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), cli.Options{Name: "kubectl-stationfleet",
		Streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}},
		append(args, "--kubeconfig="+kubeconfigPath))
	return code, out.String(), errOut.String()
}
