package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// phases is the table of contents of a pass, in order. Each phase either
// lets the next one run or ends the pass (see phase).
func (r *FirmwareRolloutReconciler) phases() []phase {
	return []phase{
		r.reconcileDelete, // a rollout being deleted releases its stations and goes
		r.ensureFinalizer, // before any twin is written
		r.takeReports,     // stations that reported to another process's CUPS server
		r.finished,        // Completed and Aborted are final
		r.reconcileAbort,  // spec.abort restores every station written
		r.preflight,       // the firmware is checked before the first write
		r.loadStations,    // the station view
		r.releaseOffPath,  // a station CUPS refused as off the upgrade path is put back as it was
		r.markFailed,      // a Failed outcome is recorded in its twin, once, before it is counted
		r.countStations,   // status from the station view
		r.retry,           // the retry annotation: failed stations are sent the update again
		r.halt,            // too many failures: halt or abort, as failurePolicy says
		r.checkWindows,    // batch windows that do not parse stall before any write
		r.checkAnalyses,   // analysis conditions that do not compile stall before any write
		r.pause,           // spec.paused: no further write
		r.reconcileSteps,  // the strategy's steps, as far as they go
		r.complete,        // every step done: complete once every station has an outcome
	}
}

// ensureFinalizer stores the finalizer before any twin is written, so that
// a deletion always gets the chance to release them.
func (r *FirmwareRolloutReconciler) ensureFinalizer(ctx context.Context, s *rolloutScope) error {
	if controllerutil.ContainsFinalizer(s.obj, fwv1.Finalizer) {
		return nil
	}
	patchBase := s.obj.DeepCopy()
	controllerutil.AddFinalizer(s.obj, fwv1.Finalizer)
	if err := r.Patch(ctx, s.obj, client.MergeFrom(patchBase)); err != nil {
		return fmt.Errorf("add finalizer: %w", err)
	}
	s.base.Finalizers = s.obj.Finalizers
	s.base.ResourceVersion = s.obj.ResourceVersion
	return nil
}

// finished ends the pass of a Completed or Aborted rollout: its status is
// its history and needs no work.
func (r *FirmwareRolloutReconciler) finished(ctx context.Context, s *rolloutScope) error {
	switch s.obj.Status.Phase {
	case fwv1.PhaseCompleted, fwv1.PhaseAborted:
		r.refuseRetry(ctx, s)
		reason, msg := readyCondition(s.obj)
		return &Finished{Phase: s.obj.Status.Phase, Reason: reason, Message: msg, Stalled: s.obj.Status.AbortReason != ""}
	}
	return nil
}

// countStations writes the counts, batch summaries and failure list into
// status, and announces what is new; then a failure markFailed could not
// record ends the pass (retried with backoff).
func (r *FirmwareRolloutReconciler) countStations(ctx context.Context, s *rolloutScope) error {
	r.updateStatus(ctx, s)
	return s.markErr
}

// pause ends the pass while spec.paused is true: no twin is written.
func (r *FirmwareRolloutReconciler) pause(ctx context.Context, s *rolloutScope) error {
	if !s.obj.Spec.Paused {
		return nil
	}
	msg := fmt.Sprintf("spec.paused is true: no twin is written until it is false (step %d of %d)", s.obj.Status.CurrentStep, len(s.obj.Spec.Strategy.Steps))
	if s.obj.Status.Phase != fwv1.PhasePaused {
		r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonPaused, msg)
	}
	return &Waiting{Phase: fwv1.PhasePaused, Reason: fwv1.ReasonPaused, Message: msg, RequeueAfter: r.requeueWhileInFlight(s)}
}

// readyCondition returns the reason and message of the rollout's Ready
// condition: a rollout in a phase that needs no work keeps them.
func readyCondition(obj *fwv1.FirmwareRollout) (string, string) {
	if c := meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady); c != nil {
		return c.Reason, c.Message
	}
	return "", ""
}
