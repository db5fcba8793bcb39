package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// reconcileSteps walks the strategy's steps as far as it can in this pass:
// each step kind's function returns nil when its step is done, and the
// rollout advances to the next.
func (r *FirmwareRolloutReconciler) reconcileSteps(ctx context.Context, s *rolloutScope) error {
	st := &s.obj.Status
	steps := s.obj.Spec.Strategy.Steps
	if st.CurrentStep == 0 {
		if len(s.view.all) == 0 {
			return &Stalling{Phase: fwv1.PhasePending, Reason: fwv1.ReasonNoStations, RequeueAfter: jitter(r.Options.TargetResync),
				Err: fmt.Errorf("the selector matches no station in IoT Hub; checking again every %s", r.Options.TargetResync)}
		}
		t := metav1.NewTime(s.now)
		st.StartTime = &t
		r.advance(s)
	}
	for int(st.CurrentStep) <= len(steps) {
		if err := r.runStep(ctx, s, int(st.CurrentStep), steps[st.CurrentStep-1]); err != nil {
			return err
		}
		r.advance(s)
	}
	return nil
}

// runStep runs the step i (1-based) by its kind.
func (r *FirmwareRolloutReconciler) runStep(ctx context.Context, s *rolloutScope, i int, step fwv1.RolloutStep) error {
	switch {
	case step.Batch != nil:
		return r.stepBatch(ctx, s, i, step)
	case step.Analysis != nil:
		return r.stepAnalysis(ctx, s, i, step.Analysis)
	case step.Pause != nil && step.Pause.Duration != nil:
		return r.stepTimedPause(s, i, step.Pause.Duration.Duration)
	default:
		return r.stepIndefinitePause(ctx, s, i)
	}
}

// advance moves the rollout to its next step.
func (r *FirmwareRolloutReconciler) advance(s *rolloutScope) {
	st := &s.obj.Status
	steps := s.obj.Spec.Strategy.Steps
	if st.CurrentStep > 0 {
		// Each new step sees the stations that started matching since.
		r.forgetTargets(s.obj)
	}
	st.CurrentStep++
	t := metav1.NewTime(s.now)
	st.StepStartTime = &t
	// A resume given before the rollout reached an indefinite pause does
	// not skip it, nor rerun a failed analysis: only a new value resumes.
	if int(st.CurrentStep) <= len(steps) {
		if step := steps[st.CurrentStep-1]; (step.Pause != nil && step.Pause.Duration == nil) || step.Analysis != nil {
			st.LastHandledResume = s.obj.Annotations[fwv1.ResumeAnnotation]
		}
	}
}

// stepBatch writes the batch of step i, then waits until every station it
// wrote has an outcome.
func (r *FirmwareRolloutReconciler) stepBatch(ctx context.Context, s *rolloutScope, i int, step fwv1.RolloutStep) error {
	v, uid := s.view, s.uid()
	writtenHere := 0
	for _, st := range v.all {
		if st.Batch() == i && st.OwnerUID() == uid {
			writtenHere++
		}
	}
	size, err := rules.BatchSize(step.Batch, len(v.all), len(v.unwritten)+writtenHere)
	if err != nil {
		return &Stalling{Phase: fwv1.PhasePending, Reason: fwv1.ReasonInvalidStrategy, Err: err}
	}
	if need := size - writtenHere; need > 0 && len(v.unwritten) > 0 {
		if writtenHere == 0 {
			// Only a batch's start waits for a window; one started goes on.
			if err := r.waitForWindow(ctx, s, i); err != nil {
				return err
			}
			startBatch(s)
			r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonBatchStarted,
				fmt.Sprintf("step %d: writing the firmware into %d stations' twins", i, size))
		}
		s.phase = fwv1.PhaseProgressing
		var requeue time.Duration
		if need >= len(v.unwritten) {
			// The batch takes every station left: written as the
			// selection's pages arrive.
			requeue, err = r.streamBatch(ctx, s, i, size)
		} else {
			requeue, err = r.writeBatch(ctx, s, i, need)
		}
		r.updateStatus(ctx, s)
		plannedSize(&s.obj.Status.Batches, i, size)
		if err != nil {
			return err
		}
		return progressing(s, i, requeue)
	}
	if !batchDone(v, uid, i) {
		return progressing(s, i, r.requeueWhileInFlight(s))
	}
	st := s.obj.Status
	r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonBatchCompleted,
		fmt.Sprintf("step %d: every station of the batch has an outcome (%d updated, %d failed in all)", i, st.Updated, st.Failed))
	return nil
}

// stepTimedPause waits until d has passed since the step started.
func (r *FirmwareRolloutReconciler) stepTimedPause(s *rolloutScope, i int, d time.Duration) error {
	end := s.obj.Status.StepStartTime.Add(d)
	if !s.now.Before(end) {
		return nil
	}
	return &Waiting{Phase: fwv1.PhasePaused, Reason: fwv1.ReasonPaused, RequeueAfter: end.Sub(s.now) + time.Second,
		Message: fmt.Sprintf("step %d of %d: pause until %s", i, len(s.obj.Spec.Strategy.Steps), end.UTC().Format(time.RFC3339))}
}

