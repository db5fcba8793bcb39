package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/analysis"
)

// stepAnalysis runs the analysis step i: one measurement per pass when one
// is due, until the analysis passes (the step is done) or fails (halt or
// abort, as onFailure says). spec.paused and abort stop it as they stop
// any step: the phases before reconcileSteps end the pass first, and
// checkAnalyses has stalled a rollout whose condition does not compile.
func (r *FirmwareRolloutReconciler) stepAnalysis(ctx context.Context, s *rolloutScope, i int, a *fwv1.AnalysisStep) error {
	st := &s.obj.Status
	p := paramsOf(a)
	as, created := analysisEntry(st, i, a.Name, st.StepStartTime.Time)
	switch as.Phase {
	case fwv1.AnalysisSuccessful:
		return nil
	case fwv1.AnalysisFailed:
		return r.analysisFailed(ctx, s, i, a, as)
	}
	if created {
		r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonAnalysisRunning,
			fmt.Sprintf("step %d: %s started: %d measurements, every %s", i, analysisName(i, a), p.count, p.interval))
	}
	due := nextDue(as, p)
	if s.now.Before(due) {
		return r.analysisWaiting(s, i, a, as, due)
	}
	out := r.measure(ctx, s, i, a)
	recordMeasurement(as, p, due, s.now, out)
	r.announceMeasurement(ctx, s, i, a, as, out)
	switch as.Phase {
	case fwv1.AnalysisSuccessful:
		r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonAnalysisPassed, fmt.Sprintf("step %d: %s passed: %s", i, analysisName(i, a), as.Message))
		return nil
	case fwv1.AnalysisFailed:
		return r.analysisFailed(ctx, s, i, a, as)
	}
	return r.analysisWaiting(s, i, a, as, nextDue(as, p))
}

// checkAnalyses stalls a rollout whose remaining analysis steps do not
// compile before it writes another twin (the first one included), so that
// a cluster without the admission webhook finds out before batch 1, not
// when the analysis step comes. The steps already done are not checked
// again.
func (r *FirmwareRolloutReconciler) checkAnalyses(ctx context.Context, s *rolloutScope) error {
	steps := s.obj.Spec.Strategy.Steps
	for i := max(int(s.obj.Status.CurrentStep), 1); i <= len(steps); i++ {
		a := steps[i-1].Analysis
		if a == nil {
			continue
		}
		err := checkAnalysis(a)
		if err == nil {
			continue
		}
		return r.invalidStrategy(ctx, s, fmt.Sprintf("%s: %v; no further step starts until it is fixed", analysisName(i, a), err))
	}
	return nil
}

// checkAnalysis compiles the step's condition and parses its query, as the
// admission webhook does: a cluster that runs without the webhook gets a
// stalled rollout with the compiler's message instead of a run of errors.
func checkAnalysis(a *fwv1.AnalysisStep) error {
	if _, err := analysis.CompileCondition(a.SuccessCondition); err != nil {
		return err
	}
	return analysis.ParseQuery(a.Query)
}

// analysisWaiting ends the pass until the next measurement is due.
func (r *FirmwareRolloutReconciler) analysisWaiting(s *rolloutScope, i int, a *fwv1.AnalysisStep, as *fwv1.AnalysisStatus, due time.Time) error {
	requeue := due.Sub(s.now) + 10*time.Millisecond
	if w := r.requeueWhileInFlight(s); w < requeue {
		requeue = w
	}
	so := as.Message + lastValue(as)
	if so == "" {
		so = fmt.Sprintf("no measurement yet of %d", paramsOf(a).count)
	}
	return &Waiting{Phase: fwv1.PhaseProgressing, Reason: fwv1.ReasonAnalysisRunning, RequeueAfter: requeue,
		Message: fmt.Sprintf("step %d of %d: %s running: %s; next measurement at %s", i, len(s.obj.Spec.Strategy.Steps),
			analysisName(i, a), so, due.UTC().Format(time.RFC3339))}
}

// lastValue is what a message says of the newest measurement.
func lastValue(as *fwv1.AnalysisStatus) string {
	n := len(as.Measurements)
	if n == 0 {
		return ""
	}
	m := as.Measurements[n-1]
	if m.Phase == fwv1.MeasurementError {
		return fmt.Sprintf(" (last: error: %s)", m.Message)
	}
	return fmt.Sprintf(" (last: %s, %s)", m.Value, m.Phase)
}

// announceMeasurement emits a Warning Event for a measurement that failed
// or ended in an error.
func (r *FirmwareRolloutReconciler) announceMeasurement(ctx context.Context, s *rolloutScope, i int, a *fwv1.AnalysisStep, as *fwv1.AnalysisStatus, out analysis.Outcome) {
	n := as.Successful + as.Failed + as.Errors
	switch out.Phase {
	case fwv1.MeasurementFailed:
		r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonMeasurementFailed,
			fmt.Sprintf("step %d: %s: measurement %d failed: %s does not satisfy %s", i, analysisName(i, a), n, out.Value, a.SuccessCondition))
	case fwv1.MeasurementError:
		r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonMeasurementError,
			fmt.Sprintf("step %d: %s: measurement %d: %s", i, analysisName(i, a), n, out.Message))
	}
}

