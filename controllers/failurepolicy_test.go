package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/intstr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUnitFailurePolicyAbort: under failurePolicy Abort, failures past
// maxFailures abort the rollout by itself: every station it wrote gets its
// previous firmware back, the decision is kept in status, and the rollout
// ends Aborted and Stalled with the reason FailureLimitAborted.
func TestUnitFailurePolicyAbort(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 3, []fwv1.RolloutStep{batchStep("100%")})
	for i := range 3 {
		u.own(i, "2.0.6")
	}
	u.report(2, "2.0.7")
	s := u.loaded(t)
	maxF := intstr.FromInt32(1)
	s.obj.Spec.Strategy.MaxFailures = &maxF
	s.obj.Spec.Strategy.FailurePolicy = fwv1.FailurePolicyAbort
	s.obj.Status.Failed = 2
	var f *Finished
	g.Expect(errors.As(u.r.halt(context.Background(), s), &f)).To(BeTrue())
	g.Expect(f.Phase).To(Equal(fwv1.PhaseAborted))
	g.Expect(f.Reason).To(Equal(fwv1.ReasonFailureLimitAborted))
	g.Expect(f.Stalled).To(BeTrue())
	g.Expect(f.Message).To(HavePrefix("2 stations failed, more than maxFailures allows (1): failurePolicy Abort restores the previous firmware"))
	g.Expect(f.Message).To(ContainSubstring("restored on 3 stations"))
	g.Expect(s.obj.Spec.Abort).To(BeFalse(), "the controller never writes spec")
	g.Expect(s.obj.Status.AbortReason).To(Equal(fwv1.ReasonFailureLimitAborted))
	for i := range 3 {
		g.Expect(u.twins.twin(stationID(i)).CUPS.Package).To(Equal("2.0.6"), "station %d restored", i)
	}
	g.Expect(u.events()).To(ContainElement(ContainSubstring(fwv1.ReasonFailureLimitAborted)))

	sum, _, err := summarize(f, fwv1.PhaseAborting)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sum.stalled).To(BeTrue(), "an auto-aborted rollout is Stalled for kstatus")
}

// TestUnitRetry: the retry annotation clears each failed station's mark,
// gives it a fresh progress deadline and forgets CUPS's counts for the
// rollout, in one write each; a station another rollout owns by now is
// not touched; the value counts as handled.
func TestUnitRetry(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 3, []fwv1.RolloutStep{batchStep("100%")})
	for i := range 3 {
		u.own(i, "2.0.6")
	}
	u.twins.mu.Lock()
	u.twins.apply(stationID(0), twin.ObservationPatch(twin.Observation{Package: "2.0.6", ServedPackage: "2.0.7", ServedRollout: "uid-fw", UpdatesServed: 3,
		Refusal: twin.RefusalNotApplied, RefusedPackage: "2.0.7", RefusedRollout: "uid-fw"}))
	u.twins.apply(stationID(0), twin.FailedPatch(string(fwv1.FailureNotApplied)))
	u.twins.apply(stationID(1), twin.FailedPatch(string(fwv1.FailureTimedOut)))
	u.twins.mu.Unlock()
	s := u.loaded(t)
	g.Expect(s.obj.Status.Failed).To(BeEquivalentTo(2))
	before0 := u.twins.writes[stationID(0)]
	g.Expect(u.r.retry(context.Background(), s)).To(Succeed())
	g.Expect(u.twins.writes[stationID(0)]).To(Equal(before0), "no annotation, no retry")

	s.obj.Annotations = map[string]string{fwv1.RetryAnnotation: "t1"}
	// Station 1 is taken over by another rollout between the view and the write.
	u.twins.mu.Lock()
	u.twins.apply(stationID(1), twin.OwnershipPatch(&twin.Ownership{UID: "uid-other", Rollout: "ns/other", Batch: 1}))
	u.twins.mu.Unlock()
	before1 := u.twins.writes[stationID(1)]
	g.Expect(u.r.retry(context.Background(), s)).To(Succeed())

	tw := u.twins.twin(stationID(0))
	g.Expect(tw.Ownership.Failed).To(BeEmpty())
	g.Expect(tw.Ownership.WrittenAt).To(BeTemporally("==", unitNow))
	g.Expect(tw.Ownership.Previous.Package).To(Equal("2.0.6"), "the rest of the record stays")
	g.Expect(tw.Observation.UpdatesServed).To(BeZero())
	g.Expect(tw.Observation.ServedRollout).To(BeEmpty())
	g.Expect(tw.Observation.Refusal).To(BeEmpty())
	g.Expect(tw.Observation.Package).To(Equal("2.0.6"))
	g.Expect(u.twins.writes[stationID(0)]).To(Equal(before0+1), "one write")
	g.Expect(u.twins.writes[stationID(1)]).To(Equal(before1), "a station another rollout owns is not touched")
	g.Expect(u.twins.twin(stationID(1)).Ownership.UID).To(Equal("uid-other"))

	g.Expect(s.obj.Status.Failed).To(BeZero())
	g.Expect(s.obj.Status.InProgress).To(BeEquivalentTo(2))
	g.Expect(s.obj.Status.LastHandledRetry).To(Equal("t1"))
	g.Expect(s.retried).To(Equal(1))
	g.Expect(u.events()).To(ContainElement(And(ContainSubstring(fwv1.ReasonRetried),
		ContainSubstring("sent again to 1 failed stations"), ContainSubstring("1 failed stations are owned by another rollout"))))

	// Handled: the same value does nothing again.
	g.Expect(u.r.retry(context.Background(), s)).To(Succeed())
	g.Expect(u.twins.writes[stationID(0)]).To(Equal(before0 + 1))
}

