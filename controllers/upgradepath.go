package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Upgrade paths (firmware.upgradeFrom). A station off the path ends
// untouched and Skipped NotOnUpgradePath, never Failed:
//
//   - one the CUPS server already saw on another package is not written
//     (rules.Classify in the station view, and claim on the fresh twin), so
//     it takes no place in a batch;
//   - one written before the CUPS server ever saw it is refused by the
//     CUPS server at its first poll (twin.RefusalNotOnUpgradePath), and
//     releaseOffPath then puts its twin back as it was: the previous
//     firmware fields, no ownership, and a history entry Skipped
//     NotOnUpgradePath. The batch takes the next eligible station in its
//     place.

// releaseOffPath lets go of every station this rollout wrote that the CUPS
// server refused as off the upgrade path: one ETag-guarded write each,
// re-checked on the fresh twin.
func (r *FirmwareRolloutReconciler) releaseOffPath(ctx context.Context, s *rolloutScope) error {
	obj, v, uid := s.obj, s.view, s.uid()
	var todo []int
	for i, st := range v.all {
		if v.outs[i].Reason() == string(fwv1.SkipNotOnUpgradePath) && st.OwnerUID() == uid {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p := s.params()
	did, err := r.updateTwins(ctx, s, todo, "put back, off the upgrade path, the twin of", func(t *twin.Twin) (*twin.Patch, string) {
		if t.Ownership == nil || t.Ownership.UID != uid {
			return nil, ""
		}
		if o := rules.Evaluate(rules.NewStation(t, uid), p); o.Reason != string(fwv1.SkipNotOnUpgradePath) {
			return nil, ""
		}
		fp := twin.FirmwarePatch(t.Ownership.Previous, nil)
		return fp.SetHistory(twin.WithHistory(t.History, rules.HistoryEntry(t, obj, s.now, true))), "released"
	})
	released := make([]bool, len(did))
	for j := range did {
		released[j] = did[j] != ""
	}
	n := r.forgetReleased(s, todo, released)
	if n > 0 {
		r.event(ctx, obj, corev1.EventTypeNormal, string(fwv1.SkipNotOnUpgradePath),
			fmt.Sprintf("%d stations report a package firmware.upgradeFrom does not list: skipped, their twins put back as they were", n))
	}
	return err
}

// forgetReleased lays the stations releaseOffPath let go over the view and
// the caches: no longer owned, in no batch, skipped. It returns how many.
func (r *FirmwareRolloutReconciler) forgetReleased(s *rolloutScope, todo []int, released []bool) int {
	v, n := s.view, 0
	seen := map[string]string{}
	for j, i := range todo {
		if !released[j] {
			continue
		}
		n++
		st := v.station(i)
		st.OwnerUID, st.OwnerName, st.Batch, st.WrittenAt, st.Failed = "", "", 0, time.Time{}, ""
		v.all[i] = rules.Pack(st)
		seen[st.ID] = st.Package
		r.forgetOwned(s.obj, st.ID)
		if r.Cache != nil {
			r.Cache.Invalidate(st.ID)
		}
	}
	r.noteReported(s.obj, seen)
	return n
}

// noteReported records, in the rollout's cached selection, the package
// the CUPS server saw each station of seen (device id -> package) report,
// so that the next passes classify it without reading its twin again.
func (r *FirmwareRolloutReconciler) noteReported(obj *fwv1.FirmwareRollout, seen map[string]string) {
	if len(seen) == 0 {
		return
	}
	r.amendTargets(obj, func(t *target) {
		if pkg, ok := seen[t.id]; ok {
			info := t.get()
			info.pkg, info.seen = pkg, true
			if info.ownerUID == string(obj.UID) {
				info.ownerUID, info.ownerName = "", ""
			}
			t.set(info)
		}
	})
}
