package e2e

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
)

// TestRolloutCompletesFromAzureBlob: a rollout of firmware hosted in Azure
// Blob Storage (Azurite) walks its three batches to Completed; every twin
// then desires the azblob:// firmware and remembers the previous one, and
// every station downloaded it through CUPS and runs it.
func TestRolloutCompletesFromAzureBlob(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, worldOptions{stations: 40})
	w.create(w.rollout("r", batch("1"), batch("25%"), batch("100%")))
	r := w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)

	st := r.Status
	g.Expect(st.Targets).To(BeNumerically("==", 40))
	g.Expect(st.Updated).To(BeNumerically("==", 40))
	g.Expect(st.Failed+st.Pending+st.InProgress+st.Skipped).To(BeZero(), statusString(r))
	g.Expect(st.Progress).To(Equal("40/40"))
	g.Expect(st.CurrentStep).To(BeNumerically("==", 3))
	g.Expect(st.ObservedGeneration).To(Equal(r.Generation))
	g.Expect(st.CompletionTime).NotTo(BeNil())
	g.Expect(meta.IsStatusConditionTrue(st.Conditions, fwv1.ConditionReady)).To(BeTrue(), statusString(r))
	g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionReconciling)).To(BeNil())
	g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionStalled)).To(BeNil())
	g.Expect(st.Batches).To(HaveLen(3))
	for i, want := range []int32{1, 10, 29} {
		g.Expect(st.Batches[i].Size).To(Equal(want), "batch %d", i+1)
		g.Expect(st.Batches[i].Updated).To(Equal(want), "batch %d", i+1)
	}

	batchSizes := map[int]int{}
	for i := range w.specs {
		tw := w.twinOf(i)
		g.Expect(tw.CUPS.Firmware.Equal(firmwareOf(w.new))).To(BeTrue(), "station %d desires %+v, want the azblob firmware", i, tw.CUPS.Firmware)
		g.Expect(tw.CUPS.URL).To(HavePrefix("azblob://"))
		g.Expect(tw.Ownership).NotTo(BeNil(), "station %d not owned", i)
		g.Expect(tw.Ownership.UID).To(Equal(string(r.UID)))
		g.Expect(tw.Ownership.Previous.Equal(firmwareOf(w.old))).To(BeTrue(), "station %d previous firmware %+v", i, tw.Ownership.Previous)
		batchSizes[tw.Ownership.Batch]++
		g.Expect(w.stations[i].Package()).To(Equal(newPackage), "station %d", i)
		s := w.stations[i].Stats()
		g.Expect(s.UpdatesApplied).To(BeNumerically("==", 1), "station %d", i)
		g.Expect(s.UpdatesRefused+s.Malformed).To(BeZero(), "station %d", i)
	}
	g.Expect(batchSizes).To(Equal(map[int]int{1: 1, 2: 10, 3: 29}))
	w.expectWrittenOnce(g, r, 40)

	// kubectl shows the same.
	row := getFWR(t, kubectlBinary(t), w.ns, "r")
	g.Expect(row).To(HaveKeyWithValue("PHASE", "Completed"))
	g.Expect(row).To(HaveKeyWithValue("UPDATED", "40/40"))
	g.Expect(row["FAILED"]).To(failedCell(0), "FAILED column")
	g.Expect(row).To(HaveKeyWithValue("STEP", "3"))
	g.Expect(row).To(HaveKeyWithValue("READY", "True"))

	// The CUPS server recorded, durably in the twin, that each station runs
	// the new package.
	g.Eventually(func() []string {
		var behind []string
		for i := range w.specs {
			if o := w.twinOf(i).Observation; o == nil || o.Package != newPackage {
				behind = append(behind, w.id(i))
			}
		}
		return behind
	}, 10*time.Second, 200*time.Millisecond).Should(BeEmpty(), "stations whose observation does not show %s", newPackage)
}

