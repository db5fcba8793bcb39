package controllers

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/analysis"
)

// The pure bookkeeping of an analysis step over status.analyses: what is
// due, how a measurement is recorded, and the verdict. The next measurement
// is derived from the status alone (the newest measurement's time plus the
// interval), and each is recorded with the time it was due, so a manager
// that restarts neither loses nor repeats one: a measurement whose status
// patch did not land is simply due again.

// analysisParams are an analysis step's settings with the API defaults.
type analysisParams struct {
	interval, initialDelay time.Duration
	count, failureLimit    int32
	errorLimit             int32
}

func paramsOf(a *fwv1.AnalysisStep) analysisParams {
	p := analysisParams{interval: time.Minute, count: 3, errorLimit: 4}
	if a.Interval != nil && a.Interval.Duration > 0 {
		p.interval = a.Interval.Duration
	}
	if a.InitialDelay != nil {
		p.initialDelay = a.InitialDelay.Duration
	}
	if a.Count != nil {
		p.count = *a.Count
	}
	if a.FailureLimit != nil {
		p.failureLimit = *a.FailureLimit
	}
	if a.ConsecutiveErrorLimit != nil {
		p.errorLimit = *a.ConsecutiveErrorLimit
	}
	return p
}

// analysisEntry returns the status of analysis step i, adding a Running
// one that starts at start when the step has none yet (created).
func analysisEntry(st *fwv1.FirmwareRolloutStatus, i int, name string, start time.Time) (as *fwv1.AnalysisStatus, created bool) {
	for k := range st.Analyses {
		if int(st.Analyses[k].Step) == i {
			return &st.Analyses[k], false
		}
	}
	t := metav1.NewTime(start)
	st.Analyses = append(st.Analyses, fwv1.AnalysisStatus{Step: int32(i), Name: name, Phase: fwv1.AnalysisRunning, StartTime: &t})
	return &st.Analyses[len(st.Analyses)-1], true
}

// restartAnalysis starts a new run of a failed analysis at now.
func restartAnalysis(as *fwv1.AnalysisStatus, now time.Time) {
	t := metav1.NewTime(now)
	*as = fwv1.AnalysisStatus{Step: as.Step, Name: as.Name, Phase: fwv1.AnalysisRunning, StartTime: &t}
}

// nextDue is when the next measurement of as is due.
func nextDue(as *fwv1.AnalysisStatus, p analysisParams) time.Time {
	if n := len(as.Measurements); n > 0 {
		return as.Measurements[n-1].Time.Add(p.interval)
	}
	var start time.Time
	if as.StartTime != nil {
		start = as.StartTime.Time
	}
	return start.Add(p.initialDelay)
}

// recordMeasurement adds the outcome of the measurement due at due and
// taken at now to as, keeping the newest MaxMeasurementsListed, and sets
// the analysis's phase and message from its counters.
func recordMeasurement(as *fwv1.AnalysisStatus, p analysisParams, due, now time.Time, out analysis.Outcome) {
	for _, m := range as.Measurements {
		// Status keeps microseconds.
		if m.ScheduledAt.Truncate(time.Microsecond).Equal(due.Truncate(time.Microsecond)) {
			return // taken already: a pass that worked from a stale copy
		}
	}
	switch out.Phase {
	case fwv1.MeasurementSuccessful:
		as.Successful++
		as.ConsecutiveErrors = 0
	case fwv1.MeasurementFailed:
		as.Failed++
		as.ConsecutiveErrors = 0
	default:
		as.Errors++
		as.ConsecutiveErrors++
	}
	as.Measurements = append(as.Measurements, fwv1.AnalysisMeasurement{
		ScheduledAt: metav1.NewMicroTime(due), Time: metav1.NewMicroTime(now), Phase: out.Phase, Value: out.Value, Message: out.Message,
	})
	if n := len(as.Measurements) - fwv1.MaxMeasurementsListed; n > 0 {
		as.Measurements = append([]fwv1.AnalysisMeasurement(nil), as.Measurements[n:]...)
	}
	as.Phase, as.Message = verdict(as, p)
}

// verdict is the phase of an analysis from its counters, and its message.
func verdict(as *fwv1.AnalysisStatus, p analysisParams) (fwv1.AnalysisPhase, string) {
	counts := fmt.Sprintf("%d passed, %d failed, %d errors of %d measurements", as.Successful, as.Failed, as.Errors, p.count)
	switch {
	case as.Failed > p.failureLimit:
		return fwv1.AnalysisFailed, fmt.Sprintf("%d measurements failed, more than failureLimit allows (%d): %s", as.Failed, p.failureLimit, counts)
	case as.ConsecutiveErrors > p.errorLimit:
		return fwv1.AnalysisFailed, fmt.Sprintf("%d measurements in a row ended in an error, more than consecutiveErrorLimit allows (%d): %s",
			as.ConsecutiveErrors, p.errorLimit, lastError(as))
	case as.Successful+as.Failed >= p.count:
		return fwv1.AnalysisSuccessful, counts
	default:
		return fwv1.AnalysisRunning, counts
	}
}

// lastError is the message of the newest measurement that ended in an
// error.
func lastError(as *fwv1.AnalysisStatus) string {
	for k := len(as.Measurements) - 1; k >= 0; k-- {
		if m := as.Measurements[k]; m.Phase == fwv1.MeasurementError {
			return m.Message
		}
	}
	return ""
}

// analysisName is how messages name analysis step i.
func analysisName(i int, a *fwv1.AnalysisStep) string {
	if a.Name != "" {
		return fmt.Sprintf("analysis %s (step %d)", a.Name, i)
	}
	return fmt.Sprintf("analysis of step %d", i)
}

// failedAnalysis returns the failed analysis of the current step, if any.
func failedAnalysis(obj *fwv1.FirmwareRollout) *fwv1.AnalysisStatus {
	for k := range obj.Status.Analyses {
		if as := &obj.Status.Analyses[k]; as.Step == obj.Status.CurrentStep && as.Phase == fwv1.AnalysisFailed {
			return as
		}
	}
	return nil
}
