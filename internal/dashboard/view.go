package dashboard

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// RolloutView is what the page shows of one rollout.
type RolloutView struct {
	// Namespace, Name and UID identify the rollout.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	// Package is the firmware package rolled out.
	Package string `json:"package"`
	// Selector says which stations the rollout selects, e.g. "ring=prod".
	Selector string `json:"selector"`
	// Phase is status.phase ("Pending" before the controller's first pass).
	Phase string `json:"phase"`
	// Reason and Message are the Ready condition's.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Stalled is true while the Stalled condition is.
	Stalled bool `json:"stalled"`
	// Stale is true while the controller has not seen the latest spec.
	Stale bool `json:"stale"`
	// Paused and Abort are spec.paused and spec.abort.
	Paused bool `json:"paused"`
	Abort  bool `json:"abort"`
	// Targets, Pending, InProgress, Updated, Failed, Skipped, Baking and
	// Progress are the status' counts.
	Targets    int32  `json:"targets"`
	Pending    int32  `json:"pending"`
	InProgress int32  `json:"inProgress"`
	Updated    int32  `json:"updated"`
	Failed     int32  `json:"failed"`
	Skipped    int32  `json:"skipped"`
	Baking     int32  `json:"baking"`
	Progress   string `json:"progress"`
	// MaxFailures is spec.strategy.maxFailures as written ("" when unset).
	MaxFailures string `json:"maxFailures,omitempty"`
	// CurrentStep is status.currentStep (1-based; 0 before the start).
	CurrentStep int32 `json:"currentStep"`
	// Steps are the strategy's steps and where each is.
	Steps []StepView `json:"steps"`
	// Failures are the latest failed stations, newest first.
	Failures []fwv1.StationFailure `json:"failures"`
	// Conditions are the status' conditions.
	Conditions []metav1.Condition `json:"conditions"`
	// Created is the rollout's creation time.
	Created time.Time `json:"created"`
	// StartTime is when the first batch started.
	StartTime *time.Time `json:"startTime,omitempty"`
	// CompletionTime is when it completed, halted or was aborted.
	CompletionTime *time.Time `json:"completionTime,omitempty"`
	// History is the progress the dashboard observed, for the chart.
	History []Sample `json:"history"`
	// Refusals says, per action, why it does not apply now (absent when it
	// does).
	Refusals map[Action]string `json:"refusals"`
}

// StepView is one strategy step.
type StepView struct {
	// Index is the step's 1-based number.
	Index int32 `json:"index"`
	// Kind is "batch", "pause", "analysis" or "step" (a kind this view
	// does not know).
	Kind string `json:"kind"`
	// Label is what the step says: "batch 10%", "pause 1h0m0s", "pause".
	Label string `json:"label"`
	// State is "done", "current" or "waiting".
	State string `json:"state"`
	// Batch is the batch's counts once written (nil before).
	Batch *fwv1.BatchStatus `json:"batch,omitempty"`
	// Detail says where the step is, for a person.
	Detail string `json:"detail"`
}

// buildView turns a rollout into what the page shows.
func buildView(obj *fwv1.FirmwareRollout, history []Sample, refusals map[Action]string) RolloutView {
	st := &obj.Status
	v := RolloutView{
		Namespace: obj.Namespace, Name: obj.Name, UID: string(obj.UID), Package: obj.Spec.Firmware.Package,
		Selector: selectorText(obj.Spec.Selector), Phase: string(st.Phase),
		Stale:  st.ObservedGeneration < obj.Generation,
		Paused: obj.Spec.Paused, Abort: obj.Spec.Abort,
		Targets: st.Targets, Pending: st.Pending, InProgress: st.InProgress, Updated: st.Updated, Failed: st.Failed,
		Skipped: st.Skipped, Baking: st.Baking, Progress: st.Progress, CurrentStep: st.CurrentStep,
		Failures: st.Failures, Conditions: st.Conditions, Created: obj.CreationTimestamp.UTC(),
		History: append([]Sample(nil), history...), Refusals: refusals,
	}
	if v.Phase == "" {
		v.Phase = string(fwv1.PhasePending)
	}
	if v.Progress == "" {
		v.Progress = fmt.Sprintf("%d/%d", st.Updated, st.Targets)
	}
	if mf := obj.Spec.Strategy.MaxFailures; mf != nil {
		v.MaxFailures = mf.String()
	}
	if c := meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady); c != nil {
		v.Reason, v.Message = c.Reason, c.Message
	}
	v.Stalled = meta.IsStatusConditionTrue(st.Conditions, fwv1.ConditionStalled)
	if st.StartTime != nil {
		t := st.StartTime.UTC()
		v.StartTime = &t
	}
	if st.CompletionTime != nil {
		t := st.CompletionTime.UTC()
		v.CompletionTime = &t
	}
	if v.Failures == nil {
		v.Failures = []fwv1.StationFailure{}
	}
	if v.Conditions == nil {
		v.Conditions = []metav1.Condition{}
	}
	v.Steps = buildSteps(obj)
	return v
}

