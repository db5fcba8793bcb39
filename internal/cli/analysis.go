package cli

import (
	"fmt"
	"strings"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// analysisTitle is how the status view's step list names an analysis step.
func analysisTitle(a *fwv1.AnalysisStep) string {
	if a.Name != "" {
		return "analysis " + a.Name
	}
	return "analysis"
}

// analysisLine is the rest of an analysis step's line in the status view:
// its verdict, the counts, and the newest measurement.
func (p printer) analysisLine(obj *fwv1.FirmwareRollout, n int32) string {
	st := &obj.Status
	var as *fwv1.AnalysisStatus
	for k := range st.Analyses {
		if st.Analyses[k].Step == n {
			as = &st.Analyses[k]
		}
	}
	if as == nil {
		if n < st.CurrentStep {
			return "done"
		}
		return "not started"
	}
	a := obj.Spec.Strategy.Steps[n-1].Analysis
	count := int32(3)
	if a.Count != nil {
		count = *a.Count
	}
	counts := fmt.Sprintf("%d/%d passed", as.Successful, count)
	if as.Failed > 0 {
		counts += fmt.Sprintf(", %d failed", as.Failed)
	}
	if as.Errors > 0 {
		counts += fmt.Sprintf(", %d errors", as.Errors)
	}
	var verdict string
	switch as.Phase {
	case fwv1.AnalysisSuccessful:
		verdict = p.paint(ansiGreen, "passed")
	case fwv1.AnalysisFailed:
		verdict = p.paint(ansiRed, "failed")
	default:
		verdict = p.paint(ansiYellow, "running")
	}
	line := verdict + "  " + counts
	if k := len(as.Measurements); k > 0 {
		m := as.Measurements[k-1]
		last := m.Value
		if m.Phase == fwv1.MeasurementError {
			last = "error: " + m.Message
		}
		line += fmt.Sprintf("; last %s %s (%s)", strings.ToLower(string(m.Phase)), last, p.ago(m.Time.Time))
	}
	if as.Phase == fwv1.AnalysisFailed && st.Phase == fwv1.PhaseHalted {
		line += fmt.Sprintf("; `%s resume %s` runs it again", p.cmd, obj.Name)
	}
	return line
}

// haltedByAnalysis reports whether the rollout is Halted because the
// analysis of its current step failed: a resume then runs the analysis
// again.
func haltedByAnalysis(obj *fwv1.FirmwareRollout) bool {
	st := &obj.Status
	if st.Phase != fwv1.PhaseHalted {
		return false
	}
	for _, as := range st.Analyses {
		if as.Step == st.CurrentStep && as.Phase == fwv1.AnalysisFailed {
			return true
		}
	}
	return false
}
