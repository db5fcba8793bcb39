package dashboard

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

var t0 = time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { t := metav1.NewTime(t0.Add(d)); return &t }

// rollout has a canary of one, 10%, a pause until resumed and everything;
// the canary finished at +10m, the second batch runs.
func rollout() *fwv1.FirmwareRollout {
	one, ten, all := intstr.FromInt32(1), intstr.FromString("10%"), intstr.FromString("100%")
	return &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "lorawan", Name: "fw-2-0-7", Generation: 1},
		Spec: fwv1.FirmwareRolloutSpec{Strategy: fwv1.RolloutStrategy{Steps: []fwv1.RolloutStep{
			{Batch: &one}, {Batch: &ten}, {Pause: &fwv1.PauseStep{}}, {Batch: &all}}}},
		Status: fwv1.FirmwareRolloutStatus{ObservedGeneration: 1, Phase: fwv1.PhaseProgressing, Targets: 50, CurrentStep: 2,
			StationCounts: fwv1.StationCounts{Pending: 44, WrittenCounts: fwv1.WrittenCounts{Updated: 3, Failed: 1, InProgress: 2}},
			StartTime:     at(0),
			Batches: []fwv1.BatchStatus{
				{Step: 1, Size: 1, WrittenCounts: fwv1.WrittenCounts{Updated: 1}, StartTime: at(0), CompletionTime: at(10 * time.Minute)},
				{Step: 2, Size: 5, WrittenCounts: fwv1.WrittenCounts{Updated: 2, Failed: 1, InProgress: 2}, StartTime: at(10 * time.Minute)},
			}},
	}
}

func TestUnitHistory(t *testing.T) {
	g := NewWithT(t)
	obj := rollout()
	now := t0.Add(30 * time.Minute)

	// First seen: the start, the canary's completion, then what is seen now.
	h := addSample(nil, obj, now)
	g.Expect(h).To(Equal([]Sample{
		{T: t0, Derived: true},
		{T: t0.Add(10 * time.Minute), Updated: 1, Derived: true},
		{T: now, Updated: 3, Failed: 1, InProgress: 2},
	}))
	// Nothing moved: no sample.
	g.Expect(addSample(h, obj, now.Add(time.Second))).To(HaveLen(3))
	// A station updated: a sample.
	obj.Status.Updated, obj.Status.InProgress = 4, 1
	h = addSample(h, obj, now.Add(2*time.Second))
	g.Expect(h).To(HaveLen(4))
	g.Expect(h[3]).To(Equal(Sample{T: now.Add(2 * time.Second), Updated: 4, Failed: 1, InProgress: 1}))

	// A rollout first seen finished is sampled at its completion.
	done := rollout()
	done.Status.Phase, done.Status.CompletionTime = fwv1.PhaseCompleted, at(20*time.Minute)
	done.Status.Batches[1].CompletionTime = at(20 * time.Minute)
	h = addSample(nil, done, now)
	g.Expect(h[len(h)-1].T).To(Equal(t0.Add(20 * time.Minute)))
	g.Expect(h[len(h)-1].Derived).To(BeFalse())

	// Not started: no past.
	fresh := rollout()
	fresh.Status = fwv1.FirmwareRolloutStatus{}
	g.Expect(addSample(nil, fresh, now)).To(Equal([]Sample{{T: now}}))
}

func TestUnitHistoryIsBounded(t *testing.T) {
	g := NewWithT(t)
	obj := rollout()
	var h []Sample
	for i := range 5 * maxSamples {
		obj.Status.Updated = int32(i)
		h = addSample(h, obj, t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	g.Expect(len(h)).To(BeNumerically("<=", maxSamples))
	g.Expect(h[0].T).To(Equal(t0), "the start stays")
	g.Expect(h[len(h)-1].Updated).To(BeNumerically("==", 5*maxSamples-1), "the latest stays")
}

func TestUnitSteps(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*fwv1.FirmwareRollout)
		want []string // state: detail, per step
	}{{
		name: "in the second batch",
		want: []string{"done: 1/1 updated", "current: 2/5 updated, 1 failed, 2 in progress", "waiting: not started", "waiting: not started"},
	}, {
		name: "waiting for resume",
		mut: func(o *fwv1.FirmwareRollout) {
			o.Status.Phase, o.Status.CurrentStep = fwv1.PhasePaused, 3
		},
		want: []string{"done: 1/1 updated", "done: 2/5 updated, 1 failed, 2 in progress", "current: waiting for resume", "waiting: not started"},
	}, {
		name: "completed without stations left for the last batch",
		mut: func(o *fwv1.FirmwareRollout) {
			o.Status.Phase, o.Status.CurrentStep = fwv1.PhaseCompleted, 4
		},
		want: []string{"done: 1/1 updated", "done: 2/5 updated, 1 failed, 2 in progress", "done: done", "done: no stations left for this batch"},
	}, {
		name: "halted by a failed analysis",
		mut: func(o *fwv1.FirmwareRollout) {
			o.Spec.Strategy.Steps[2] = fwv1.RolloutStep{Analysis: &fwv1.AnalysisStep{Name: "forwarding", Count: ptr.To[int32](3)}}
			o.Status.Phase, o.Status.CurrentStep = fwv1.PhaseHalted, 3
			o.Status.Analyses = []fwv1.AnalysisStatus{{Step: 3, Phase: fwv1.AnalysisFailed, Successful: 1, Failed: 1,
				Measurements: []fwv1.AnalysisMeasurement{{Phase: fwv1.MeasurementSuccessful, Value: "0.97"}, {Phase: fwv1.MeasurementFailed, Value: "0.41"}}}}
		},
		want: []string{"done: 1/1 updated", "done: 2/5 updated, 1 failed, 2 in progress", "current: failed: 1/3 passed, 1 failed; last: failed 0.41", "waiting: not started"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := rollout()
			if tt.mut != nil {
				tt.mut(obj)
			}
			var got []string
			for _, s := range buildSteps(obj) {
				got = append(got, s.State+": "+s.Detail)
			}
			g.Expect(got).To(Equal(tt.want))
		})
	}
}
