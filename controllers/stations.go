package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// stationView is every station the rollout concerns, classified. It is
// packed (rules.Packed, rules.PackedOutcome: 96 bytes a station instead of
// 344), because a pass builds it anew over the whole rollout: a million
// stations' view is then about 100 MB rather than 340.
type stationView struct {
	all       []rules.Packed        // selected or owned by this rollout, in spread order
	outs      []rules.PackedOutcome // the outcome of all[i]
	unwritten []int                 // positions in all of the targets not yet written nor skipped, in order
	// marked are the stations markFailed recorded Failed in this pass: new
	// failures, announced once.
	marked map[string]bool
}

// find is the position of the station id in the view of the rollout uid,
// -1 when it is not in it: a binary search, the view being in spread
// order.
func (v *stationView) find(uid, id string) int {
	o := rules.SpreadOrder(uid, id)
	i := sort.Search(len(v.all), func(i int) bool {
		p := &v.all[i]
		return p.Order > o || (p.Order == o && p.ID >= id)
	})
	if i < len(v.all) && v.all[i].ID == id {
		return i
	}
	return -1
}

// station is the station at position i of the view.
func (v *stationView) station(i int) rules.Station { return v.all[i].Station() }

// outcome is the outcome of the station at position i.
func (v *stationView) outcome(i int) rules.Outcome { return v.outs[i].Outcome() }

// state is the state of the station at position i.
func (v *stationView) state(i int) fwv1.StationOutcome { return v.outs[i].State() }

// set records the station at position i and its outcome.
func (v *stationView) set(i int, s rules.Station, o rules.Outcome) {
	v.all[i], v.outs[i] = rules.Pack(s), rules.PackOutcome(o)
}

// newStationView classifies the stations the rollout owns and those its
// selector matches, for the rollout uid: the owned view is fresher, and a
// selected station whose ownership the owned view does not have was
// released, so it is unwritten.
func newStationView(uid string, owned map[string]rules.Packed, selected []target, active map[string]bool, p rules.Params) *stationView {
	keys := spreadKeys(owned, selected)
	// Exactly as long as needed: the selection mostly repeats the owned
	// stations.
	v := &stationView{all: make([]rules.Packed, len(keys)), outs: make([]rules.PackedOutcome, len(keys))}
	for i, k := range keys {
		var s rules.Station
		if k.sel < 0 {
			v.all[i] = owned[k.id] // shared with the owned view: no copy of its strings
			s = v.all[i].Station()
		} else {
			t := &selected[k.sel]
			info := t.get()
			s = rules.Station{ID: t.id, Order: t.order, Package: info.pkg, Seen: info.seen}
			if c := t.counted; c != nil {
				s.Counted, s.CountedReason, s.Batch, s.WrittenAt = c.outcome, c.reason, c.batch, c.at
			}
			if info.ownerUID != uid {
				s.OwnerUID, s.OwnerName = info.ownerUID, info.ownerName
			}
			v.all[i] = rules.Pack(s)
		}
		o := rules.Classify(s, uid, active, p)
		v.outs[i] = rules.PackOutcome(o)
		if o.State == fwv1.OutcomePending {
			v.unwritten = append(v.unwritten, i)
		}
	}
	return v
}

// viewKey is a station of the view while it is ordered: sorting these
// instead of the view's records keeps a million-station pass's sort
// in memory moves of 32 bytes.
type viewKey struct {
	order uint64
	id    string
	sel   int // position in the selection, -1 for an owned station
}