// analysisFailed halts the rollout, or aborts it under onFailure Abort. A
// new value of the resume annotation runs a halted analysis again.
func (r *FirmwareRolloutReconciler) analysisFailed(ctx context.Context, s *rolloutScope, i int, a *fwv1.AnalysisStep, as *fwv1.AnalysisStatus) error {
	st := &s.obj.Status
	msg := fmt.Sprintf("step %d: %s failed: %s", i, analysisName(i, a), as.Message)
	if a.OnFailure == fwv1.FailurePolicyAbort {
		r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonAnalysisFailed, msg)
		return r.abortBySelf(ctx, s, fwv1.ReasonAnalysisAborted,
			msg+": onFailure Abort restores the previous firmware on every station this rollout wrote")
	}
	if resume := s.obj.Annotations[fwv1.ResumeAnnotation]; resume != "" && resume != st.LastHandledResume {
		st.LastHandledResume = resume
		st.CompletionTime = nil
		restartAnalysis(as, s.now)
		r.event(ctx, s.obj, corev1.EventTypeNormal, fwv1.ReasonResumed, fmt.Sprintf("step %d: resumed: %s runs again", i, analysisName(i, a)))
		return r.stepAnalysis(ctx, s, i, a)
	}
	if st.Phase != fwv1.PhaseHalted {
		now := metav1.NewTime(s.now)
		st.CompletionTime = &now
		r.event(ctx, s.obj, corev1.EventTypeWarning, fwv1.ReasonAnalysisFailed, msg)
	}
	return &Stalling{Phase: fwv1.PhaseHalted, Reason: fwv1.ReasonAnalysisFailed, RequeueAfter: r.requeueWhileInFlight(s),
		Err: fmt.Errorf("%s; no further step runs. Resume to run the analysis again (kubectl stationfleet resume %s), abort to restore the previous firmware, or delete the rollout",
			msg, s.obj.Name)}
}

// measure takes one measurement of analysis step i.
func (r *FirmwareRolloutReconciler) measure(ctx context.Context, s *rolloutScope, i int, a *fwv1.AnalysisStep) analysis.Outcome {
	creds, err := r.analysisCredentials(ctx, s.obj.Namespace, a.Prometheus.SecretRef)
	if err != nil {
		return analysis.Outcome{Phase: fwv1.MeasurementError, Message: err.Error()}
	}
	q, err := analysis.RenderQuery(a.Query, queryVars(s, i))
	if err != nil {
		return analysis.Outcome{Phase: fwv1.MeasurementError, Message: err.Error()}
	}
	req := analysis.Request{Address: a.Prometheus.Address, Credentials: creds, Query: q, Condition: a.SuccessCondition, Time: s.now}
	if a.Prometheus.Timeout != nil {
		req.Timeout = a.Prometheus.Timeout.Duration
	}
	return r.Analyzer.Measure(ctx, req)
}

// queryVars are the template variables of analysis step i.
func queryVars(s *rolloutScope, i int) analysis.Vars {
	obj := s.obj
	v := analysis.Vars{Step: i, Batch: len(obj.Status.Batches), Rollout: obj.Name, Namespace: obj.Namespace,
		Package: obj.Spec.Firmware.Package, Labels: obj.Labels}
	uid := s.uid()
	for _, st := range s.view.all {
		if st.Batch() > 0 && (st.OwnerUID() == uid || st.Counted() != "") {
			v.Stations = append(v.Stations, st.ID)
		}
	}
	return v
}

// analysisCredentials reads the analysis Secret (uncached: no informer over
// every Secret of the cluster). Errors name the Secret and the key, never
// a value.
func (r *FirmwareRolloutReconciler) analysisCredentials(ctx context.Context, ns string, ref *fwv1.LocalObjectReference) (analysis.Credentials, error) {
	var c analysis.Credentials
	if ref == nil {
		return c, nil
	}
	var sec corev1.Secret
	if err := r.apiReader().Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return c, fmt.Errorf("no Secret %s in namespace %s (analysis.prometheus.secretRef)", ref.Name, ns)
		}
		if apierrors.IsForbidden(err) {
			return c, fmt.Errorf("the manager may not read the Secret %s in namespace %s (analysis.prometheus.secretRef): "+
				"grant its service account get on that Secret by name (README, \"Analysis steps\")", ref.Name, ns)
		}
		return c, fmt.Errorf("read the analysis Secret %s: %w", ref.Name, err)
	}
	c.BearerToken = string(sec.Data[fwv1.AnalysisSecretToken])
	c.Username = string(sec.Data[fwv1.AnalysisSecretUsername])
	c.Password = string(sec.Data[fwv1.AnalysisSecretPassword])
	c.CA = sec.Data[fwv1.AnalysisSecretCA]
	if c.BearerToken == "" && c.Username == "" && len(c.CA) == 0 {
		return c, fmt.Errorf("the analysis Secret %s has none of the keys %s, %s/%s, %s",
			ref.Name, fwv1.AnalysisSecretToken, fwv1.AnalysisSecretUsername, fwv1.AnalysisSecretPassword, fwv1.AnalysisSecretCA)
	}
	return c, nil
}
