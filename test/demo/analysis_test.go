package demo_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/demo"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// TestDemoAnalysis runs `make demo DEMO_FLAGS=--analysis` twice, with a real
// Prometheus scraping the simulated stations: a good firmware passes its
// analysis and the rollout completes; a firmware after which the stations
// forward 40% of their uplinks (--degrade 0.4) fails it and the rollout
// halts before the rest of the fleet is written, with the measurements in
// its status and the reason in what the demo prints.
func TestDemoAnalysis(t *testing.T) {
	for _, tc := range []struct {
		name    string
		degrade float64
		phase   fwv1.RolloutPhase
	}{
		{"good firmware", 1, fwv1.PhaseCompleted},
		{"degrading firmware", 0.4, fwv1.PhaseHalted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var out bytes.Buffer
			o := demo.DefaultOptions()
			o.Stations = 20
			o.PollInterval = time.Second
			o.CUPSAddr = proc.FreeAddr(t)
			o.DashboardAddr = ""
			o.Analysis, o.Degrade = true, tc.degrade
			o.ExitWhenDone = true
			o.StateDir = t.TempDir()
			o.Out = &out
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := demo.Run(ctx, o)
			g.Expect(err).NotTo(HaveOccurred(), out.String())
			g.Expect(res.Rollout).NotTo(BeNil(), out.String())
			st := res.Rollout.Status
			g.Expect(st.Phase).To(Equal(tc.phase), out.String())
			g.Expect(st.Analyses).To(HaveLen(1), out.String())
			a := st.Analyses[0]
			g.Expect(a.Measurements).NotTo(BeEmpty())
			if tc.phase == fwv1.PhaseCompleted {
				g.Expect(a.Phase).To(Equal(fwv1.AnalysisSuccessful), out.String())
				g.Expect(st.Updated).To(BeNumerically("==", 20), out.String())
				return
			}
			g.Expect(a.Phase).To(Equal(fwv1.AnalysisFailed), out.String())
			g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady).Reason).To(Equal(fwv1.ReasonAnalysisFailed))
			g.Expect(st.Pending).To(BeNumerically(">", 0), "the last batch is not written: %s", out.String())
			g.Expect(out.String()).To(ContainSubstring("the rollout ended Halted"))
		})
	}
}
