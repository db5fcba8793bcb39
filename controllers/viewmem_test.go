package controllers

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// writtenFleet is a registry of n stations that the rollout uid owns, each
// written (and, when served, sent and reporting the new package), as
// in the bench's rollouts; its twins are made page by page, as a registry
// query decodes them, and not kept.
func writtenFleet(n int, uid string, served bool) *FakeRegistry {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	return &FakeRegistry{QueryFn: func(_ context.Context, _ twin.Selector, fn func([]*twin.Twin) error) error {
		for i := 0; i < n; i += 1000 {
			page := make([]*twin.Twin, 0, 1000)
			for j := i; j < min(i+1000, n); j++ {
				w := at.Add(time.Duration(j) * time.Millisecond)
				t := &twin.Twin{DeviceID: fmt.Sprintf("%016X", 0x0016C001F0000000+uint64(j)),
					Ownership: &twin.Ownership{Rollout: "bench/scale", UID: uid, Batch: 1, WrittenAt: w}}
				if served {
					s := w.Add(time.Second)
					t.Observation = &twin.Observation{LastSeen: s, Package: "2.0.7", ServedPackage: "2.0.7",
						ServedRollout: uid, UpdatesServed: 1, ServedAt: &s}
				}
				page = append(page, t)
			}
			if err := fn(page); err != nil {
				return err
			}
		}
		return nil
	}}
}

func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // the second frees what the first's weak-pointer cleanups released
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestUnitViewBytesPerStation (issue 18 item 3): what the controller holds
// per station of a rollout that owns them all, read as a pass reads them:
// the owned view it keeps between passes, the cached selection, and the
// classified view of one pass. A million-station rollout must fit the
// manager's 1 GiB with the garbage collector's headroom: before the owned
// view was packed and the pass's view sized exactly, these were about 400
// and 576 bytes; before the pass's view and the selection were packed too,
// 340 and 107. Live heap after a collection: not timed, so not load
// dependent.
func TestUnitViewBytesPerStation(t *testing.T) {
	const n = 50_000
	for _, served := range []bool{false, true} {
		obj := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "scale", UID: types.UID("0b5f7a52-1d9e-4f4e-9a43-3f1c2b6b8a10"), Generation: 1}}
		obj.Spec.Firmware.Package = "2.0.7"
		r := &FirmwareRolloutReconciler{Registry: writtenFleet(n, string(obj.UID), served), Now: func() time.Time { return unitNow }}
		r.applyDefaults()
		s := newScope(obj, unitNow)
		ctx := context.Background()
		h0 := liveHeap()
		owned, err := r.ownedStations(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		h1 := liveHeap()
		selected, err := r.selected(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		h2 := liveHeap()
		v := newStationView(s.uid(), owned, selected, map[string]bool{s.uid(): true}, s.params())
		h3 := liveHeap()
		if len(v.all) != n || len(v.unwritten) != 0 {
			t.Fatalf("view of %d stations, %d unwritten; want %d, 0", len(v.all), len(v.unwritten), n)
		}
		ownedB, selB, viewB := (h1-h0)/n, (h2-h1)/n, (h3-h2)/n
		t.Logf("served=%v: owned view %d, selection %d, one pass's view %d bytes per station", served, ownedB, selB, viewB)
		if ownedB > 180 {
			t.Errorf("served=%v: the owned view holds %d bytes per station, want at most 180", served, ownedB)
		}
		if viewB > 120 {
			t.Errorf("served=%v: a pass's view holds %d bytes per station, want at most 120 (packed)", served, viewB)
		}
		if selB > 80 {
			t.Errorf("served=%v: the cached selection holds %d bytes per station, want at most 80", served, selB)
		}
		if ownedB+selB+viewB > 330 {
			t.Errorf("served=%v: %d bytes per station in all, want at most 330", served, ownedB+selB+viewB)
		}
		runtime.KeepAlive(r) // which holds the owned view
		runtime.KeepAlive(owned)
		runtime.KeepAlive(v)
		runtime.KeepAlive(selected)
	}
}

