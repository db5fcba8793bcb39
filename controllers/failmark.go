package controllers

import (
	"context"
	"fmt"

	kerrors "k8s.io/apimachinery/pkg/util/errors"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// markFailed records, in the ownership record of every station this
// rollout counts Failed for the first time, the failure reason: the
// outcome is then final, and the CUPS server, which reads only the twin,
// stops sending the update to the station while the rollout owns it
// (DESIGN.md section 5: a Failed station is not sent the update again).
// It is one ETag-guarded write per failed station, once; the failure is
// re-checked on the fresh twin, so a station that reported the new package
// meanwhile is not marked.
func (r *FirmwareRolloutReconciler) markFailed(ctx context.Context, obj *fwv1.FirmwareRollout, v *stationView) error {
	uid := string(obj.UID)
	var todo []int
	for i, s := range v.all {
		if s.ownerUID == uid && s.failed == "" && v.outs[i].state == fwv1.OutcomeFailed {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p := r.evalParams(obj)
	marked := make([]string, len(todo))
	errs := parallel(len(todo), r.Options.WriteConcurrency, func(j int) error {
		id := v.all[todo[j]].id
		_, err := r.Registry.Update(ctx, id, func(t *twin.Twin) (*twin.Patch, error) {
			marked[j] = ""
			if t.Ownership == nil || t.Ownership.UID != uid || t.Ownership.Failed != "" {
				return nil, nil
			}
			o := evaluate(newStation(t, uid), p)
			if o.state != fwv1.OutcomeFailed {
				return nil, nil
			}
			marked[j] = o.reason
			return twin.FailedPatch(o.reason), nil
		})
		if err != nil {
			marked[j] = ""
			return fmt.Errorf("record the failure of station %s: %w", id, err)
		}
		return nil
	})
	for j, i := range todo {
		if marked[j] == "" {
			continue
		}
		v.all[i].failed = intern(marked[j])
		r.rememberOwned(obj, v.all[i])
		if r.Cache != nil {
			r.Cache.Invalidate(v.all[i].id)
		}
	}
	return kerrors.NewAggregate(errs)
}