// TestRolloutHaltsOnFailures: stations that never install the update fail
// as NotApplied; once failures pass maxFailures the rollout halts
// (Stalled), and no station of a later batch is ever written.
func TestRolloutHaltsOnFailures(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, worldOptions{stations: 30, tweak: func(i int, sp *embedded.StationSpec) {
		if i%5 == 2 {
			sp.Behavior.NeverApply = true
		}
	}})
	r := w.rollout("r", batch("5"), batch("5"), batch("5"), batch("5"), batch("5"), batch("5"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(1))
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseHalted, 60*time.Second)

	st := r.Status
	g.Expect(st.Failed).To(BeNumerically(">", 1), statusString(r))
	g.Expect(st.Pending).To(BeNumerically(">", 0), "a halted rollout leaves later stations unwritten: %s", statusString(r))
	g.Expect(st.CurrentStep).To(BeNumerically("<", 6))
	stalled := meta.FindStatusCondition(st.Conditions, fwv1.ConditionStalled)
	g.Expect(stalled).NotTo(BeNil(), statusString(r))
	g.Expect(stalled.Status).To(BeEquivalentTo("True"))
	g.Expect(stalled.Reason).To(Equal(fwv1.ReasonHalted))
	g.Expect(meta.IsStatusConditionTrue(st.Conditions, fwv1.ConditionReady)).To(BeFalse())
	g.Expect(st.Failures).NotTo(BeEmpty())
	for _, f := range st.Failures {
		g.Expect(f.Reason).To(Equal(fwv1.FailureNotApplied), "failure of %s", f.DeviceID)
		g.Expect(w.specs[indexOf(w, f.DeviceID)].Behavior.NeverApply).To(BeTrue(), "%s failed but installs updates", f.DeviceID)
	}

	// The rollout stays halted on its step over several status resyncs,
	// when it could (wrongly) go on.
	haltStep := st.CurrentStep
	g.Consistently(func(g Gomega) {
		r := w.get("r")
		g.Expect(r.Status.Phase).To(Equal(fwv1.PhaseHalted), statusString(r))
		g.Expect(r.Status.CurrentStep).To(Equal(haltStep), statusString(r))
	}, 3*time.Second, 100*time.Millisecond).Should(Succeed())
	r = w.get("r")
	written := 0
	for i := range w.specs {
		tw := w.twinOf(i)
		if tw.Ownership == nil {
			g.Expect(tw.CUPS.Firmware.Equal(firmwareOf(w.old))).To(BeTrue(), "unwritten station %d desires %+v", i, tw.CUPS.Firmware)
			g.Expect(w.stations[i].Package()).To(Equal(oldPackage), "unwritten station %d", i)
			continue
		}
		written++
		g.Expect(tw.Ownership.Batch).To(BeNumerically("<=", haltStep), "station %d written by a batch after the halt", i)
	}
	var inBatches int32
	for _, b := range r.Status.Batches {
		inBatches += b.Size
	}
	g.Expect(int32(written)).To(Equal(inBatches), statusString(r))
	g.Expect(int32(written)).To(Equal(r.Status.Targets - r.Status.Pending))
	w.expectWrittenOnce(g, r, written)

	// Deleting the halted rollout releases every station it wrote (the
	// Updated ones keep the new firmware, the others get their previous
	// firmware back).
	g.Expect(testEnv.Client.Delete(context.Background(), r)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(r), &fwv1.FirmwareRollout{}))
	}, 15*time.Second, 100*time.Millisecond).Should(BeTrue(), "the halted rollout was never finalized")
	for i := range w.specs {
		g.Expect(w.twinOf(i).Ownership).To(BeNil(), "station %d still owned after the rollout was deleted", i)
	}
}

// TestAbortRestoresPreviousFirmware: aborting a rollout paused after two
// batches puts back the four firmware fields each written twin had, and
// the updated stations download the old firmware and run it again.
func TestAbortRestoresPreviousFirmware(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, worldOptions{stations: 20})
	w.create(w.rollout("r", batch("5"), batch("5"), pauseUntilResumed(), batch("100%")))
	r := w.waitPhase("r", fwv1.PhasePaused, 40*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 10), statusString(r))
	g.Eventually(func() int {
		n := 0
		for _, s := range w.stations {
			if s.Package() == newPackage {
				n++
			}
		}
		return n
	}, 10*time.Second, 100*time.Millisecond).Should(Equal(10), "stations running %s before the abort", newPackage)

	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Abort = true })
	r = w.waitPhase("r", fwv1.PhaseAborted, 30*time.Second)
	ready := meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady)
	g.Expect(ready).NotTo(BeNil())
	g.Expect(ready.Reason).To(Equal(fwv1.ReasonAborted))

	for i := range w.specs {
		tw := w.twinOf(i)
		g.Expect(tw.Ownership).To(BeNil(), "station %d still owned after the abort", i)
		g.Expect(tw.CUPS.Firmware.Equal(firmwareOf(w.old))).To(BeTrue(), "station %d firmware not restored: %+v", i, tw.CUPS.Firmware)
	}
	g.Eventually(func() []int {
		var on []int
		for i, s := range w.stations {
			if s.Package() != oldPackage {
				on = append(on, i)
			}
		}
		return on
	}, 30*time.Second, 100*time.Millisecond).Should(BeEmpty(), "stations not back on %s", oldPackage)
	// Ten stations installed 2.0.7 and then 2.0.6 again; ten never moved.
	applied := 0
	for _, s := range w.stations {
		applied += int(s.Stats().UpdatesApplied)
	}
	g.Expect(applied).To(Equal(20))
	w.expectWrittenOnce(g, r, 10)
}

