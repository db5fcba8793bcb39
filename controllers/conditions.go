package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// setConditions writes the kstatus conditions for s into conds: Ready always;
// Reconciling only while the rollout is making progress; Stalled only while
// it cannot. It is a pure function of its inputs.
func setConditions(conds *[]metav1.Condition, generation int64, s summary) {
	set := func(t string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: t, Status: st, Reason: reason, Message: msg, ObservedGeneration: generation,
		})
	}
	reason, msg := s.reason, s.message
	if reason == "" {
		reason = string(s.phase)
	}

	switch {
	case s.phase == fwv1.PhaseCompleted:
		set(fwv1.ConditionReady, metav1.ConditionTrue, fwv1.ReasonCompleted, msg)
		meta.RemoveStatusCondition(conds, fwv1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, fwv1.ConditionStalled)
	case s.stalled:
		set(fwv1.ConditionReady, metav1.ConditionFalse, reason, msg)
		set(fwv1.ConditionStalled, metav1.ConditionTrue, reason, msg)
		meta.RemoveStatusCondition(conds, fwv1.ConditionReconciling)
	case s.err != nil:
		errMsg := "retrying after an error: " + s.err.Error()
		set(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonRegistryError, errMsg)
		set(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonRegistryError, errMsg)
		meta.RemoveStatusCondition(conds, fwv1.ConditionStalled)
	case s.phase == fwv1.PhasePaused || s.phase == fwv1.PhaseAborted:
		// Waiting for a person, but not stuck: neither reconciling nor stalled.
		set(fwv1.ConditionReady, metav1.ConditionFalse, reason, msg)
		meta.RemoveStatusCondition(conds, fwv1.ConditionReconciling)
		meta.RemoveStatusCondition(conds, fwv1.ConditionStalled)
	default: // Pending, Progressing, Aborting
		set(fwv1.ConditionReady, metav1.ConditionFalse, reason, msg)
		set(fwv1.ConditionReconciling, metav1.ConditionTrue, reason, msg)
		meta.RemoveStatusCondition(conds, fwv1.ConditionStalled)
	}
}
