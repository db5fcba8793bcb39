package controllers

import (
	"context"
	"fmt"
	"time"
	"unique"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// target is a station the selector matches, as the cached selection keeps
// it: only what classifying a station not owned by this rollout needs (the
// owned view has the rest), so that a million-station selection stays
// small (40 bytes a station: its owner and package are one interned record
// that a fleet's stations share).
type target struct {
	id    string
	order uint64
	info  unique.Handle[targetInfo]
	// counted is what this rollout counted the station when it let it go
	// (rules.CountedBefore), kept whoever owns it now; nil for most.
	counted *counted
}

// targetInfo is a selected station's owner and package.
type targetInfo struct {
	ownerUID, ownerName string
	// pkg is the package the CUPS server last saw the station report, ""
	// when never seen: a station off the rollout's upgrade path is not
	// written (rules.Classify).
	pkg  string
	seen bool
}

// newTarget is the selected station id with its owner and package.
func newTarget(id string, order uint64, info targetInfo) target {
	return target{id: id, order: order, info: unique.Make(info)}
}

func (t *target) get() targetInfo {
	if t.info == (unique.Handle[targetInfo]{}) {
		return targetInfo{}
	}
	return t.info.Value()
}

func (t *target) set(info targetInfo) { t.info = unique.Make(info) }

// counted is a station's entry in the twin's history for the rollout.
type counted struct {
	outcome, reason string
	batch           int
	at              time.Time
}

// targetSnapshot is a cached selector result.
type targetSnapshot struct {
	at         time.Time
	took       time.Duration // how long its query took
	generation int64
	stations   []target
}

// selected returns the stations the selector matches, from the cache when it
// is fresh and the rollout is still on the same step.
func (r *FirmwareRolloutReconciler) selected(ctx context.Context, s *rolloutScope) ([]target, error) {
	obj, uid := s.obj, s.uid()
	size := 0 // the last selection's size: the new one's is mostly the same
	if c, ok := r.targets.Load(uid); ok {
		snap := c.(*targetSnapshot)
		size = len(snap.stations)
		// Fresh for TargetResync, and at least fullReadSpacing times its
		// own query's duration: a million stations take about a minute to
		// read, which would otherwise be read again back to back.
		if snap.generation == obj.Generation && r.Now().Sub(snap.at) < max(r.Options.TargetResync, fullReadSpacing*snap.took) {
			return snap.stations, nil
		}
		// The old selection goes before the new one is read, so that the
		// two are never held at once.
		r.targets.Delete(uid)
	}
	start := r.Now()
	sel := twin.Selector{DeviceIDs: obj.Spec.Selector.DeviceIDs, Tags: obj.Spec.Selector.Tags}
	out := make([]target, 0, size)
	var kept []*twin.Twin // the page twins, while there are at most keepTwins
	keep := true
	if err := r.Registry.Query(ctx, sel, func(page []*twin.Twin) error {
		if keep = keep && len(kept)+len(page) <= keepTwins; keep {
			kept = append(kept, page...) // the pointers: the page slice is the client's
		} else {
			kept = nil
		}
		for _, t := range page {
			st := rules.NewStation(t, uid)
			info := targetInfo{pkg: st.Package, seen: st.Seen}
			if st.OwnerUID != uid { // this rollout's own stations are in the owned view
				info.ownerUID, info.ownerName = st.OwnerUID, st.OwnerName
			}
			tg := newTarget(st.ID, st.Order, info)
			if st.Counted != "" {
				tg.counted = &counted{outcome: st.Counted, reason: st.CountedReason, batch: st.Batch, at: st.WrittenAt}
			}
			out = append(out, tg)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query stations selected by %s: %w", s.key(), err)
	}
	r.targets.Store(uid, &targetSnapshot{at: start, took: r.Now().Sub(start), generation: obj.Generation, stations: out})
	s.selTwins = kept
	return out, nil
}

// keepTwins is how many stations a selection may have for a pass that
// read it to keep its twins for the rest of the pass (a few KB each: tens
// of MB at most, dropped with the pass): a batch streamed in the same pass
// then writes from them, with their ETags, instead of querying the
// selection a second time (a rollout's first pass read it twice).
const keepTwins = 20_000

// amendTargets calls fn on each station of the rollout's cached selection,
// if one is cached: what a pass learnt about a station (its package, its
// owner) without querying the selection again.
func (r *FirmwareRolloutReconciler) amendTargets(obj *fwv1.FirmwareRollout, fn func(t *target)) {
	c, ok := r.targets.Load(string(obj.UID))
	if !ok {
		return
	}
	snap := c.(*targetSnapshot)
	for i := range snap.stations {
		fn(&snap.stations[i])
	}
}

// forgetTargets drops the cached selection, so the next reconcile queries
// the selector again.
func (r *FirmwareRolloutReconciler) forgetTargets(obj *fwv1.FirmwareRollout) {
	r.targets.Delete(string(obj.UID))
}
