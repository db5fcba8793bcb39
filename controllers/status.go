package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// statusNews is what changed in a status computation that someone should
// hear of: the caller emits the Events and records the metrics.
type statusNews struct {
	// failed are the stations counted Failed for the first time (their
	// twins hold no failure mark yet), sorted by device id.
	failed []fwv1.StationFailure
	// batchesDone are the durations of the batches that completed now.
	batchesDone []time.Duration
}

// computeStatus is the rollout's status from its previous status and its
// station view at now: the counts, the per-batch summaries (which keep their
// completion time once set) and the bounded failure list (which keeps when
// each failure was first noticed). It is a pure function.
func computeStatus(prev fwv1.FirmwareRolloutStatus, v *stationView, now time.Time) (fwv1.FirmwareRolloutStatus, statusNews) {
	st := prev
	st.Targets, st.StationCounts, st.SkippedNotOnUpgradePath = int32(len(v.all)), fwv1.StationCounts{}, 0
	st.Baking = 0
	for i := range v.outs {
		o := v.outcome(i)
		st.Add(o.State)
		if o.Baking {
			st.Baking++
		}
		if o.State == fwv1.OutcomeSkipped && o.Reason == string(fwv1.SkipNotOnUpgradePath) {
			st.SkippedNotOnUpgradePath++
		}
	}
	st.Progress = fmt.Sprintf("%d/%d", st.Updated, st.Targets)
	var news statusNews
	st.Batches, news.batchesDone = batchSummaries(prev.Batches, v, now)
	st.Failures, news.failed = failureList(prev.Failures, v, now)
	return st, news
}

// batchAgg is one batch's summary while it is being counted, with its
// earliest write.
type batchAgg struct {
	b     fwv1.BatchStatus
	start time.Time
}

// laterStart is the earliest write of the batches after step, zero when
// none was written.
func laterStart(batches map[int]*batchAgg, step int32) time.Time {
	var first time.Time
	for n, a := range batches {
		if int32(n) > step && !a.start.IsZero() && (first.IsZero() || a.start.Before(first)) {
			first = a.start
		}
	}
	return first
}

// batchSummaries are the summaries of the batches of the stations in v.
func batchSummaries(prev []fwv1.BatchStatus, v *stationView, now time.Time) ([]fwv1.BatchStatus, []time.Duration) {
	batches := map[int]*batchAgg{}
	for i, s := range v.all {
		a := batches[s.Batch()]
		if a == nil {
			a = &batchAgg{b: fwv1.BatchStatus{Step: int32(s.Batch())}}
		}
		if !a.b.Add(v.state(i)) {
			continue // never written: in no batch
		}
		batches[s.Batch()] = a
		a.b.Size++
		if w := s.WrittenAt(); a.start.IsZero() || w.Before(a.start) {
			a.start = w
		}
	}
	completed := map[int32]*metav1.Time{}
	for _, b := range prev {
		completed[b.Step] = b.CompletionTime
	}
	out := make([]fwv1.BatchStatus, 0, len(batches))
	var done []time.Duration
	for _, a := range batches {
		b := a.b
		if !a.start.IsZero() {
			t := metav1.NewTime(a.start)
			b.StartTime = &t
		}
		if b.InProgress == 0 {
			if c := completed[b.Step]; c != nil {
				b.CompletionTime = c
			} else {
				// A later batch starts only once this one completed: when
				// the pass that saw it complete lost its status patch (a
				// conflict), the completion is no later than that start.
				end := now
				if next := laterStart(batches, b.Step); !next.IsZero() && next.Before(end) {
					end = next
				}
				t := metav1.NewTime(end)
				b.CompletionTime = &t
				done = append(done, end.Sub(a.start))
			}
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, done
}

// failureList keeps the latest fwv1.MaxFailuresListed failures of the
// stations counted Failed in v, and returns those counted Failed for the
// first time (no failure mark in their twin yet), which enter it now. One
// counted before (it fell off the bounded list, or the pass that listed it
// lost its status patch) is not new and enters with the time it was
// written, an earlier time than its failure's, so it never pushes a newer
// failure off the list.
func failureList(prev []fwv1.StationFailure, v *stationView, now time.Time) ([]fwv1.StationFailure, []fwv1.StationFailure) {
	failedNow := map[string]int{} // device id -> position in v
	for i := range v.outs {
		if v.state(i) == fwv1.OutcomeFailed {
			failedNow[v.all[i].ID] = i
		}
	}
	var list, fresh []fwv1.StationFailure
	known := map[string]bool{}
	for _, f := range prev {
		if i, ok := failedNow[f.DeviceID]; ok && v.outs[i].Reason() == string(f.Reason) {
			f.Message = v.outcome(i).Message
			list = append(list, f)
			known[f.DeviceID] = true
		}
	}
	for id, i := range failedNow {
		if known[id] {
			continue
		}
		o := v.outcome(i)
		f := fwv1.StationFailure{DeviceID: id, Reason: fwv1.FailureReason(o.Reason), Message: o.Message, Time: metav1.NewTime(now)}
		if (v.all[i].Failed() != "" && !v.marked[id]) || v.all[i].Counted() != "" {
			f.Time = metav1.NewTime(v.all[i].WrittenAt())
			list = append(list, f)
			continue
		}
		fresh = append(fresh, f)
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].DeviceID < fresh[j].DeviceID })
	list = append(append([]fwv1.StationFailure(nil), fresh...), list...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Time.After(list[j].Time.Time) })
	if len(list) > fwv1.MaxFailuresListed {
		list = list[:fwv1.MaxFailuresListed]
	}
	return list, fresh
}

