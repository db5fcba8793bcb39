package controllers

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

func TestSetConditions(t *testing.T) {
	type want struct {
		ready                metav1.ConditionStatus
		readyReason          string
		reconciling, stalled bool
	}
	cases := []struct {
		name string
		prev []metav1.Condition
		s    summary
		want want
	}{
		{"progressing", nil, summary{phase: fwv1.PhaseProgressing, reason: fwv1.ReasonProgressing, message: "step 1"},
			want{metav1.ConditionFalse, fwv1.ReasonProgressing, true, false}},
		{"completed clears the others", []metav1.Condition{{Type: fwv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "X"}, {Type: fwv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "Y"}},
			summary{phase: fwv1.PhaseCompleted, message: "done"}, want{metav1.ConditionTrue, fwv1.ReasonCompleted, false, false}},
		{"halted is stalled", nil, summary{phase: fwv1.PhaseHalted, reason: fwv1.ReasonHalted, stalled: true},
			want{metav1.ConditionFalse, fwv1.ReasonHalted, false, true}},
		{"bad firmware is stalled", nil, summary{phase: fwv1.PhasePending, reason: fwv1.ReasonFirmwareInvalid, stalled: true},
			want{metav1.ConditionFalse, fwv1.ReasonFirmwareInvalid, false, true}},
		{"paused is neither", []metav1.Condition{{Type: fwv1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "X"}},
			summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonPaused}, want{metav1.ConditionFalse, fwv1.ReasonPaused, false, false}},
		{"aborted is neither", nil, summary{phase: fwv1.PhaseAborted, reason: fwv1.ReasonAborted},
			want{metav1.ConditionFalse, fwv1.ReasonAborted, false, false}},
		{"aborting reconciles", nil, summary{phase: fwv1.PhaseAborting, reason: fwv1.ReasonAborting},
			want{metav1.ConditionFalse, fwv1.ReasonAborting, true, false}},
		{"a transient error reconciles", nil, summary{phase: fwv1.PhaseProgressing, err: errors.New("iothub: 503")},
			want{metav1.ConditionFalse, fwv1.ReasonRegistryError, true, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			conds := append([]metav1.Condition(nil), tc.prev...)
			setConditions(&conds, 7, tc.s)
			ready := meta.FindStatusCondition(conds, fwv1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(tc.want.ready))
			g.Expect(ready.Reason).To(Equal(tc.want.readyReason))
			g.Expect(ready.ObservedGeneration).To(BeNumerically("==", 7))
			g.Expect(meta.IsStatusConditionTrue(conds, fwv1.ConditionReconciling)).To(Equal(tc.want.reconciling))
			g.Expect(meta.FindStatusCondition(conds, fwv1.ConditionReconciling) != nil).To(Equal(tc.want.reconciling), "Reconciling present only while true")
			g.Expect(meta.FindStatusCondition(conds, fwv1.ConditionStalled) != nil).To(Equal(tc.want.stalled), "Stalled present only while true")
		})
	}
}