// TestUnitRetryRefusedWhenFinished: a Completed rollout refuses a retry
// with one Warning Event and writes no twin.
func TestUnitRetryRefusedWhenFinished(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 1, []fwv1.RolloutStep{batchStep("100%")})
	u.own(0, "2.0.6")
	u.twins.mu.Lock()
	u.twins.apply(stationID(0), twin.FailedPatch(string(fwv1.FailureTimedOut)))
	u.twins.mu.Unlock()
	s := u.scope(t)
	s.obj.Status.Phase = fwv1.PhaseCompleted
	s.obj.Annotations = map[string]string{fwv1.RetryAnnotation: time.Now().String()}
	writes := u.twins.writes[stationID(0)]
	var f *Finished
	g.Expect(errors.As(u.r.finished(context.Background(), s), &f)).To(BeTrue())
	g.Expect(u.twins.writes[stationID(0)]).To(Equal(writes))
	g.Expect(s.obj.Status.LastHandledRetry).To(Equal(s.obj.Annotations[fwv1.RetryAnnotation]))
	g.Expect(u.events()).To(ConsistOf(And(ContainSubstring(fwv1.ReasonRetryRefused), ContainSubstring("new FirmwareRollout"))))
}

// TestUnitRetryInChunks: a retry writes at most MaxWritesPerReconcile
// twins per pass, like a batch, and counts as handled once every failed
// station was sent the update again.
func TestUnitRetryInChunks(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 3, []fwv1.RolloutStep{batchStep("100%")})
	u.r.Options.MaxWritesPerReconcile = 2
	u.twins.mu.Lock()
	for i := range 3 {
		u.twins.mu.Unlock()
		u.own(i, "2.0.6")
		u.twins.mu.Lock()
		u.twins.apply(stationID(i), twin.FailedPatch(string(fwv1.FailureTimedOut)))
	}
	u.twins.mu.Unlock()
	s := u.loaded(t)
	s.obj.Annotations = map[string]string{fwv1.RetryAnnotation: "t1"}
	var w *Waiting
	g.Expect(errors.As(u.r.retry(context.Background(), s), &w)).To(BeTrue())
	g.Expect(w.RequeueAfter).To(BeNumerically(">", 0))
	g.Expect(s.obj.Status.Failed).To(BeEquivalentTo(1))
	g.Expect(s.obj.Status.LastHandledRetry).To(BeEmpty(), "one failed station is left to write")
	s = u.loaded(t) // the next pass
	s.obj.Annotations = map[string]string{fwv1.RetryAnnotation: "t1"}
	g.Expect(u.r.retry(context.Background(), s)).To(Succeed())
	g.Expect(s.obj.Status.Failed).To(BeZero())
	g.Expect(s.obj.Status.LastHandledRetry).To(Equal("t1"))
	g.Expect(u.events()).To(ConsistOf(ContainSubstring("2 failed stations, their attempts counted afresh; 1 more follow"),
		ContainSubstring("sent again to 1 failed stations")))
}
