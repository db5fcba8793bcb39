package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// retry handles a new value of the retry annotation (`kubectl stationfleet
// retry`, the Argo CD action): every station the rollout counts Failed, and
// still owns, is sent the update again with its attempts counted afresh.
// Each is one ETag-guarded twin write (retryStation), at most
// MaxWritesPerReconcile per pass as for a batch. The failures drop, and
// halt, which runs next, lets a Halted rollout go on. A station another
// rollout owns by now is not touched. The value counts as handled once no
// failed station is left to write; a pass that fails part way leaves it
// unhandled, so the next pass retries the stations still Failed.
func (r *FirmwareRolloutReconciler) retry(ctx context.Context, s *rolloutScope) error {
	req := s.obj.Annotations[fwv1.RetryAnnotation]
	if req == "" || req == s.obj.Status.LastHandledRetry {
		return nil
	}
	if handled, err := r.retryHandled(ctx, s, req); err != nil || handled {
		return err
	}
	var todo []int
	for i, st := range s.view.all {
		if s.view.state(i) == fwv1.OutcomeFailed && st.OwnerUID() == s.uid() {
			todo = append(todo, i)
		}
	}
	more := max(len(todo)-r.Options.MaxWritesPerReconcile, 0)
	todo = todo[:len(todo)-more]
	left, err := r.retryStations(ctx, s, todo)
	r.updateStatus(ctx, s)
	if err != nil {
		return err
	}
	r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonRetried, retryMessage(s.retried, left, more))
	if more > 0 {
		return &Waiting{Phase: s.reached(), Reason: fwv1.ReasonRetried, RequeueAfter: time.Millisecond,
			Message: fmt.Sprintf("retry: %d more failed stations to send the update again", more)}
	}
	s.obj.Status.LastHandledRetry = req
	return nil
}

// retryStations retries the stations at the positions todo of the view and
// lays the twins as written over it. It returns how many were left alone
// because another rollout owns them by now.
func (r *FirmwareRolloutReconciler) retryStations(ctx context.Context, s *rolloutScope, todo []int) (int, error) {
	v, uid := s.view, s.uid()
	now := s.now.UTC().Truncate(time.Second)
	fresh := make([]*twin.Twin, len(todo))
	errs := fanOut(len(todo), r.Options.WriteConcurrency, func(j int) error {
		t, err := r.retryStation(ctx, v.all[todo[j]].ID, uid, now)
		if err != nil && !errors.Is(err, twin.ErrNotFound) {
			return fmt.Errorf("retry station %s: %w", v.all[todo[j]].ID, err)
		}
		fresh[j] = t
		return nil
	})
	left := 0
	for j, i := range todo {
		if fresh[j] == nil {
			continue // not written (an error, or the twin is gone): counted as before
		}
		st := rules.NewStation(fresh[j], uid)
		v.set(i, st, rules.Classify(st, uid, s.active, s.params()))
		if st.OwnerUID != uid {
			left++
			continue
		}
		r.rememberOwned(s.obj, v.all[i])
		if r.Cache != nil {
			r.Cache.Invalidate(st.ID)
		}
		s.retried++
	}
	if left > 0 {
		r.forceFullRead(s.obj) // the owned view still holds them
	}
	return left, kerrors.NewAggregate(errs)
}

// retryHandled reports whether the API server's copy of the rollout
// already handled the retry req: the cached copy may be older than the
// status the last pass wrote, and a retry is handled once (one uncached
// read per retry request).
func (r *FirmwareRolloutReconciler) retryHandled(ctx context.Context, s *rolloutScope, req string) (bool, error) {
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	fresh := &fwv1.FirmwareRollout{}
	if err := reader.Get(ctx, client.ObjectKeyFromObject(s.obj), fresh); err != nil {
		return false, fmt.Errorf("read the rollout before a retry: %w", err)
	}
	return fresh.Status.LastHandledRetry == req, nil
}

// retryStation sends the station id the update of the rollout uid again, in
// one write conditional on the twin's ETag: the failure mark is cleared,
// writtenAt is now (a fresh progress deadline), and the CUPS server's
// counts for the rollout (updates served, refusal) are forgotten, so that
// its attempts are counted afresh. It returns the twin as written, or as
// read when another rollout owns the station (then nothing is written).
func (r *FirmwareRolloutReconciler) retryStation(ctx context.Context, id, uid string, now time.Time) (*twin.Twin, error) {
	return r.Registry.Update(ctx, id, func(t *twin.Twin) (*twin.Patch, error) {
		if t.Ownership == nil || t.Ownership.UID != uid {
			return nil, nil
		}
		own := *t.Ownership
		own.Failed, own.WrittenAt = "", now
		var obs *twin.Observation
		if t.Observation != nil {
			o := *t.Observation
			o.Keys = slices.Clone(o.Keys)
			if o.ForgetRollout(uid) {
				obs = &o
			}
		}
		return twin.RetryPatch(t.Ownership, own, obs), nil
	})
}

// retryMessage is the Event of a retry pass: retried stations sent the
// update again, left owned by another rollout, more still to write.
func retryMessage(retried, left, more int) string {
	msg := "retry requested: no station has failed, so none is sent the update again"
	if retried > 0 {
		msg = fmt.Sprintf("retry requested: the update is sent again to %d failed stations, their attempts counted afresh", retried)
	}
	if left > 0 {
		msg += fmt.Sprintf("; %d failed stations are owned by another rollout by now and were left alone", left)
	}
	if more > 0 {
		msg += fmt.Sprintf("; %d more follow", more)
	}
	return msg
}

// refuseRetry answers a new value of the retry annotation on a rollout that
// is Completed, Aborted or aborting, which cannot be retried: one Warning
// Event that says what to do instead, and the value counts as handled.
func (r *FirmwareRolloutReconciler) refuseRetry(ctx context.Context, s *rolloutScope) {
	req := s.obj.Annotations[fwv1.RetryAnnotation]
	if req == "" || req == s.obj.Status.LastHandledRetry {
		return
	}
	s.obj.Status.LastHandledRetry = req
	what := "is Completed"
	if abortRequested(s.obj) || s.obj.Status.Phase == fwv1.PhaseAborted {
		what = "is aborted"
	}
	r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonRetryRefused,
		fmt.Sprintf("retry requested, but the rollout %s: nothing is sent again. To update its failed stations, roll the firmware out to them with a new FirmwareRollout", what))
}
