package controllers

import (
	"context"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
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
func (r *FirmwareRolloutReconciler) markFailed(ctx context.Context, s *rolloutScope) error {
	obj, v, uid := s.obj, s.view, s.uid()
	var todo []int
	for i, st := range v.all {
		if st.OwnerUID == uid && st.Failed == "" && v.outs[i].State == fwv1.OutcomeFailed {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p := s.params()
	marked, err := r.updateTwins(ctx, s, todo, "record the failure of", func(t *twin.Twin) (*twin.Patch, string) {
		if t.Ownership == nil || t.Ownership.UID != uid || t.Ownership.Failed != "" {
			return nil, ""
		}
		o := rules.Evaluate(rules.NewStation(t, uid), p)
		if o.State != fwv1.OutcomeFailed {
			return nil, ""
		}
		return twin.FailedPatch(o.Reason), o.Reason
	})
	for j, i := range todo {
		if marked[j] == "" {
			continue
		}
		v.all[i].Failed = rules.Intern(marked[j])
		r.rememberOwned(obj, v.all[i])
		if r.Cache != nil {
			r.Cache.Invalidate(v.all[i].ID)
		}
	}
	return err
}