// stepIndefinitePause waits until a new value of the resume annotation.
func (r *FirmwareRolloutReconciler) stepIndefinitePause(ctx context.Context, s *rolloutScope, i int) error {
	st := &s.obj.Status
	resume := s.obj.Annotations[fwv1.ResumeAnnotation]
	if resume == "" || resume == st.LastHandledResume {
		return &Waiting{Phase: fwv1.PhasePaused, Reason: fwv1.ReasonWaitingForResume, RequeueAfter: r.requeueWhileInFlight(s),
			Message: fmt.Sprintf("step %d of %d: paused until resumed (kubectl stationfleet resume %s)", i, len(s.obj.Spec.Strategy.Steps), s.obj.Name)}
	}
	st.LastHandledResume = resume
	r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonResumed, fmt.Sprintf("step %d: resumed", i))
	return nil
}

// complete ends a rollout whose steps are all done, once every station it
// wrote has an outcome.
func (r *FirmwareRolloutReconciler) complete(ctx context.Context, s *rolloutScope) error {
	st := &s.obj.Status
	steps := len(s.obj.Spec.Strategy.Steps)
	if st.InProgress > 0 {
		return progressing(s, steps, r.requeueWhileInFlight(s))
	}
	t := metav1.NewTime(s.now)
	st.CompletionTime = &t
	st.CurrentStep = int32(steps)
	msg := fmt.Sprintf("%d of %d stations updated, %d failed, %d skipped", st.Updated, st.Targets, st.Failed, st.Skipped)
	msg += notOnUpgradePath(st)
	if st.Pending > 0 {
		msg += fmt.Sprintf("; %d were not written because the steps ended before them", st.Pending)
	}
	r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonCompleted, msg)
	r.forget(s.obj)
	return &Finished{Phase: fwv1.PhaseCompleted, Reason: fwv1.ReasonCompleted, Message: msg}
}

// progressing is the outcome of a pass that waits on the stations of step.
// With stations baking it says how many, and until when the last one
// bakes.
func progressing(s *rolloutScope, step int, requeue time.Duration) *Waiting {
	obj := s.obj
	st := obj.Status
	inProgress := fmt.Sprintf("%d in progress", st.InProgress)
	if until := bakingUntil(s.view); st.Baking > 0 && !until.IsZero() {
		inProgress += fmt.Sprintf(" (%d baking until %s)", st.Baking, until.UTC().Format(time.RFC3339))
	}
	return &Waiting{Phase: fwv1.PhaseProgressing, Reason: fwv1.ReasonProgressing, RequeueAfter: requeue,
		Message: fmt.Sprintf("step %d of %d: %d updated, %s, %d failed, %d pending of %d stations",
			step, len(obj.Spec.Strategy.Steps), st.Updated, inProgress, st.Failed, st.Pending, st.Targets) + notOnUpgradePath(&st)}
}

// notOnUpgradePath is what a status message adds about the stations
// skipped as not on the upgrade path, "" when there are none.
func notOnUpgradePath(st *fwv1.FirmwareRolloutStatus) string {
	if st.SkippedNotOnUpgradePath == 0 {
		return ""
	}
	return fmt.Sprintf("; %d skipped as not on the upgrade path (firmware.upgradeFrom)", st.SkippedNotOnUpgradePath)
}

// bakingUntil is when the last baking station of v ends its bake time,
// zero when none bakes.
func bakingUntil(v *stationView) time.Time {
	var until time.Time
	if v == nil {
		return until
	}
	for _, o := range v.outs {
		if o.Baking() && o.Deadline().After(until) {
			until = o.Deadline()
		}
	}
	return until
}

// batchDone reports whether every station written by steps up to step has a
// final outcome.
func batchDone(v *stationView, uid string, step int) bool {
	for i, s := range v.all {
		if v.state(i) == fwv1.OutcomeInProgress && s.Batch() <= step && s.OwnerUID() == uid {
			return false
		}
	}
	return true
}

// requeueWhileInFlight is when to come back: when a written station could
// time out, or after StatusResync, whichever is sooner.
func (r *FirmwareRolloutReconciler) requeueWhileInFlight(s *rolloutScope) time.Duration {
	next := r.Options.StatusResync
	if s.view != nil {
		for _, o := range s.view.outs {
			if o.State() == fwv1.OutcomeInProgress {
				if d := o.Deadline().Sub(s.now) + time.Second; d > 0 && d < next {
					next = d
				}
			}
		}
	}
	return jitter(next)
}

// jitter spreads periodic requeues of many rollouts by up to 10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}
