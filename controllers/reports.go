package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// maxReportedStations bounds the device ids in ReportedStationsAnnotation:
// 500 EUIs are about 10 KB, far below the 256 KiB the API server allows
// for all of an object's annotations; past it, "more" asks the owner for a
// full read of its stations.
const maxReportedStations = 500

// maxDeviceIDLen is IoT Hub's limit on a device id.
const maxDeviceIDLen = 128

// stationReports is the value of ReportedStationsAnnotation.
type stationReports struct {
	// Stations are the device ids that reported, sorted.
	Stations []string `json:"stations,omitempty"`
	// More is true when more stations reported than Stations holds.
	More bool `json:"more,omitempty"`
}

// parseReports reads the annotation's value; an empty value is no report.
func parseReports(v string) (stationReports, error) {
	var r stationReports
	if v == "" {
		return r, nil
	}
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return stationReports{}, fmt.Errorf("annotation %s: %w", fwv1.ReportedStationsAnnotation, err)
	}
	for _, id := range r.Stations {
		if id == "" || len(id) > maxDeviceIDLen {
			return stationReports{}, fmt.Errorf("annotation %s: %q is not a device id", fwv1.ReportedStationsAnnotation, id)
		}
	}
	if len(r.Stations) > maxReportedStations {
		r.Stations, r.More = nil, true
	}
	return r, nil
}

// merge adds ids to the reports, and reports whether that changed them.
func (r *stationReports) merge(ids map[string]struct{}, more bool) bool {
	set := make(map[string]struct{}, len(r.Stations)+len(ids))
	for _, id := range r.Stations {
		set[id] = struct{}{}
	}
	changed := false
	if more && !r.More {
		r.More, changed = true, true
	}
	for id := range ids {
		if _, ok := set[id]; !ok {
			set[id] = struct{}{}
			changed = true
		}
	}
	if len(set) > maxReportedStations {
		r.More = true
		set = map[string]struct{}{} // the owner reads every station anyway
	}
	r.Stations = slices.Sorted(maps.Keys(set))
	return changed
}

func (r stationReports) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// takeReports hands the stations named in the rollout's
// ReportedStationsAnnotation (reports a CUPS server in another process
// relayed) to loadStations, which re-reads just their twins, and removes
// the annotation. The removal is guarded by the resourceVersion: when a
// relay added stations meanwhile, it fails, and the relay's change wakes
// the rollout again. The scope's patch base is kept in step. It never ends
// the pass: a report not taken now is read at the next full resync.
func (r *FirmwareRolloutReconciler) takeReports(ctx context.Context, s *rolloutScope) error {
	obj, base := s.obj, s.base
	v, ok := obj.Annotations[fwv1.ReportedStationsAnnotation]
	if !ok {
		return nil
	}
	log := ctrl.LoggerFrom(ctx)
	key := obj.Namespace + "/" + obj.Name
	reports, err := parseReports(v)
	switch {
	case err != nil:
		log.Info("ignoring a malformed report annotation; reading every station of the rollout", "error", err.Error())
		r.forceFullRead(obj)
	case reports.More || r.Wake == nil:
		r.forceFullRead(obj)
	default:
		for _, id := range reports.Stations {
			r.Wake.mark(key, id)
		}
	}
	patchBase := obj.DeepCopy()
	delete(obj.Annotations, fwv1.ReportedStationsAnnotation)
	err = r.Patch(ctx, obj, client.MergeFromWithOptions(patchBase, client.MergeFromWithOptimisticLock{}))
	switch {
	case err == nil:
		base.Annotations, base.ResourceVersion = maps.Clone(obj.Annotations), obj.ResourceVersion
		reportsTaken.Inc()
	case apierrors.IsConflict(err):
		// A relay wrote more: its change brings us back.
		*obj = *patchBase
	default:
		*obj = *patchBase
		log.V(1).Info("could not remove the report annotation; the stations are read again next time", "error", err.Error())
	}
	return nil
}

// annotationsChanged is AnnotationChangedPredicate, except that removing
// ReportedStationsAnnotation (takeReports did it) wakes nobody.
type annotationsChanged struct{ predicate.Funcs }

// Update implements predicate.Predicate.
func (annotationsChanged) Update(e event.UpdateEvent) bool {
	if e.ObjectOld == nil || e.ObjectNew == nil {
		return false
	}
	oldA, newA := maps.Clone(e.ObjectOld.GetAnnotations()), e.ObjectNew.GetAnnotations()
	if _, ok := newA[fwv1.ReportedStationsAnnotation]; !ok {
		delete(oldA, fwv1.ReportedStationsAnnotation)
	}
	return !maps.Equal(oldA, newA)
}
