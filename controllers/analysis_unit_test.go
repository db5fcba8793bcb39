package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/analysis"
)

// TestUnitAnalysisBookkeeping: the verdict after each measurement, the
// bounded list, the due times derived from status, and a measurement
// recorded twice (a pass from a stale copy) counted once.
func TestUnitAnalysisBookkeeping(t *testing.T) {
	g := NewWithT(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &fwv1.AnalysisStep{Interval: &metav1.Duration{Duration: time.Minute}, InitialDelay: &metav1.Duration{Duration: 5 * time.Minute},
		Count: ptr.To[int32](7), FailureLimit: ptr.To[int32](1), ConsecutiveErrorLimit: ptr.To[int32](1)}
	p := paramsOf(a)
	st := &fwv1.FirmwareRolloutStatus{}
	as, created := analysisEntry(st, 3, "x", start)
	g.Expect(created).To(BeTrue())
	g.Expect(nextDue(as, p)).To(Equal(start.Add(5 * time.Minute)))

	now := start.Add(5 * time.Minute)
	take := func(phase fwv1.MeasurementPhase) {
		due := nextDue(as, p)
		now = due.Add(1500 * time.Millisecond) // measured a little late
		recordMeasurement(as, p, due, now, analysis.Outcome{Phase: phase, Value: "0.9"})
	}
	for _, ph := range []fwv1.MeasurementPhase{fwv1.MeasurementSuccessful, fwv1.MeasurementError, fwv1.MeasurementSuccessful,
		fwv1.MeasurementFailed, fwv1.MeasurementSuccessful, fwv1.MeasurementSuccessful} {
		take(ph)
		g.Expect(as.Phase).To(Equal(fwv1.AnalysisRunning), "after %s: %s", ph, as.Message)
	}
	g.Expect(as.Measurements).To(HaveLen(fwv1.MaxMeasurementsListed))
	g.Expect(nextDue(as, p)).To(Equal(now.Add(time.Minute)), "an interval after the newest measurement")

	// The same due time again (a stale pass) is not counted twice.
	last := as.Measurements[len(as.Measurements)-1]
	before := *as.DeepCopy()
	recordMeasurement(as, p, last.ScheduledAt.Time, now, analysis.Outcome{Phase: fwv1.MeasurementFailed})
	g.Expect(*as).To(Equal(before))

	take(fwv1.MeasurementFailed) // 2 failed > failureLimit 1
	g.Expect(as.Phase).To(Equal(fwv1.AnalysisFailed))
	g.Expect(as.Message).To(HavePrefix("2 measurements failed, more than failureLimit allows (1)"))

	restartAnalysis(as, now)
	g.Expect(as.Phase).To(Equal(fwv1.AnalysisRunning))
	g.Expect(as.Measurements).To(BeEmpty())
	take(fwv1.MeasurementError)
	take(fwv1.MeasurementError) // 2 in a row > consecutiveErrorLimit 1
	g.Expect(as.Phase).To(Equal(fwv1.AnalysisFailed))
	g.Expect(as.Message).To(ContainSubstring("consecutiveErrorLimit"))

	again, created := analysisEntry(st, 3, "x", start)
	g.Expect(created).To(BeFalse())
	g.Expect(again).To(BeIdenticalTo(as))
}