// spreadKeys are the owned stations and the selected stations not owned, in
// spread order (rules.SortStations' order: Order, then ID).
func spreadKeys(owned map[string]rules.Packed, selected []target) []viewKey {
	unowned := 0
	for _, t := range selected {
		if _, ok := owned[t.id]; !ok {
			unowned++
		}
	}
	keys := make([]viewKey, 0, len(owned)+unowned)
	for id, p := range owned {
		keys = append(keys, viewKey{order: p.Order, id: id, sel: -1})
	}
	for i, t := range selected {
		if _, ok := owned[t.id]; !ok {
			keys = append(keys, viewKey{order: t.order, id: t.id, sel: i})
		}
	}
	slices.SortFunc(keys, func(a, b viewKey) int {
		if c := cmp.Compare(a.order, b.order); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return keys
}

// loadStations reads the stations this rollout owns and the stations its
// selector matches, and classifies them. Owned stations come from an
// in-memory view that a full registry query refreshes every StatusResync; in
// between, only the stations the CUPS server reported on are read again (one
// twin read each instead of a query over the whole rollout). The selector's
// result is cached for TargetResync (or three times its query's duration,
// when longer) and refreshed at each step.
func (r *FirmwareRolloutReconciler) loadStations(ctx context.Context, s *rolloutScope) error {
	owned, err := r.ownedStations(ctx, s)
	if err != nil {
		return err
	}
	selected, err := r.selected(ctx, s)
	if err != nil {
		return err
	}
	var list fwv1.FirmwareRolloutList
	if err := r.List(ctx, &list); err != nil {
		return fmt.Errorf("list rollouts: %w", err)
	}
	s.active = rules.ActiveRollouts(list.Items)
	s.byUID = make(map[string]*fwv1.FirmwareRollout, len(list.Items))
	for i := range list.Items {
		s.byUID[string(list.Items[i].UID)] = &list.Items[i]
	}
	r.resolveOwners(ctx, s, selected)
	s.view = newStationView(s.uid(), owned, selected, s.active, s.params())
	return nil
}

// ownedView is the in-memory view of the stations one rollout owns, packed
// (rules.Packed: a third of a Station's size, the view a million-station
// rollout keeps between passes).
type ownedView struct {
	mu       sync.Mutex
	stations map[string]rules.Packed
	fullAt   time.Time
	// fullTook is how long the last full read took: the next one waits
	// at least fullReadSpacing times that, so that a rollout whose full
	// read outlasts StatusResync (a million stations) still spends most of
	// its passes writing rather than reading.
	fullTook time.Duration
}

// fullReadSpacing is how many times its own duration apart full reads of
// the owned stations are at least.
const fullReadSpacing = 3

// ownedStations returns the rollout's owned stations, refreshed as
// loadStations describes. The map is the view itself: read it, don't keep it.
func (r *FirmwareRolloutReconciler) ownedStations(ctx context.Context, s *rolloutScope) (map[string]rules.Packed, error) {
	uid, key := s.uid(), s.key()
	vi, _ := r.owned.LoadOrStore(uid, &ownedView{})
	ov := vi.(*ownedView)
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if ov.stations == nil || r.Now().Sub(ov.fullAt) >= max(r.Options.StatusResync, fullReadSpacing*ov.fullTook) {
		start := r.Now()
		r.Wake.drain(key) // the full read covers every report so far
		// The old view goes before the new one is read, so that the two
		// are never held at once (an error leaves none: the next pass
		// reads in full again).
		size := len(ov.stations)
		ov.stations = nil
		fresh, err := r.queryOwned(ctx, s, size)
		if err != nil {
			return nil, err
		}
		ov.stations, ov.fullAt, ov.fullTook = fresh, start, r.Now().Sub(start)
	} else if err := r.rereadReported(ctx, s, ov.stations); err != nil {
		return nil, err
	}
	// Not a copy: a 100,000-station view is megabytes, and only this
	// rollout's reconcile uses it (controller-runtime never reconciles one
	// object twice at once); callers read it before writing new stations.
	return ov.stations, nil
}

// queryOwned reads every station the rollout owns; size is how many it
// owned at the last read.
func (r *FirmwareRolloutReconciler) queryOwned(ctx context.Context, s *rolloutScope, size int) (map[string]rules.Packed, error) {
	uid := s.uid()
	fresh := make(map[string]rules.Packed, size)
	if err := r.Registry.Query(ctx, twin.Selector{OwnerUID: uid}, func(page []*twin.Twin) error {
		for _, t := range page {
			if t.Ownership != nil && t.Ownership.UID == uid {
				fresh[t.DeviceID] = rules.Pack(rules.NewStation(t, uid))
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query stations owned by %s: %w", s.key(), err)
	}
	return fresh, nil
}

// rereadReported reads again the twins of the stations the CUPS server
// reported on since the last read, into stations.
func (r *FirmwareRolloutReconciler) rereadReported(ctx context.Context, s *rolloutScope, stations map[string]rules.Packed) error {
	uid, key := s.uid(), s.key()
	for _, id := range r.Wake.drain(key) {
		t, err := r.Registry.Get(ctx, id)
		switch {
		case errors.Is(err, twin.ErrNotFound):
			delete(stations, id)
		case err != nil:
			r.Wake.NotifyStation(key, id) // read it again next time
			return fmt.Errorf("read twin %s: %w", id, err)
		case t.Ownership != nil && t.Ownership.UID == uid:
			stations[id] = rules.Pack(rules.NewStation(t, uid))
		default:
			delete(stations, id)
		}
	}
	return nil
}

// rememberOwned records a station this reconcile wrote.
func (r *FirmwareRolloutReconciler) rememberOwned(obj *fwv1.FirmwareRollout, p rules.Packed) {
	r.withOwned(obj, func(ov *ownedView) {
		if ov.stations != nil {
			ov.stations[p.ID] = p
		}
	})
}

// forgetOwned drops a station the rollout no longer owns from its owned
// view.
func (r *FirmwareRolloutReconciler) forgetOwned(obj *fwv1.FirmwareRollout, id string) {
	r.withOwned(obj, func(ov *ownedView) { delete(ov.stations, id) })
}

// forceFullRead makes the next loadStations query every station the
// rollout owns instead of re-reading marked twins only.
func (r *FirmwareRolloutReconciler) forceFullRead(obj *fwv1.FirmwareRollout) {
	r.withOwned(obj, func(ov *ownedView) { ov.fullAt = time.Time{} })
}

// withOwned calls fn with the rollout's owned view locked, if it has one.
func (r *FirmwareRolloutReconciler) withOwned(obj *fwv1.FirmwareRollout, fn func(ov *ownedView)) {
	if vi, ok := r.owned.Load(string(obj.UID)); ok {
		ov := vi.(*ownedView)
		ov.mu.Lock()
		defer ov.mu.Unlock()
		fn(ov)
	}
}

// forget drops everything cached for a rollout that is done.
func (r *FirmwareRolloutReconciler) forget(obj *fwv1.FirmwareRollout) {
	r.targets.Delete(string(obj.UID))
	r.owned.Delete(string(obj.UID))
	r.Wake.drain(obj.Namespace + "/" + obj.Name)
}