// TestManagerKilledMidBatch: the manager process is SIGKILLed while it is
// writing a batch's twins and started again; the rollout finishes with the
// right counts, and no station was written twice by it.
func TestManagerKilledMidBatch(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, worldOptions{
		stations: 60,
		tweak: func(i int, sp *embedded.StationSpec) {
			if i%20 == 7 {
				sp.Behavior.NeverApply = true
			}
		},
		// Few, slow writes (below) so that the kill lands inside a batch.
		managerArgs: []string{"--rollout-write-concurrency=2", "--rollout-max-writes-per-reconcile=10"},
	})
	slow := w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, Latency: 40 * time.Millisecond})
	r := w.rollout("r", batch("10"), batch("100%"))
	w.create(r)

	// Kill once the second batch is partly written.
	g.Eventually(func() int { return len(w.hub.RolloutWrites(string(w.get("r").UID))) }, 30*time.Second, 5*time.Millisecond).
		Should(BeNumerically(">=", 25), "second batch never started")
	w.mgr.kill()
	g.Expect(w.mgr.exitErr()).To(MatchError(ContainSubstring("killed")), "the manager should have died of SIGKILL")
	before := len(w.hub.RolloutWrites(string(w.get("r").UID)))
	g.Expect(before).To(BeNumerically("<", 60), "the batch finished before the kill; the test proves nothing")
	t.Logf("killed the manager with %d of 60 stations written; status then: %s", before, statusString(w.get("r")))

	// The stations keep polling the dead CUPS URL, fail, and retry.
	failures := func() (n int64) {
		for _, s := range w.stations {
			n += s.Stats().Failures
		}
		return n
	}
	failedBefore := failures()
	g.Eventually(failures, 10*time.Second, 50*time.Millisecond).
		Should(BeNumerically(">", failedBefore), "no station noticed the manager was gone")
	slow()
	w.mgr.start()

	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	st := r.Status
	g.Expect(st.Targets).To(BeNumerically("==", 60))
	g.Expect(st.Updated).To(BeNumerically("==", 57), statusString(r))
	g.Expect(st.Failed).To(BeNumerically("==", 3), statusString(r))
	g.Expect(st.Updated + st.Failed).To(Equal(st.Targets))
	g.Expect(st.Pending + st.InProgress + st.Skipped).To(BeZero())
	g.Expect(st.Progress).To(Equal("57/60"))
	g.Expect(st.Batches).To(HaveLen(2))
	g.Expect(st.Batches[0].Size + st.Batches[1].Size).To(BeNumerically("==", 60))
	g.Expect(st.Batches[0].Updated + st.Batches[0].Failed + st.Batches[1].Updated + st.Batches[1].Failed).To(BeNumerically("==", 60))
	for _, f := range st.Failures {
		g.Expect(f.Reason).To(Equal(fwv1.FailureNotApplied), "failure of %s", f.DeviceID)
	}
	w.expectWrittenOnce(g, r, 60)
	for i := range w.specs {
		tw := w.twinOf(i)
		g.Expect(tw.CUPS.Firmware.Equal(firmwareOf(w.new))).To(BeTrue(), "station %d desires %+v", i, tw.CUPS.Firmware)
		want := newPackage
		if w.specs[i].Behavior.NeverApply {
			want = oldPackage
		}
		g.Expect(w.stations[i].Package()).To(Equal(want), "station %d", i)
	}
}

// indexOf returns the index of the world's station with device id id.
func indexOf(w *world, id string) int {
	for i := range w.specs {
		if w.id(i) == id {
			return i
		}
	}
	w.t.Fatalf("no station %s in the world", id)
	return -1
}
