package controllers

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
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

// checkStop reports whether a streamed pass must stop taking stations:
// the rollout's failures, as its last progress snapshot counted them, pass
// maxFailures (the next pass halts or aborts it), or it changed its spec
// since the pass read it, or is being deleted, as the cache has it now (no
// API request). A rollout gone reads as changed; another error as
// unchanged: the pass's own patch finds out.
func (r *FirmwareRolloutReconciler) checkStop(ctx context.Context, s *rolloutScope) bool {
	if limit, err := rules.FailureLimit(s.obj.Spec.Strategy.MaxFailures, len(s.view.all)); err == nil && int(s.obj.Status.Failed) > limit {
		return true
	}
	var cur fwv1.FirmwareRollout
	if err := r.Get(ctx, client.ObjectKeyFromObject(s.obj), &cur); err != nil {
		return apierrors.IsNotFound(err)
	}
	return cur.UID != s.obj.UID || cur.Generation != s.obj.Generation || cur.DeletionTimestamp != nil
}

// applyReports reads again the twins of the stations the CUPS server
// reported on while the pass writes (at most maxReportsPerApply), and lays
// them over the view and the owned view, so that a long pass's progress
// shows stations updating and failing, not only being written. A station
// the pass has yet to write (Pending: a writer may hold it), one not in the
// view, or one whose read fails is left marked for the next pass's read.
// A station found Failed here is counted so at once (checkStop needs the
// count) and its failure recorded in its twin by the next pass's
// markFailed, before anything else is decided on it.
func (b *batchStream) applyReports(ctx context.Context) {
	r, s, v := b.r, b.s, b.s.view
	key, uid := s.key(), s.uid()
	ids := r.Wake.drain(key)
	for n, id := range ids {
		i := v.find(uid, id)
		if n >= maxReportsPerApply || i < 0 || v.state(i) == fwv1.OutcomePending {
			r.Wake.mark(key, id)
			continue
		}
		t, err := r.Registry.Get(ctx, id)
		if err != nil {
			r.Wake.mark(key, id)
			continue
		}
		st := rules.NewStation(t, uid)
		v.set(i, st, rules.Classify(st, uid, s.active, s.params()))
		if st.OwnerUID == uid {
			r.rememberOwned(s.obj, v.all[i])
		} else {
			r.forgetOwned(s.obj, id)
		}
	}
}
