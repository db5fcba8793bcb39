package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// progressPatcher patches a rollout's status from the side while its batch
// is written: the writer hands it the status as it stands (offer), and it
// patches the latest one it was given, one patch at a time, never holding
// up the writes. Each patch is conditional on the resourceVersion the
// previous one gave (statusPatch); on any error it stops, and the pass's
// own patch decides (a conflict there redoes the pass on a fresh copy).
type progressPatcher struct {
	next chan *fwv1.FirmwareRollout // the latest status to patch
	done chan struct{}
	// base is the object as the last successful patch left it (the pass's
	// base until then); patched says whether there was one.
	base    *fwv1.FirmwareRollout
	patched bool
}

// startProgress starts the progress patcher of the pass s.
func (r *FirmwareRolloutReconciler) startProgress(ctx context.Context, s *rolloutScope) *progressPatcher {
	p := &progressPatcher{next: make(chan *fwv1.FirmwareRollout, 1), done: make(chan struct{}), base: s.base.DeepCopy()}
	go func() {
		defer close(p.done)
		failed := false
		for obj := range p.next {
			if failed {
				continue
			}
			if err := r.Status().Patch(ctx, obj, statusPatch{base: p.base}); err != nil {
				ctrl.LoggerFrom(ctx).V(1).Info("progress status patch failed; the pass's own patch will write status", "error", err.Error())
				failed = true
				continue
			}
			p.base, p.patched = obj, true
		}
	}()
	return p
}

// offer hands the patcher the latest status, replacing one it has not
// started to patch yet. Only one goroutine offers.
func (p *progressPatcher) offer(obj *fwv1.FirmwareRollout) {
	select {
	case p.next <- obj:
	default:
		select {
		case <-p.next:
		default:
		}
		p.next <- obj
	}
}

// stopProgress waits for the patcher's last patch and makes the pass's
// status patch start from what it wrote.
func (r *FirmwareRolloutReconciler) stopProgress(s *rolloutScope, p *progressPatcher) {
	close(p.next)
	<-p.done
	if !p.patched {
		return
	}
	s.base.ResourceVersion = p.base.ResourceVersion
	s.base.Status = *p.base.Status.DeepCopy()
	s.obj.ResourceVersion = p.base.ResourceVersion
}

// progressSnapshot is the rollout as the pass would patch it if it ended
// now, still writing the batch of step (planned size): its counts and
// batch summaries from the view, phase Progressing.
func (r *FirmwareRolloutReconciler) progressSnapshot(ctx context.Context, s *rolloutScope, step, size int) *fwv1.FirmwareRollout {
	r.updateStatus(ctx, s)
	plannedSize(&s.obj.Status.Batches, step, size)
	obj := s.obj.DeepCopy()
	sum, _, _ := summarize(progressing(s, step, 0), fwv1.PhaseProgressing)
	obj.Status.Phase = sum.phase
	setConditions(&obj.Status.Conditions, obj.Generation, sum)
	keepNextWindow(&obj.Status, sum)
	obj.Status.ObservedGeneration = obj.Generation
	return obj
}

// rolloutChanged reports whether the rollout of the pass s changed its spec
// since the pass read it, or is being deleted, as the cache has it now (no
// API request). A rollout gone reads as changed; another error as
// unchanged: the pass's own patch finds out.
func (r *FirmwareRolloutReconciler) rolloutChanged(ctx context.Context, s *rolloutScope) bool {
	var cur fwv1.FirmwareRollout
	if err := r.Get(ctx, client.ObjectKeyFromObject(s.obj), &cur); err != nil {
		return apierrors.IsNotFound(err)
	}
	return cur.UID != s.obj.UID || cur.Generation != s.obj.Generation || cur.DeletionTimestamp != nil
}