func selectorText(sel fwv1.StationSelector) string {
	var parts []string
	keys := make([]string, 0, len(sel.Tags))
	for k := range sel.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+sel.Tags[k])
	}
	if n := len(sel.DeviceIDs); n > 0 {
		parts = append(parts, fmt.Sprintf("%d device ids", n))
	}
	return strings.Join(parts, ", ")
}

// buildSteps describes each strategy step as the CLI's status view does.
func buildSteps(obj *fwv1.FirmwareRollout) []StepView {
	st := &obj.Status
	batches := map[int32]fwv1.BatchStatus{}
	for _, b := range st.Batches {
		batches[b.Step] = b
	}
	finished := st.Phase == fwv1.PhaseCompleted || st.Phase == fwv1.PhaseAborted
	out := make([]StepView, 0, len(obj.Spec.Strategy.Steps))
	for i, s := range obj.Spec.Strategy.Steps {
		n := int32(i + 1)
		sv := StepView{Index: n, State: "waiting"}
		switch {
		case n < st.CurrentStep || (n == st.CurrentStep && finished):
			sv.State = "done"
		case n == st.CurrentStep:
			sv.State = "current"
		}
		switch {
		case s.Batch != nil:
			sv.Kind, sv.Label = "batch", "batch "+s.Batch.String()
			if b, ok := batches[n]; ok {
				b := b
				sv.Batch = &b
				sv.Detail = fmt.Sprintf("%d/%d updated", b.Updated, b.Size)
				if b.Failed > 0 {
					sv.Detail += fmt.Sprintf(", %d failed", b.Failed)
				}
				if b.InProgress > 0 {
					sv.Detail += fmt.Sprintf(", %d in progress", b.InProgress)
				}
			} else {
				switch sv.State {
				case "done":
					sv.Detail = "no stations left for this batch"
				case "current":
					sv.Detail = "writing twins"
					if st.NextWindow != nil {
						sv.Detail = "waiting for a batch window (opens " + st.NextWindow.UTC().Format(time.RFC3339) + ")"
					}
				default:
					sv.Detail = "not started"
				}
			}
		case s.Pause != nil:
			sv.Kind, sv.Label = "pause", "pause"
			if s.Pause.Duration != nil {
				sv.Label += " " + s.Pause.Duration.Duration.String()
			}
			switch {
			case sv.State == "done":
				sv.Detail = "done"
			case sv.State == "current" && s.Pause.Duration != nil && st.StepStartTime != nil:
				sv.Detail = "until " + st.StepStartTime.Add(s.Pause.Duration.Duration).UTC().Format(time.RFC3339)
			case sv.State == "current" && st.Phase == fwv1.PhasePaused:
				sv.Detail = "waiting for resume"
			case sv.State == "current":
				sv.Detail = "in progress"
			default:
				sv.Detail = "not started"
			}
		case s.Analysis != nil:
			sv.Kind, sv.Label = "analysis", "analysis"
			if s.Analysis.Name != "" {
				sv.Label += " " + s.Analysis.Name
			}
			sv.Detail = analysisDetail(st, n, s.Analysis, sv.State)
		default:
			sv.Kind, sv.Label = "step", "step"
			sv.Detail = map[string]string{"done": "done", "current": "in progress", "waiting": "not started"}[sv.State]
		}
		out = append(out, sv)
	}
	return out
}

// analysisDetail says where analysis step n is: its verdict, how many
// measurements passed of how many it takes, and the newest one.
func analysisDetail(st *fwv1.FirmwareRolloutStatus, n int32, a *fwv1.AnalysisStep, state string) string {
	var as *fwv1.AnalysisStatus
	for k := range st.Analyses {
		if st.Analyses[k].Step == n {
			as = &st.Analyses[k]
		}
	}
	if as == nil {
		return map[string]string{"done": "done", "current": "starting", "waiting": "not started"}[state]
	}
	count := int32(3) // the API's default
	if a.Count != nil {
		count = *a.Count
	}
	verdict := map[fwv1.AnalysisPhase]string{fwv1.AnalysisSuccessful: "passed", fwv1.AnalysisFailed: "failed"}[as.Phase]
	if verdict == "" {
		verdict = "running"
	}
	d := fmt.Sprintf("%s: %d/%d passed", verdict, as.Successful, count)
	if as.Failed > 0 {
		d += fmt.Sprintf(", %d failed", as.Failed)
	}
	if as.Errors > 0 {
		d += fmt.Sprintf(", %d errors", as.Errors)
	}
	if k := len(as.Measurements); k > 0 {
		m := as.Measurements[k-1]
		if m.Phase == fwv1.MeasurementError {
			d += "; last: error: " + m.Message
		} else {
			d += fmt.Sprintf("; last: %s %s", strings.ToLower(string(m.Phase)), m.Value)
		}
	}
	return d
}
