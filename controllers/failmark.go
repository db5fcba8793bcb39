package controllers

import (
	"context"
	"sync"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// markFailed records, in the ownership record of every station this
// rollout finds Failed for the first time, the failure reason: the outcome
// is then final, and the CUPS server, which reads only the twin, stops
// sending the update to the station while the rollout owns it (DESIGN.md
// section 5: a Failed station is not sent the update again). It is one
// ETag-guarded write per failed station, once; the failure is re-checked
// on the fresh twin, so a station that reported the new package meanwhile
// is not marked.
//
// It runs before the stations are counted, and a failure is counted only
// once it is recorded: a rollout's status is its history, so a station it
// counted Failed stays Failed (a station found Failed whose fresh twin
// says otherwise is counted as the fresh twin says; one whose mark could
// not be written stays InProgress until it is, and the error ends the pass
// after the count, see countStations).
func (r *FirmwareRolloutReconciler) markFailed(ctx context.Context, s *rolloutScope) error {
	obj, v, uid := s.obj, s.view, s.uid()
	var todo []int
	for i, st := range v.all {
		if v.state(i) == fwv1.OutcomeFailed && st.OwnerUID() == uid && st.Failed() == "" {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p := s.params()
	var mu sync.Mutex
	fresh := map[string]rules.Station{} // stations whose fresh twin is not Failed
	marked, err := r.updateTwins(ctx, s, todo, "record the failure of", func(t *twin.Twin) (*twin.Patch, string) {
		if t.Ownership == nil || t.Ownership.UID != uid || t.Ownership.Failed != "" {
			return nil, ""
		}
		st := rules.NewStation(t, uid)
		o := rules.Evaluate(st, p)
		if o.State != fwv1.OutcomeFailed {
			mu.Lock()
			fresh[t.DeviceID] = st
			mu.Unlock()
			return nil, ""
		}
		return twin.FailedPatch(o.Reason), o.Reason
	})
	if v.marked == nil {
		v.marked = map[string]bool{}
	}
	for j, i := range todo {
		id := v.all[i].ID
		switch st, ok := fresh[id]; {
		case marked[j] != "":
			st := v.station(i)
			st.Failed = rules.Intern(marked[j])
			v.all[i] = rules.Pack(st)
			v.marked[id] = true
		case ok:
			v.set(i, st, rules.Evaluate(st, p))
		default: // not recorded (the write failed): not yet final
			v.outs[i] = rules.PackOutcome(rules.Outcome{State: fwv1.OutcomeInProgress, Deadline: s.now})
			continue
		}
		r.rememberOwned(obj, v.all[i])
		if r.Cache != nil && marked[j] != "" {
			r.Cache.Invalidate(id)
		}
	}
	s.markErr = err
	return nil
}
