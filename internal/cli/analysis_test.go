package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// withAnalysis makes the rollout's steps batch 1, an analysis, batch 100%.
func withAnalysis(o *fwv1.FirmwareRollout) {
	one, all := intstr.FromInt32(1), intstr.FromString("100%")
	o.Spec.Strategy.Steps = []fwv1.RolloutStep{
		{Batch: &one},
		{Analysis: &fwv1.AnalysisStep{Name: "forwarding", Prometheus: fwv1.PrometheusSource{Address: "http://prometheus:9090"},
			Query: `sum(rate(uplinks_forwarded_total{eui=~"{{stations}}"}[5m]))`, SuccessCondition: "result >= 0.95",
			Interval: &metav1.Duration{Duration: time.Minute}, Count: ptr.To[int32](3)}},
		{Batch: &all},
	}
}

func measurement(phase fwv1.MeasurementPhase, value string, since time.Duration) fwv1.AnalysisMeasurement {
	t := metav1.NewMicroTime(ago(since).Time)
	return fwv1.AnalysisMeasurement{ScheduledAt: t, Time: t, Phase: phase, Value: value}
}

const analysisRunningMessage = "step 2 of 3: analysis forwarding (step 2) running: 1 passed, 0 failed, 0 errors of 3 measurements (last: 0.99, Successful); next measurement at 2026-01-01T00:00:00Z"

func analysisRunningStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	st.Conditions = []metav1.Condition{st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonAnalysisRunning, analysisRunningMessage, time.Minute),
		cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonAnalysisRunning, analysisRunningMessage, time.Minute)}
	st.Targets, st.Pending, st.InProgress, st.Updated, st.Failed, st.Progress = 50, 49, 0, 1, 0, "1/50"
	st.Batches = st.Batches[:1]
	st.Failures = nil
	st.Analyses = []fwv1.AnalysisStatus{{Step: 2, Name: "forwarding", Phase: fwv1.AnalysisRunning, StartTime: ago(2 * time.Minute),
		Successful: 1, Measurements: []fwv1.AnalysisMeasurement{measurement(fwv1.MeasurementSuccessful, "0.99", time.Minute)}}}
	return st
}

const analysisFailedMessage = "step 2: analysis forwarding (step 2) failed: 1 measurements failed, more than failureLimit allows (0): 1 passed, 1 failed, 0 errors of 3 measurements; no further step runs. " +
	"Resume to run the analysis again (kubectl stationfleet resume fw-2-0-7), abort to restore the previous firmware, or delete the rollout"

func analysisHaltedStatus() fwv1.FirmwareRolloutStatus {
	st := analysisRunningStatus()
	st.Phase = fwv1.PhaseHalted
	st.Conditions = []metav1.Condition{st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonAnalysisFailed, analysisFailedMessage, time.Minute),
		cond(fwv1.ConditionStalled, metav1.ConditionTrue, fwv1.ReasonAnalysisFailed, analysisFailedMessage, time.Minute)}
	a := &st.Analyses[0]
	a.Phase, a.Failed = fwv1.AnalysisFailed, 1
	a.Measurements = append(a.Measurements, measurement(fwv1.MeasurementFailed, "0.42", 10*time.Second))
	st.CompletionTime = ago(10 * time.Second)
	return st
}

// analysisArgoCases are the states of analysis steps in the Argo CD tests:
// the health message says how the analysis stands, and a rollout halted by
// its analysis can be resumed (the analysis runs again).
func analysisArgoCases(mk func(int64, func(*fwv1.FirmwareRollout), fwv1.FirmwareRolloutStatus) *fwv1.FirmwareRollout) []argoCase {
	return []argoCase{
		{"analysis running", mk(1, withAnalysis, analysisRunningStatus()), "Progressing", analysisRunningMessage, []string{"abort", "pause"}},
		{"halted by its analysis", mk(1, withAnalysis, analysisHaltedStatus()), "Degraded", analysisFailedMessage, []string{"abort", "resume", "retry"}},
	}
}

// TestStatusShowsAnalysis: the status view shows an analysis step's verdict,
// its counts and newest measurement, and how to run a failed one again.
func TestStatusShowsAnalysis(t *testing.T) {
	kc := kubeconfig(t)
	for name, st := range map[string]fwv1.FirmwareRolloutStatus{"running": analysisRunningStatus(), "halted": analysisHaltedStatus()} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns := testEnv.Namespace(t)
			obj := newRollout(ns, "fw-2-0-7")
			withAnalysis(obj)
			createRollout(t, obj, st)
			r := runCLIWith(t, context.Background(), Options{}, "status", "fw-2-0-7", "--kubeconfig", kc, "-n", ns)
			g.Expect(r.code).To(Equal(0), r.errOut)
			golden(t, "status-analysis-"+name+".golden", strings.ReplaceAll(r.out, ns, "NAMESPACE"))
		})
	}
}

// TestResumeRerunsFailedAnalysis: `resume` on a rollout halted by its
// analysis stamps the resume annotation (the controller runs the analysis
// again) instead of refusing as it does for a halt on maxFailures.
func TestResumeRerunsFailedAnalysis(t *testing.T) {
	g := NewWithT(t)
	obj := newRollout("fleet", "fw-2-0-7")
	withAnalysis(obj)
	obj.Status = analysisHaltedStatus()
	plan, err := planControl(controlResume, obj, "kubectl stationfleet", testNow)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(plan.done).To(ContainSubstring("its failed analysis runs again"))
	g.Expect(plan.patch).To(HaveKeyWithValue("metadata", HaveKeyWithValue("annotations", HaveKey(fwv1.ResumeAnnotation))))

	obj.Status = haltedStatus() // halted on maxFailures: still refused
	_, err = planControl(controlResume, obj, "kubectl stationfleet", testNow)
	g.Expect(err).To(MatchError(ContainSubstring("cannot be resumed")))
}