// TestUnitViewInSpreadOrder: the owned stations and the selected ones not
// owned make one view in spread order (Order, then ID for equal orders),
// the owned view's record winning over the selection's.
func TestUnitViewInSpreadOrder(t *testing.T) {
	uid := "u1"
	owned := map[string]rules.Packed{}
	for _, s := range []rules.Station{{ID: "B", Order: 5, OwnerUID: uid, Batch: 1}, {ID: "D", Order: 1, OwnerUID: uid, Batch: 1}} {
		owned[s.ID] = rules.Pack(s)
	}
	selected := []target{{id: "C", order: 5}, newTarget("B", 5, targetInfo{pkg: "stale", seen: true}), {id: "A", order: 9}, {id: "E", order: 0}}
	v := newStationView(uid, owned, selected, map[string]bool{uid: true}, rules.Params{Package: "2.0.7", Now: unitNow})
	var ids []string
	for _, s := range v.all {
		ids = append(ids, s.ID)
	}
	if want := []string{"E", "D", "B", "C", "A"}; !slices.Equal(ids, want) {
		t.Fatalf("view in order %v, want %v", ids, want)
	}
	if b := v.station(2); b.OwnerUID != uid || b.Package != "" {
		t.Errorf("B is %+v, want the owned view's record", b)
	}
	if !slices.Equal(v.unwritten, []int{0, 3, 4}) {
		t.Errorf("unwritten %v, want [0 3 4] (E, C, A)", v.unwritten)
	}
}

// TestUnitFullReadSpacedByItsDuration: a full read of the owned stations
// that outlasts StatusResync (a million stations) is not repeated at every
// pass: the next waits three times its duration; in between, passes use
// the view.
func TestUnitFullReadSpacedByItsDuration(t *testing.T) {
	now, reads := unitNow, 0
	obj := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", UID: "u1"}}
	r := &FirmwareRolloutReconciler{Now: func() time.Time { return now }, Registry: &FakeRegistry{
		QueryFn: func(_ context.Context, _ twin.Selector, _ func([]*twin.Twin) error) error {
			reads++
			now = now.Add(40 * time.Second) // the read takes 40 s
			return nil
		}}}
	r.applyDefaults()
	r.Options.StatusResync = 10 * time.Second
	read := func() {
		t.Helper()
		if _, err := r.ownedStations(context.Background(), newScope(obj, now)); err != nil {
			t.Fatal(err)
		}
	}
	read()
	now = now.Add(30 * time.Second) // 70 s after the read started: past StatusResync, not 3 x 40 s
	read()
	if reads != 1 {
		t.Fatalf("%d full reads 70 s after one that took 40 s, want 1", reads)
	}
	now = now.Add(50 * time.Second) // 120 s
	read()
	if reads != 2 {
		t.Fatalf("%d full reads 120 s after one that took 40 s, want 2", reads)
	}
}

// TestUnitSelectionSpacedByItsDuration: the selector's result is reused for
// TargetResync, or three times its own query's duration when that is
// longer (a million stations take about a minute to query: back to back
// otherwise), and a spec change still queries it again at once.
func TestUnitSelectionSpacedByItsDuration(t *testing.T) {
	now, reads := unitNow, 0
	obj := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", UID: "u1", Generation: 1}}
	r := &FirmwareRolloutReconciler{Now: func() time.Time { return now }, Registry: &FakeRegistry{
		QueryFn: func(_ context.Context, _ twin.Selector, _ func([]*twin.Twin) error) error {
			reads++
			now = now.Add(40 * time.Second) // the query takes 40 s
			return nil
		}}}
	r.applyDefaults()
	r.Options.TargetResync = time.Minute
	read := func(want int, when string) {
		t.Helper()
		if _, err := r.selected(context.Background(), newScope(obj, now)); err != nil {
			t.Fatal(err)
		}
		if reads != want {
			t.Fatalf("%s: %d selection queries, want %d", when, reads, want)
		}
	}
	read(1, "first")
	now = now.Add(40 * time.Second) // 80 s after the query started: past TargetResync, not 3 x 40 s
	read(1, "80 s after a query of 40 s")
	now = now.Add(40 * time.Second) // 120 s
	read(2, "120 s after a query of 40 s")
	obj.Generation = 2
	read(3, "after a spec change")
}
