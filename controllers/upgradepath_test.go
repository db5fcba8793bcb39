package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"k8s.io/apimachinery/pkg/api/meta"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUpgradePathSkipsOtherStations: a rollout of 2.0.7 with upgradeFrom
// ["2.0.6"] over six stations on 2.0.6 and two on 2.0.5. The one on 2.0.5
// that CUPS has seen is never written; the one CUPS never saw is written,
// refused by CUPS at its first poll and put back as it was. Both end
// Skipped NotOnUpgradePath, neither is Failed, and neither takes a place in
// a batch: the first batch of 6 holds the six stations on the path.
func TestUpgradePathSkipsOtherStations(t *testing.T) {
	g := NewWithT(t)
	const seen, unseen = 6, 7
	w := newWorld(t, 8, func(i int, sp *embedded.StationSpec) {
		if i == seen || i == unseen {
			sp.Package, sp.Current = "2.0.5", nil
		}
		if i == unseen {
			sp.Behavior.StopPolling = true // CUPS has never seen it
		}
	})
	g.Eventually(func() *twin.Observation { return w.twinOf(w.id(seen)).Observation }, 10*time.Second, 50*time.Millisecond).
		ShouldNot(BeNil(), "CUPS saw station %d", seen)
	before := map[int]*twin.Twin{seen: w.twinOf(w.id(seen)), unseen: w.twinOf(w.id(unseen))}

	r := w.rollout("r", batch("6"), pause(0), batch("100%"))
	r.Spec.Firmware.UpgradeFrom = []string{"2.0.6"}
	r.Spec.Strategy.MaxFailures = nil
	w.create(r)
	// The unseen station polls for the first time once the rollout wrote
	// it (in the first batch or, after the resume, in the last).
	g.Eventually(func() bool {
		return w.twinOf(w.id(unseen)).Ownership != nil || w.get("r").Status.Phase == fwv1.PhasePaused
	}, 30*time.Second, 50*time.Millisecond).Should(BeTrue())
	w.stations[unseen].SetBehavior(stationsim.Behavior{})
	r = w.waitPhase("r", fwv1.PhasePaused, 30*time.Second)
	g.Expect(r.Status.Batches).To(HaveLen(1), statusString(r))
	g.Expect(r.Status.Batches[0].Size).To(BeNumerically("==", 6), "a skipped station takes no place in a batch: %s", statusString(r))
	g.Expect(r.Status.Batches[0].Updated).To(BeNumerically("==", 6), statusString(r))

	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Annotations = map[string]string{fwv1.ResumeAnnotation: "now"} })
	r = w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)
	st := r.Status
	g.Expect(st.Targets).To(BeNumerically("==", 8))
	g.Expect(st.Updated).To(BeNumerically("==", 6), statusString(r))
	g.Expect(st.Skipped).To(BeNumerically("==", 2), statusString(r))
	g.Expect(st.SkippedNotOnUpgradePath).To(BeNumerically("==", 2), statusString(r))
	g.Expect(st.Failed+st.Pending+st.InProgress).To(BeZero(), statusString(r))
	g.Expect(st.Failures).To(BeEmpty())
	ready := meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady)
	g.Expect(ready.Status).To(BeEquivalentTo("True"))
	g.Expect(ready.Message).To(ContainSubstring("2 skipped as not on the upgrade path"))

	writes := w.hub.RolloutWrites(string(r.UID))
	g.Expect(writes).NotTo(HaveKey(w.id(seen)), "the station CUPS saw off the path was written")
	g.Expect(writes).To(HaveKeyWithValue(w.id(unseen), 1))
	for i := range 6 {
		g.Expect(w.stations[i].Package()).To(Equal("2.0.7"), "station %d", i)
		g.Expect(w.twinOf(w.id(i)).Ownership.UpgradeFrom).To(Equal([]string{"2.0.6"}), "station %d", i)
	}
	expectOffPathUntouched(t, w, r, before, seen, unseen)
}

// expectOffPathUntouched checks that the stations seen and unseen, both on
// 2.0.5, end as they were before the rollout r, Skipped NotOnUpgradePath;
// unseen (written, then put back) with a history entry that says so.
func expectOffPathUntouched(t *testing.T, w *world, r *fwv1.FirmwareRollout, before map[int]*twin.Twin, seen, unseen int) {
	g := NewWithT(t)
	for _, i := range []int{seen, unseen} {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).To(BeNil(), "station %d", i)
		g.Expect(tw.CUPS).To(Equal(before[i].CUPS), "station %d desires what it did before the rollout", i)
		g.Expect(w.stations[i].Package()).To(Equal("2.0.5"), "station %d", i)
		g.Expect(w.stations[i].Stats().UpdatesApplied).To(BeZero(), "station %d", i)
		o := rules.EvaluateStation(tw, r, nil, time.Now())
		g.Expect(o.State).To(Equal(fwv1.OutcomeSkipped), "station %d", i)
		g.Expect(o.Reason).To(Equal("NotOnUpgradePath"), "station %d", i)
		g.Expect(o.Message).To(HavePrefix(`reports package "2.0.5"; firmware.upgradeFrom allows "2.0.6"`), "station %d", i)
	}
	g.Expect(w.twinOf(w.id(seen)).History).To(BeEmpty())
	h := w.twinOf(w.id(unseen)).History
	g.Expect(h).To(HaveLen(1))
	t.Logf("station %d was written by batch %d, then put back", unseen, h[0].Batch)
	g.Expect(h[0]).To(MatchFields(IgnoreExtras, Fields{"UID": Equal(string(r.UID)), "Outcome": Equal("Skipped"),
		"Reason": Equal("NotOnUpgradePath"), "Restored": BeTrue()}))
}
