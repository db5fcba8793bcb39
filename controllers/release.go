package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// What happens to the twins a rollout owns when it lets them go
// (DESIGN.md section 5; the README's table of actions):
//
//	abort     every station gets its previous firmware fields back
//	delete    Updated stations keep the new firmware; every other station
//	          gets its previous firmware fields back, so that no station is
//	          left asking for an update that nothing tracks
//	takeover  a later rollout writes its own firmware (and ownership) over a
//	          station of a Completed rollout
//
// Abort and takeover keep, in the same patch, what the rollout counted for
// the station in the twin's history (see history.go).

// releaseMode says what releasing a station does to its firmware fields.
type releaseMode int

const (
	// releaseAbort restores every station's previous firmware.
	releaseAbort releaseMode = iota
	// releaseDelete restores the previous firmware of stations that did
	// not reach the rollout's package, and keeps it on the others.
	releaseDelete
)

// claimPatch is the patch with which a rollout writes its firmware fw and
// ownership own into the twin t. When t is owned by another rollout that
// no longer holds it (Completed, or being deleted), what that rollout
// counted for the station goes into the twin's history in the same patch.
func claimPatch(t *twin.Twin, fw twin.Firmware, own twin.Ownership, byUID map[string]*fwv1.FirmwareRollout, now time.Time) *twin.Patch {
	mine := own
	mine.Previous = t.CUPS.Firmware
	p := twin.FirmwarePatch(fw, &mine)
	if o := t.Ownership; o != nil && o.UID != own.UID {
		if prior := byUID[o.UID]; prior != nil {
			p.SetHistory(twin.WithHistory(t.History, rules.HistoryEntry(t, prior, now, false)))
		}
	}
	return p
}

// releasePatch is the patch that releases the station of t from obj.
func releasePatch(t *twin.Twin, obj *fwv1.FirmwareRollout, mode releaseMode, now time.Time) *twin.Patch {
	if mode == releaseAbort {
		p := twin.FirmwarePatch(t.Ownership.Previous, nil)
		return p.SetHistory(twin.WithHistory(t.History, rules.HistoryEntry(t, obj, now, true)))
	}
	// A station that runs the rollout's package keeps it: restoring the
	// previous fields would make CUPS send it the old firmware.
	if t.Observation != nil && t.Observation.Package == obj.Spec.Firmware.Package {
		return twin.OwnershipPatch(nil)
	}
	return twin.FirmwarePatch(t.Ownership.Previous, nil)
}

// reconcileAbort restores, on every station this rollout wrote, the four
// firmware fields it had before, and releases it: when spec.abort is true,
// or when the controller decided to abort (status.abortReason, failurePolicy
// Abort), which ends Aborted with that reason and Stalled.
func (r *FirmwareRolloutReconciler) reconcileAbort(ctx context.Context, s *rolloutScope) error {
	obj := s.obj
	if !abortRequested(obj) {
		return nil
	}
	auto := obj.Status.AbortReason != ""
	if obj.Status.Phase != fwv1.PhaseAborting && !auto {
		r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonAborting, "abort requested: restoring the previous firmware on every station this rollout wrote")
	}
	r.refuseRetry(ctx, s)
	s.phase = fwv1.PhaseAborting
	restored, err := r.releaseOwned(ctx, s, releaseAbort)
	if err != nil {
		return err
	}
	now := metav1.NewTime(s.now)
	obj.Status.CompletionTime = &now
	obj.Status.InProgress = 0
	msg := fmt.Sprintf("aborted: the previous firmware is restored on %d stations", restored)
	r.event(ctx, obj, corev1.EventTypeNormal, fwv1.ReasonAborted, msg)
	r.forget(obj)
	if auto {
		return &Finished{Phase: fwv1.PhaseAborted, Reason: obj.Status.AbortReason, Message: obj.Status.AbortMessage + "; " + msg, Stalled: true}
	}
	return &Finished{Phase: fwv1.PhaseAborted, Reason: fwv1.ReasonAborted, Message: msg}
}

// reconcileDelete releases every station a rollout being deleted owns
// (Updated stations keep the new firmware, the others get their previous
// firmware back) and then removes the finalizer; the rollout is then gone.
func (r *FirmwareRolloutReconciler) reconcileDelete(ctx context.Context, s *rolloutScope) error {
	obj := s.obj
	if obj.DeletionTimestamp.IsZero() {
		return nil
	}
	if !controllerutil.ContainsFinalizer(obj, fwv1.Finalizer) {
		return errObjectGone
	}
	if _, err := r.releaseOwned(ctx, s, releaseDelete); err != nil {
		return err
	}
	patchBase := obj.DeepCopy()
	controllerutil.RemoveFinalizer(obj, fwv1.Finalizer)
	if err := r.Patch(ctx, obj, client.MergeFrom(patchBase)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	r.forget(obj)
	rolloutStations.forget(obj)
	return errObjectGone
}

// releaseOwned removes this rollout's ownership record from every station
// that holds it and restores firmware fields as mode says. It returns how
// many stations it changed.
func (r *FirmwareRolloutReconciler) releaseOwned(ctx context.Context, s *rolloutScope, mode releaseMode) (int, error) {
	obj, uid := s.obj, s.uid()
	var ids []string
	if err := r.Registry.Query(ctx, twin.Selector{OwnerUID: uid}, func(page []*twin.Twin) error {
		for _, t := range page {
			ids = append(ids, t.DeviceID)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("query stations owned by %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	now := s.now
	changed := make([]bool, len(ids))
	errs := fanOut(len(ids), r.Options.WriteConcurrency, func(i int) error {
		_, err := r.Registry.Update(ctx, ids[i], func(t *twin.Twin) (*twin.Patch, error) {
			changed[i] = t.Ownership != nil && t.Ownership.UID == uid
			if !changed[i] {
				return nil, nil
			}
			return releasePatch(t, obj, mode, now), nil
		})
		if err != nil {
			changed[i] = false
			if !errors.Is(err, twin.ErrNotFound) {
				return fmt.Errorf("release twin %s: %w", ids[i], err)
			}
		}
		return nil
	})
	count := 0
	for i, c := range changed {
		if c {
			count++
			if r.Cache != nil {
				r.Cache.Invalidate(ids[i])
			}
		}
	}
	return count, kerrors.NewAggregate(errs)
}