// updateStatus computes the status from the station view, records the
// batch durations and announces the stations that failed for the first
// time: one Warning Event each, but not thousands at once (past
// fwv1.MaxFailuresListed the rest are summed up in one).
func (r *FirmwareRolloutReconciler) updateStatus(ctx context.Context, s *rolloutScope) {
	var news statusNews
	s.obj.Status, news = computeStatus(s.obj.Status, s.view, s.now)
	for _, d := range news.batchesDone {
		batchDuration.Observe(d.Seconds())
	}
	for i, f := range news.failed {
		switch {
		case i < fwv1.MaxFailuresListed:
			r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonStationFailed, fmt.Sprintf("station %s failed: %s: %s", f.DeviceID, f.Reason, f.Message))
		case i == fwv1.MaxFailuresListed:
			r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonStationFailed,
				fmt.Sprintf("%d more stations failed; see kubectl stationfleet stations %s --outcome Failed", len(news.failed)-i, s.obj.Name))
		}
	}
}

// plannedSize makes the summary of the batch of step show its planned size
// while it is still being written.
func plannedSize(batches *[]fwv1.BatchStatus, step, size int) {
	for j := range *batches {
		if b := &(*batches)[j]; int(b.Step) == step {
			if int(b.Size) < size {
				b.Size = int32(size)
				b.CompletionTime = nil
			}
			return
		}
	}
	*batches = append(*batches, fwv1.BatchStatus{Step: int32(step), Size: int32(size)})
}

// statusPatch is a JSON merge patch of the status from base to the object,
// which always carries the counters: a merge patch leaves out what did not
// change, and a zero count that was never stored would then stay missing
// (kubectl would print an empty FAILED column instead of 0).
type statusPatch struct{ base *fwv1.FirmwareRollout }

// Type implements client.Patch.
func (p statusPatch) Type() types.PatchType { return types.MergePatchType }

// Data implements client.Patch.
func (p statusPatch) Data(obj client.Object) ([]byte, error) {
	raw, err := client.MergeFrom(p.base).Data(obj)
	if err != nil {
		return nil, err
	}
	patch := map[string]any{}
	if err := json.Unmarshal(raw, &patch); err != nil {
		return nil, err
	}
	st := obj.(*fwv1.FirmwareRollout).Status
	status, _ := patch["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
	}
	// Every counter of StationCounts, by its JSON name (none is omitempty).
	counts, err := json.Marshal(st.StationCounts)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(counts, &status); err != nil {
		return nil, err
	}
	status["targets"], status["currentStep"], status["baking"] = st.Targets, st.CurrentStep, st.Baking
	patch["status"] = status
	// Optimistic lock: a reconcile that worked from a copy older than the
	// status it last wrote (the informer had not caught up) must not write
	// its stale counts and batch times over it; it is retried on a fresh
	// copy (a rollout's status is its history).
	if rv := p.base.ResourceVersion; rv != "" {
		patch["metadata"] = map[string]any{"resourceVersion": rv}
	}
	return json.Marshal(patch)
}
