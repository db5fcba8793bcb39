package rules

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUpgradePathOutcomes: with firmware.upgradeFrom, a station off the
// path is Skipped NotOnUpgradePath, never Failed: one the CUPS server
// already saw is not written (Classify), one written before CUPS saw it is
// skipped once CUPS refused it (Evaluate). Stations on the path, on the
// target package or never seen are treated as without upgradeFrom.
func TestUpgradePathOutcomes(t *testing.T) {
	written := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p := Params{Package: "v2", MaxUpdateAttempts: 3, ProgressDeadline: time.Hour, Now: written.Add(30 * time.Minute),
		UpgradeFrom: []string{"v1.0", "v1.1"}}
	const msg = `reports package "v0.9"; firmware.upgradeFrom allows "v1.0", "v1.1"`
	cases := []struct {
		name   string
		s      Station
		state  fwv1.StationOutcome
		reason string
	}{
		{"seen off the path, unwritten: skipped, not written", Station{Package: "v0.9", Seen: true}, fwv1.OutcomeSkipped, "NotOnUpgradePath"},
		{"seen without version.txt, unwritten: skipped", Station{Seen: true}, fwv1.OutcomeSkipped, "NotOnUpgradePath"},
		{"seen on the path, unwritten: pending", Station{Package: "v1.1", Seen: true}, fwv1.OutcomePending, ""},
		{"seen on the target package, unwritten: pending (written, then Updated)", Station{Package: "v2", Seen: true}, fwv1.OutcomePending, ""},
		{"never seen, unwritten: pending (written; CUPS decides)", Station{}, fwv1.OutcomePending, ""},
		{"owned by another active rollout: that comes first", Station{Package: "v0.9", Seen: true, OwnerUID: "other", OwnerName: "ns/b"}, fwv1.OutcomeSkipped, "OwnedByAnotherRollout"},
		{"written, CUPS refused it off the path: skipped, not failed",
			Station{OwnerUID: "me", WrittenAt: written, Package: "v0.9", Refusal: twin.RefusalNotOnUpgradePath, RefusedPackage: "v2"}, fwv1.OutcomeSkipped, "NotOnUpgradePath"},
		{"written, refused for another package: in progress",
			Station{OwnerUID: "me", WrittenAt: written, Package: "v0.9", Refusal: twin.RefusalNotOnUpgradePath, RefusedPackage: "v3"}, fwv1.OutcomeInProgress, ""},
		{"written, not yet seen: in progress",
			Station{OwnerUID: "me", WrittenAt: written}, fwv1.OutcomeInProgress, ""},
		{"written, reports the target package: updated",
			Station{OwnerUID: "me", WrittenAt: written, Package: "v2"}, fwv1.OutcomeUpdated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := Classify(tc.s, "me", map[string]bool{"other": true}, p)
			g.Expect(o.State).To(Equal(tc.state))
			g.Expect(o.Reason).To(Equal(tc.reason))
			if tc.reason == "NotOnUpgradePath" && tc.s.Package != "" {
				g.Expect(o.Message).To(Equal(msg))
			}
		})
	}

	// Without upgradeFrom, no station is ever off the path.
	g := NewWithT(t)
	p.UpgradeFrom = nil
	g.Expect(Classify(Station{Package: "v0.9", Seen: true}, "me", nil, p).State).To(Equal(fwv1.OutcomePending))
}

// TestNotOnUpgradePathIsNoFailure: the refusal→failure table never turns
// NotOnUpgradePath into a failure; the skip table maps it, and no refusal
// is in both.
func TestNotOnUpgradePathIsNoFailure(t *testing.T) {
	g := NewWithT(t)
	_, failure := FailureForRefusal(twin.RefusalNotOnUpgradePath)
	g.Expect(failure).To(BeFalse())
	skip, ok := SkipForRefusal(twin.RefusalNotOnUpgradePath)
	g.Expect(ok).To(BeTrue())
	g.Expect(skip).To(Equal(fwv1.SkipNotOnUpgradePath))
	for r := range skipForRefusal {
		_, both := failureForRefusal[r]
		g.Expect(both).To(BeFalse(), "refusal %s is both a failure and a skip", r)
	}
	for _, r := range []string{twin.RefusalKeyMismatch, twin.RefusalModelMismatch, twin.RefusalNotApplied, "SomethingNew"} {
		_, ok := SkipForRefusal(r)
		g.Expect(ok).To(BeFalse(), r)
	}
	g.Expect(OnUpgradePath("anything", nil)).To(BeTrue())
	g.Expect(OffUpgradePath(false, "", "v2", []string{"v1"})).To(BeFalse(), "never seen: not known to be off the path")
	g.Expect(OffUpgradePath(true, "", "v2", []string{"v1"})).To(BeTrue(), "seen without version.txt: off the path")
	g.Expect(NotOnUpgradePathMessage("", []string{"v1"})).To(Equal(`reports no package (no version.txt); firmware.upgradeFrom allows "v1"`))
}

// TestEvaluateStationLetGoOffThePath: a station the rollout wrote, CUPS
// refused and the controller put back carries a history entry Skipped
// NotOnUpgradePath; the CLI shows it skipped with why, and eligible again
// (Pending) once it reports a package on the path.
func TestEvaluateStationLetGoOffThePath(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	a := &fwv1.FirmwareRollout{}
	a.Namespace, a.Name, a.UID = "ns", "a", "uid-a"
	a.Spec.Firmware.Package, a.Spec.Firmware.UpgradeFrom = "v2", []string{"v1"}
	tw := &twin.Twin{DeviceID: "0000000000000001", CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "v2"}},
		Ownership:   &twin.Ownership{UID: "uid-a", Rollout: "ns/a", Batch: 1, WrittenAt: now.Add(-time.Minute), UpgradeFrom: []string{"v1"}},
		Observation: &twin.Observation{Package: "v0", Refusal: twin.RefusalNotOnUpgradePath, RefusedPackage: "v2", RefusedRollout: "uid-a"}}
	o := EvaluateStation(tw, a, nil, now)
	g.Expect(o.State).To(Equal(fwv1.OutcomeSkipped))
	g.Expect(o.Reason).To(Equal("NotOnUpgradePath"))

	e := HistoryEntry(tw, a, now, true)
	g.Expect(e.Outcome).To(Equal("Skipped"))
	g.Expect(e.Reason).To(Equal("NotOnUpgradePath"))
	tw.Ownership, tw.CUPS.Firmware = nil, twin.Firmware{}
	tw.History = twin.WithHistory(nil, e)

	o = EvaluateStation(tw, a, nil, now)
	g.Expect(o.State).To(Equal(fwv1.OutcomeSkipped))
	g.Expect(o.Reason).To(Equal("NotOnUpgradePath"))
	g.Expect(o.Message).To(Equal(`reports package "v0"; firmware.upgradeFrom allows "v1"; batch 1 wrote it before CUPS saw it, and its twin was put back as it was`))
	g.Expect(o.Batch).To(BeZero(), "it is in no batch")

	tw.Observation.Package = "v1"
	g.Expect(EvaluateStation(tw, a, nil, now).State).To(Equal(fwv1.OutcomePending))
}
