package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// updateFailureList keeps status.failures, the latest
// fwv1.MaxFailuresListed failures, from the stations counted Failed in this
// pass (failedNow), and announces each station the first time it is
// counted Failed (firstTime: its twin holds no failure mark yet) with a
// Warning Event. writtenAt holds when the other failed stations were
// written.
func (r *FirmwareRolloutReconciler) updateFailureList(ctx context.Context, obj *fwv1.FirmwareRollout, failedNow map[string]outcome, firstTime map[string]bool, writtenAt map[string]time.Time) {
	now := metav1.NewTime(r.Now())
	// The failure list keeps the time each failure was first noticed. A
	// station counted Failed for the first time (before markFailed records
	// it in its twin) enters it now, with an Event. One counted before (it
	// fell off the bounded list, or the pass that listed it lost its status
	// patch) is not announced again and enters with the time it was written,
	// an earlier time than its failure's, so it never pushes a newer
	// failure off the list.
	var failures []fwv1.StationFailure
	known := map[string]bool{}
	for _, f := range obj.Status.Failures {
		if o, ok := failedNow[f.DeviceID]; ok && o.reason == string(f.Reason) {
			f.Message = o.message
			failures = append(failures, f)
			known[f.DeviceID] = true
		}
	}
	var fresh []string
	for id := range failedNow {
		if known[id] {
			continue
		}
		if !firstTime[id] {
			o := failedNow[id]
			failures = append(failures, fwv1.StationFailure{DeviceID: id, Reason: fwv1.FailureReason(o.reason), Message: o.message, Time: metav1.NewTime(writtenAt[id])})
			continue
		}
		fresh = append(fresh, id)
	}
	sort.Strings(fresh)
	for i, id := range fresh {
		o := failedNow[id]
		failures = append([]fwv1.StationFailure{{DeviceID: id, Reason: fwv1.FailureReason(o.reason), Message: o.message, Time: now}}, failures...)
		// One Event per failed station, but not thousands at once: past
		// fwv1.MaxFailuresListed the rest are summed up in one.
		switch {
		case i < fwv1.MaxFailuresListed:
			r.event(ctx, obj, corev1.EventTypeWarning, fwv1.ReasonStationFailed, fmt.Sprintf("station %s failed: %s: %s", id, o.reason, o.message))
		case i == fwv1.MaxFailuresListed:
			r.event(ctx, obj, corev1.EventTypeWarning, fwv1.ReasonStationFailed,
				fmt.Sprintf("%d more stations failed; see kubectl stationfleet stations %s --outcome Failed", len(fresh)-i, obj.Name))
		}
	}
	sort.SliceStable(failures, func(i, j int) bool { return failures[i].Time.After(failures[j].Time.Time) })
	if len(failures) > fwv1.MaxFailuresListed {
		failures = failures[:fwv1.MaxFailuresListed]
	}
	obj.Status.Failures = failures
}
