package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// halt stops a rollout whose failures pass maxFailures, as
// strategy.failurePolicy says: Halt writes no further batch (Halted), Abort
// restores every station the rollout wrote (abortOnFailures). The halt
// follows from the spec and the failures, recomputed every pass: a Halted
// rollout whose failures are within maxFailures again (raised in Git, or
// failed stations retried) goes on. A halted rollout keeps counting its
// stations.
func (r *FirmwareRolloutReconciler) halt(ctx context.Context, s *rolloutScope) error {
	st := &s.obj.Status
	limit, err := rules.FailureLimit(s.obj.Spec.Strategy.MaxFailures, len(s.view.all))
	if err != nil || int(st.Failed) <= limit {
		if st.Phase == fwv1.PhaseHalted && failedAnalysis(s.obj) == nil {
			r.liftHalt(ctx, s, limit)
		}
		return nil
	}
	if s.obj.Spec.Strategy.FailurePolicy == fwv1.FailurePolicyAbort {
		return r.abortOnFailures(ctx, s, limit)
	}
	msg := haltMessage(s.obj, limit)
	if st.Phase != fwv1.PhaseHalted {
		now := metav1.NewTime(s.now)
		st.CompletionTime = &now
		r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonHalted, msg)
	}
	return &Stalling{Phase: fwv1.PhaseHalted, Reason: fwv1.ReasonHalted, Err: errors.New(msg), RequeueAfter: r.requeueWhileInFlight(s)}
}

// haltMessage is the message of a Halted rollout: its count is always
// status.failed (patchStatus writes it again from the status it patches).
func haltMessage(obj *fwv1.FirmwareRollout, limit int) string {
	return fmt.Sprintf("%d stations failed, more than maxFailures allows (%d); no further batch is written. "+
		"Raise maxFailures, retry the failed stations (kubectl stationfleet retry %s), abort to restore the previous firmware, or delete the rollout",
		obj.Status.Failed, limit, obj.Name)
}

// liftHalt lets a Halted rollout whose failures are within maxFailures
// again go on, and says why.
func (r *FirmwareRolloutReconciler) liftHalt(ctx context.Context, s *rolloutScope, limit int) {
	st := &s.obj.Status
	allowed := "no maxFailures is set"
	if mf := s.obj.Spec.Strategy.MaxFailures; mf != nil {
		allowed = fmt.Sprintf("maxFailures %s allows %d", mf.String(), limit)
	}
	msg := fmt.Sprintf("%d stations failed and %s: the halt is lifted and the rollout goes on", st.Failed, allowed)
	if s.retried > 0 {
		msg += fmt.Sprintf(" (%d failed stations were retried)", s.retried)
	}
	st.CompletionTime = nil
	r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonResumed, msg)
}

// abortOnFailures records, in status, the controller's decision to abort a
// rollout whose failures passed maxFailures under failurePolicy Abort, then
// aborts it as spec.abort would. The decision is status, not spec (Git owns
// spec): reconcileAbort reads it, so that a restarted controller keeps
// aborting, and nothing undoes it.
//
// The decision is written to status before any twin is restored: a pass
// that worked from a stale copy of the rollout (its status patch would be
// refused) must not restore twins whose abort nobody records, and a
// manager that stops half way must find the decision when it starts again,
// or the stations already restored would look unwritten and be written
// anew.
func (r *FirmwareRolloutReconciler) abortOnFailures(ctx context.Context, s *rolloutScope, limit int) error {
	return r.abortBySelf(ctx, s, fwv1.ReasonFailureLimitAborted,
		fmt.Sprintf("%d stations failed, more than maxFailures allows (%d): failurePolicy Abort restores the previous firmware on every station this rollout wrote",
			s.obj.Status.Failed, limit))
}

// abortBySelf records the controller's decision to abort (reason and
// message, in status) and aborts the rollout as spec.abort would: a failure
// limit passed under failurePolicy Abort, or an analysis that failed under
// onFailure Abort. See abortOnFailures for why the decision is written
// first.
func (r *FirmwareRolloutReconciler) abortBySelf(ctx context.Context, s *rolloutScope, reason, msg string) error {
	st := &s.obj.Status
	st.AbortReason = reason
	st.AbortMessage = msg
	switch err := r.Status().Patch(ctx, s.obj, statusPatch{base: s.base}); {
	case apierrors.IsConflict(err):
		// A stale copy: decide again, at once, on the fresh one.
		return &Waiting{Phase: s.reached(), Reason: reason, Message: st.AbortMessage, RequeueAfter: 10 * time.Millisecond}
	case err != nil:
		return fmt.Errorf("record the decision to abort: %w", err)
	}
	s.base = s.obj.DeepCopy()
	r.event(ctx, s.obj, corev1.EventTypeWarning, reason, st.AbortMessage)
	return r.reconcileAbort(ctx, s)
}

// abortRequested reports whether the rollout is to be aborted: spec.abort
// (Git) or the controller's own decision (status.abortReason).
func abortRequested(obj *fwv1.FirmwareRollout) bool {
	return obj.Spec.Abort || obj.Status.AbortReason != ""
}
