package controllers

import (
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// A phase ends the pass early by returning one of the three outcomes below;
// any other error is transient (IoT Hub or the API server failed) and is
// retried with backoff. One deferred function (summarize, then the status
// patch) turns them into the phase, the conditions and the requeue: no
// phase sets a condition itself.

// Waiting ends a pass while the rollout waits for something that needs no
// person: stations to report, a timed pause, more of a batch to write, or a
// person's resume in a pause step. The rollout is looked at again after
// RequeueAfter (or when a station reports).
type Waiting struct {
	Phase        fwv1.RolloutPhase
	Reason       string
	Message      string
	RequeueAfter time.Duration
}

func (w *Waiting) Error() string { return fmt.Sprintf("waiting (%s): %s", w.Reason, w.Message) }

// Stalling ends a pass in a state only a person can end: bad firmware, a
// halted rollout, a selector that matches nothing. Err's message is the
// condition's message. With RequeueAfter the rollout is checked again then
// (a blob uploaded late); without, only a change of the rollout wakes it,
// and the reconcile ends with a terminal error.
type Stalling struct {
	Phase        fwv1.RolloutPhase
	Reason       string
	Err          error
	RequeueAfter time.Duration
}

func (s *Stalling) Error() string { return s.Err.Error() }

// Unwrap returns the cause.
func (s *Stalling) Unwrap() error { return s.Err }

// Finished ends a pass in a final phase: Completed or Aborted. Stalled
// marks a final phase that is a failure no person chose (the controller
// aborted the rollout by itself under failurePolicy Abort): kstatus then
// reports it Stalled, and Argo CD and Flux show it failed.
type Finished struct {
	Phase   fwv1.RolloutPhase
	Reason  string
	Message string
	Stalled bool
}

func (f *Finished) Error() string { return fmt.Sprintf("finished (%s): %s", f.Phase, f.Message) }

// errObjectGone ends the pass of a rollout whose deletion finished: there
// is no status left to patch.
var errObjectGone = errors.New("the rollout is gone")

// summary is what a pass found, from which the kstatus conditions are
// derived in one place (setConditions).
type summary struct {
	phase   fwv1.RolloutPhase
	reason  string
	message string
	// stalled marks a state only a person can end (bad firmware, halted).
	stalled bool
	// err is a transient error the pass returned, if any.
	err error
}

// summarize turns the error that ended the pass into its summary, the
// result and the error for controller-runtime. phase is the phase the pass
// had reached, shown with a transient error.
func summarize(err error, phase fwv1.RolloutPhase) (summary, reconcile.Result, error) {
	var (
		w *Waiting
		s *Stalling
		f *Finished
	)
	switch {
	case err == nil:
		return summary{phase: phase}, reconcile.Result{}, nil
	case errors.As(err, &f):
		return summary{phase: f.Phase, reason: f.Reason, message: f.Message, stalled: f.Stalled}, reconcile.Result{}, nil
	case errors.As(err, &w):
		return summary{phase: w.Phase, reason: w.Reason, message: w.Message}, reconcile.Result{RequeueAfter: w.RequeueAfter}, nil
	case errors.As(err, &s):
		sum := summary{phase: s.Phase, reason: s.Reason, message: s.Err.Error(), stalled: true}
		if s.RequeueAfter > 0 {
			return sum, reconcile.Result{RequeueAfter: s.RequeueAfter}, nil
		}
		return sum, reconcile.Result{}, reconcile.TerminalError(s.Err)
	default:
		return summary{phase: phase, err: err}, reconcile.Result{}, err
	}
}
