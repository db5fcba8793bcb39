package controllers

import (
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

var ctrlTerminal = reconcileTerminal()

func TestUnitSummarize(t *testing.T) {
	g := NewWithT(t)
	sum, res, err := summarize(&Waiting{Phase: fwv1.PhasePaused, Reason: fwv1.ReasonPaused, Message: "m", RequeueAfter: time.Minute}, fwv1.PhasePending)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(Equal(time.Minute))
	g.Expect(sum).To(Equal(summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonPaused, message: "m"}))

	sum, res, err = summarize(&Stalling{Phase: fwv1.PhaseHalted, Reason: fwv1.ReasonHalted, Err: errors.New("too many"), RequeueAfter: time.Second}, "")
	g.Expect(err).NotTo(HaveOccurred(), "a stall that is checked again is not an error")
	g.Expect(res.RequeueAfter).To(Equal(time.Second))
	g.Expect(sum.stalled).To(BeTrue())
	g.Expect(sum.message).To(Equal("too many"))

	_, _, err = summarize(&Stalling{Phase: fwv1.PhasePending, Reason: fwv1.ReasonInvalidStrategy, Err: errors.New("bad batch")}, "")
	g.Expect(errors.Is(err, ctrlTerminal)).To(BeTrue(), "a stall nothing but a change of the rollout ends is terminal")

	sum, _, err = summarize(&Finished{Phase: fwv1.PhaseCompleted, Reason: fwv1.ReasonCompleted, Message: "done"}, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sum.phase).To(Equal(fwv1.PhaseCompleted))

	boom := errors.New("iothub: 503")
	sum, _, err = summarize(fmt.Errorf("write twin: %w", boom), fwv1.PhaseProgressing)
	g.Expect(err).To(MatchError(boom))
	g.Expect(sum.phase).To(Equal(fwv1.PhaseProgressing), "a transient error shows the phase the pass reached")
	g.Expect(sum.err).To(HaveOccurred())
}

func TestUnitComputeStatus(t *testing.T) {
	g := NewWithT(t)
	written := unitNow.Add(-time.Hour)
	done := metav1.NewTime(unitNow.Add(-10 * time.Minute))
	v := testView(
		[]rules.Station{
			{ID: "A", OwnerUID: "u", Batch: 1, WrittenAt: written},
			{ID: "B", OwnerUID: "u", Batch: 1, WrittenAt: written.Add(time.Minute)},
			{ID: "C", OwnerUID: "u", Batch: 2, WrittenAt: written},
			{ID: "D", OwnerUID: "u", Batch: 2, WrittenAt: written},
			{ID: "E"}, {ID: "F", OwnerUID: "other"},
		},
		[]rules.Outcome{
			{State: fwv1.OutcomeUpdated}, {State: fwv1.OutcomeFailed, Reason: string(fwv1.FailureTimedOut), Message: "late"},
			{State: fwv1.OutcomeInProgress}, {State: fwv1.OutcomeUpdated},
			{State: fwv1.OutcomePending}, {State: fwv1.OutcomeSkipped},
		},
	)
	prev := fwv1.FirmwareRolloutStatus{Batches: []fwv1.BatchStatus{{Step: 1, Size: 2, CompletionTime: &done}}}
	st, news := computeStatus(prev, v, unitNow)
	g.Expect([]int32{st.Targets, st.Pending, st.InProgress, st.Updated, st.Failed, st.Skipped}).To(Equal([]int32{6, 1, 1, 2, 1, 1}))
	g.Expect(st.Progress).To(Equal("2/6"))
	g.Expect(st.Batches).To(HaveLen(2))
	g.Expect(st.Batches[0].CompletionTime).To(Equal(&done), "a batch keeps its completion time")
	g.Expect(st.Batches[0].StartTime.Time).To(Equal(written), "a batch started with its first write")
	g.Expect(st.Batches[1].CompletionTime).To(BeNil(), "a batch with a station in progress is not complete")
	g.Expect(news.batchesDone).To(BeEmpty())
	g.Expect(news.failed).To(HaveLen(1))
	g.Expect(news.failed[0].DeviceID).To(Equal("B"))
	g.Expect(st.Failures).To(HaveLen(1))
	g.Expect(prev.Targets).To(BeZero(), "the previous status is not changed")

	// C reports: batch 2 completes now, once.
	v.outs[2] = rules.PackOutcome(rules.Outcome{State: fwv1.OutcomeUpdated})
	v.setFailed(1, string(fwv1.FailureTimedOut)) // markFailed recorded it
	st2, news := computeStatus(st, v, unitNow.Add(time.Minute))
	g.Expect(st2.Batches[1].CompletionTime.Time).To(Equal(unitNow.Add(time.Minute)))
	g.Expect(news.batchesDone).To(Equal([]time.Duration{time.Hour + time.Minute}))
	g.Expect(news.failed).To(BeEmpty(), "a failure is new once")
	g.Expect(st2.Failures[0].Time.Time).To(Equal(unitNow), "the list keeps when the failure was first noticed")
	_, news = computeStatus(st2, v, unitNow.Add(2*time.Minute))
	g.Expect(news.batchesDone).To(BeEmpty())
}

// TestUnitBatchCompletionAfterLostPatch: the pass that saw batch 1 complete
// and wrote batch 2 lost its status patch (a conflict); the next pass must
// not say batch 1 completed after batch 2 started.
func TestUnitBatchCompletionAfterLostPatch(t *testing.T) {
	g := NewWithT(t)
	written1, written2 := unitNow.Add(-time.Hour), unitNow.Add(-5*time.Second)
	v := testView(
		[]rules.Station{
			{ID: "A", OwnerUID: "u", Batch: 1, WrittenAt: written1},
			{ID: "B", OwnerUID: "u", Batch: 2, WrittenAt: written2},
		},
		[]rules.Outcome{{State: fwv1.OutcomeUpdated}, {State: fwv1.OutcomeInProgress}},
	)
	prev := fwv1.FirmwareRolloutStatus{Batches: []fwv1.BatchStatus{{Step: 1, Size: 1}}}
	st, news := computeStatus(prev, v, unitNow)
	g.Expect(st.Batches[0].CompletionTime.Time).To(Equal(written2), "batch 1 completed no later than batch 2 started")
	g.Expect(news.batchesDone).To(Equal([]time.Duration{written2.Sub(written1)}))
}
