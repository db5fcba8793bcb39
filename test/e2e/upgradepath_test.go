package e2e

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	"k8s.io/apimachinery/pkg/api/meta"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUpgradePathLeavesOtherStationsUntouched: a rollout of 2.0.7 that may
// only be installed over 2.0.6 (firmware.upgradeFrom), over three stations
// on 2.0.6 and two on 2.0.5. The stations on 2.0.6 end Updated. The one on
// 2.0.5 that the CUPS server had seen is never written: its twin's desired
// properties and tags stay exactly as they were. The one on 2.0.5 that the
// CUPS server had never seen is written, refused by the CUPS server at its
// first poll, and its twin put back as it was. Both end Skipped
// NotOnUpgradePath; none is Failed, and neither ever got the firmware.
func TestUpgradePathLeavesOtherStationsUntouched(t *testing.T) {
	g := NewWithT(t)
	const seen, unseen = 3, 4
	w := newWorld(t, worldOptions{stations: 5, tweak: func(i int, sp *embedded.StationSpec) {
		if i == seen || i == unseen {
			sp.Package, sp.Current = "2.0.5", nil
		}
		if i == unseen {
			sp.Behavior.StopPolling = true
		}
	}})
	g.Eventually(func() *twin.Observation { return w.twinOf(seen).Observation }, 10*time.Second, 50*time.Millisecond).
		ShouldNot(BeNil(), "the CUPS server never saw station %d", seen)
	before := map[int]*twin.Twin{seen: w.twinOf(seen), unseen: w.twinOf(unseen)}

	r := w.rollout("r")
	r.Spec.Firmware.UpgradeFrom = []string{oldPackage}
	w.create(r)
	// The unseen station polls for the first time once the rollout wrote it.
	g.Eventually(func() *twin.Ownership { return w.twinOf(unseen).Ownership }, 20*time.Second, 50*time.Millisecond).
		ShouldNot(BeNil(), "the station the CUPS server never saw is written")
	w.stations[unseen].SetBehavior(stationsim.Behavior{})
	r = w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)

	st := r.Status
	g.Expect(st.Updated).To(BeNumerically("==", 3), statusString(r))
	g.Expect(st.Skipped).To(BeNumerically("==", 2), statusString(r))
	g.Expect(st.SkippedNotOnUpgradePath).To(BeNumerically("==", 2), statusString(r))
	g.Expect(st.Failed).To(BeZero(), statusString(r))
	g.Expect(st.Failures).To(BeEmpty())
	ready := meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady)
	g.Expect(ready.Message).To(ContainSubstring("2 skipped as not on the upgrade path"))
	for i := range 3 {
		g.Expect(w.stations[i].Package()).To(Equal(newPackage), "station %d", i)
	}
	// Stations 0-2 and the unseen one were written once, the seen one never.
	g.Expect(w.hub.RolloutWrites(string(r.UID))).NotTo(HaveKey(w.id(seen)))
	w.expectWrittenOnce(g, r, 4)

	tw := w.twinOf(seen)
	g.Expect(tw.CUPS).To(Equal(before[seen].CUPS), "the seen station's desired properties changed")
	g.Expect(tw.Tags).To(Equal(before[seen].Tags), "the seen station's tags changed")

	tw = w.twinOf(unseen)
	g.Expect(tw.CUPS).To(Equal(before[unseen].CUPS), "the unseen station's desired properties are not as they were")
	g.Expect(tw.Ownership).To(BeNil())
	g.Expect(tw.History).To(ConsistOf(MatchFields(IgnoreExtras, Fields{
		"UID": Equal(string(r.UID)), "Outcome": Equal("Skipped"), "Reason": Equal("NotOnUpgradePath"), "Restored": BeTrue()})))
	g.Expect(tw.Observation.Refusal).To(Equal(twin.RefusalNotOnUpgradePath))

	for _, i := range []int{seen, unseen} {
		g.Expect(w.stations[i].Package()).To(Equal("2.0.5"), "station %d", i)
		s := w.stations[i].Stats()
		g.Expect(s.UpdatesApplied+s.UpdatesRefused).To(BeZero(), "station %d was sent an update", i)
	}
}
