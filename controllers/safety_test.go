package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Issue 15 items 3 and 4: failurePolicy Abort, a halt that follows from the
// spec, and retry, against the real API server, the IoT Hub emulator and
// simulated stations.

// neverApply makes every station of a world take updates and never
// install them: each fails NotApplied after maxUpdateAttempts (2) sends.
func neverApply(_ int, sp *embedded.StationSpec) { sp.Behavior.NeverApply = true }

// healAll makes every station install what it is sent from now on.
func (w *world) healAll() {
	for _, s := range w.stations {
		s.SetBehavior(stationsim.Behavior{})
	}
}

// eventMessages returns the messages of the rollout's Events with reason.
func (w *world) eventMessages(r *fwv1.FirmwareRollout, reason string) []string {
	var list eventsv1.EventList
	NewWithT(w.t).Expect(testEnv.Client.List(context.Background(), &list, client.InNamespace(w.ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.UID == r.UID && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

// restoredToOld checks that every station's twin holds its previous
// firmware and no ownership record.
func (w *world) restoredToOld(g Gomega) {
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).To(BeNil(), "station %d still owned", i)
		g.Expect(tw.CUPS.Firmware.Equal(twin.Firmware{Package: w.old.Package, URL: w.old.URL, Signature: w.old.Signature, KeyChecksum: &w.old.KeyChecksum})).
			To(BeTrue(), "station %d firmware not restored: %+v", i, tw.CUPS.Firmware)
	}
}

// TestFailurePolicyAbortRestores: with failurePolicy Abort, failures past
// maxFailures make the controller abort by itself: every station the
// rollout wrote gets its previous firmware back, without spec.abort.
func TestFailurePolicyAbortRestores(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 8, func(i int, sp *embedded.StationSpec) {
		if i < 2 {
			sp.Behavior.NeverApply = true
		}
	})
	r := w.rollout("r", batch("100%"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(1))
	r.Spec.Strategy.FailurePolicy = fwv1.FailurePolicyAbort
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseAborted, 60*time.Second)

	g.Expect(r.Spec.Abort).To(BeFalse(), "the controller does not write spec")
	g.Expect(r.Status.AbortReason).To(Equal(fwv1.ReasonFailureLimitAborted))
	for _, typ := range []string{fwv1.ConditionReady, fwv1.ConditionStalled} {
		c := meta.FindStatusCondition(r.Status.Conditions, typ)
		g.Expect(c).NotTo(BeNil(), typ)
		g.Expect(c.Reason).To(Equal(fwv1.ReasonFailureLimitAborted), typ)
		g.Expect(c.Message).To(HavePrefix("2 stations failed, more than maxFailures allows (1): failurePolicy Abort restores"), typ)
	}
	g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, fwv1.ConditionStalled)).To(BeTrue())
	w.restoredToOld(g)
	g.Expect(w.eventMessages(r, fwv1.ReasonFailureLimitAborted)).To(HaveLen(1))
}

// TestAbortDecisionSurvivesRestart: the controller's decision to abort is
// kept in status, so a new manager finishes the restore even after the
// failurePolicy went back to Halt in Git.
func TestAbortDecisionSurvivesRestart(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 4, neverApply)
	r := w.rollout("r", batch("100%"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	w.waitPhase("r", fwv1.PhaseHalted, 30*time.Second)
	// Every station failed and its failure is recorded in its twin.
	g.Eventually(func() bool {
		for i := range w.specs {
			if tw := w.twinOf(w.id(i)); tw.Ownership == nil || tw.Ownership.Failed == "" {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond).Should(BeTrue())

	// The restore of one station fails: the abort stops part way.
	w.hub.InjectFault(hubsim.Fault{Op: hubsim.OpPatchTwin, DeviceID: w.id(0), Status: 403})
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Strategy.FailurePolicy = fwv1.FailurePolicyAbort })
	r = w.waitPhase("r", fwv1.PhaseAborting, 30*time.Second)
	g.Expect(r.Status.AbortReason).To(Equal(fwv1.ReasonFailureLimitAborted))
	w.killManager()
	g.Expect(w.twinOf(w.id(0)).Ownership).NotTo(BeNil(), "the restore was to fail on station 0")

	w.hub.ClearFaults()
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Strategy.FailurePolicy = fwv1.FailurePolicyHalt })
	w.startManager()
	r = w.waitPhase("r", fwv1.PhaseAborted, 30*time.Second)
	g.Expect(meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady).Reason).To(Equal(fwv1.ReasonFailureLimitAborted))
	w.restoredToOld(g)
}

// TestRaisingMaxFailuresContinues: a halt follows from the spec: raising
// maxFailures in Git past the failures lets a halted rollout write its next
// batches.
func TestRaisingMaxFailuresContinues(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 6, neverApply)
	r := w.rollout("r", batch("2"), batch("100%"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	w.waitPhase("r", fwv1.PhaseHalted, 30*time.Second)
	// Both stations of the first batch fail (the halt comes with the first).
	g.Eventually(func() int32 { return w.get("r").Status.Failed }, 30*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 2))
	r = w.get("r")
	g.Expect(r.Status.Phase).To(Equal(fwv1.PhaseHalted))
	g.Expect(r.Status.Pending).To(BeNumerically("==", 4))
	failed := r.Status.Failed

	w.healAll()
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(2)) })
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Failed).To(Equal(failed), "the failed stations stay failed")
	g.Expect(r.Status.Updated).To(Equal(6 - failed))
	g.Expect(r.Status.Batches).To(HaveLen(2))
	g.Expect(w.eventMessages(r, fwv1.ReasonResumed)).To(ContainElement(ContainSubstring("maxFailures 2 allows 2: the halt is lifted")))
}

// TestRetrySendsTheUpdateAgain: retry sends the update again to a station
// that was NotApplied after maxUpdateAttempts, with its attempts counted
// afresh, and the halted rollout goes on to completion.
func TestRetrySendsTheUpdateAgain(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 4, neverApply)
	r := w.rollout("r", batch("1"), batch("100%"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseHalted, 30*time.Second)
	g.Expect(r.Status.Failures).To(HaveLen(1))
	g.Expect(r.Status.Failures[0].Reason).To(Equal(fwv1.FailureNotApplied))
	id := r.Status.Failures[0].DeviceID
	var st *stationsim.Station
	for i := range w.specs {
		if w.id(i) == id {
			st = w.stations[i]
		}
	}
	g.Expect(st.Stats().UpdatesNotInstalled).To(BeNumerically("==", 2))

	w.healAll()
	w.patch("r", func(r *fwv1.FirmwareRollout) {
		r.Annotations = map[string]string{fwv1.RetryAnnotation: time.Now().UTC().Format(time.RFC3339Nano)}
	})
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 4))
	g.Expect(r.Status.Failed).To(BeZero())
	g.Expect(r.Status.LastHandledRetry).To(Equal(r.Annotations[fwv1.RetryAnnotation]))
	g.Expect(st.Package()).To(Equal("2.0.7"))
	g.Expect(st.Stats().UpdatesApplied).To(BeNumerically("==", 1), "the retried station is sent the update again")
	tw := w.twinOf(id)
	g.Expect(tw.Ownership.Failed).To(BeEmpty())
	g.Expect(tw.Observation.UpdatesServed).To(Equal(1), "attempts counted afresh")
	g.Expect(w.eventMessages(r, fwv1.ReasonRetried)).To(ConsistOf(ContainSubstring("sent again to 1 failed stations")))
	g.Expect(r.Status.Batches).To(HaveLen(2))
}
