package controllers

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUnitUpgradePath: with firmware.upgradeFrom ["2.0.6"], a batch of 3
// over six stations writes none that CUPS saw on 2.0.5 (station 0 in the
// view; the first in the batch's order only on the fresh twin), and takes
// three of those never seen. One of them CUPS then refuses: releaseOffPath puts its twin back
// (once), and the batch takes the next eligible station in its place.
func TestUnitUpgradePath(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	u := newUnit(t, 6, []fwv1.RolloutStep{batchStep("3"), batchStep("100%")})
	u.obj.Spec.Firmware.UpgradeFrom = []string{"2.0.6"}
	g.Expect(u.client.Update(ctx, u.obj)).To(Succeed())
	for i := range 6 {
		u.twins.mu.Lock()
		u.twins.apply(stationID(i), &twin.Patch{Tags: map[string]any{twin.TagRoot: map[string]any{twin.TagObserved: nil}}})
		u.twins.mu.Unlock()
	}
	u.report(0, "2.0.5")
	written := func() (ids []string) {
		for i := range 6 {
			if o := u.twins.twin(stationID(i)).Ownership; o != nil && o.UID == "uid-fw" {
				g.Expect(o.UpgradeFrom).To(Equal([]string{"2.0.6"}), "the ownership record carries upgradeFrom for CUPS")
				ids = append(ids, stationID(i))
			}
		}
		return ids
	}

	s := u.loaded(t)
	s.obj.Status.CurrentStep = 1
	// The first station the batch would take is seen on 2.0.5 after the
	// view was loaded.
	late := s.view.all[s.view.unwritten[0]].ID
	u.twins.mu.Lock()
	u.twins.apply(late, twin.ObservationPatch(twin.Observation{Package: "2.0.5"}))
	u.twins.mu.Unlock()
	var w *Waiting
	g.Expect(errors.As(u.r.stepBatch(ctx, s, 1, s.obj.Spec.Strategy.Steps[0]), &w)).To(BeTrue())
	first := written()
	g.Expect(first).To(HaveLen(3), "a station off the path takes no place in the batch")
	g.Expect(first).NotTo(ContainElement(stationID(0)))
	g.Expect(first).NotTo(ContainElement(late))
	g.Expect(u.twins.writes[stationID(0)] + u.twins.writes[late]).To(BeZero())
	g.Expect(s.obj.Status.Skipped).To(BeEquivalentTo(2))
	g.Expect(s.obj.Status.SkippedNotOnUpgradePath).To(BeEquivalentTo(2))
	g.Expect(w.Message).To(ContainSubstring("2 skipped as not on the upgrade path"))

	x := first[0]
	refuseAndPutBack(t, u, x)

	// The batch takes the next eligible station; x is not written again.
	s = u.loaded(t)
	s.obj.Status.CurrentStep = 1
	g.Expect(errors.As(u.r.stepBatch(ctx, s, 1, s.obj.Spec.Strategy.Steps[0]), &w)).To(BeTrue())
	now := written()
	g.Expect(now).To(HaveLen(3))
	g.Expect(now).NotTo(ContainElement(x))
	g.Expect(now).NotTo(ContainElement(late))
	g.Expect(s.obj.Status.SkippedNotOnUpgradePath).To(BeEquivalentTo(3))
	g.Expect(s.obj.Status.InProgress).To(BeEquivalentTo(3))
}

// refuseAndPutBack makes CUPS refuse station x, which the rollout wrote,
// as off the upgrade path, and checks that releaseOffPath puts its twin
// back as it was, once.
func refuseAndPutBack(t *testing.T, u *unit, x string) {
	g := NewWithT(t)
	ctx := context.Background()
	// CUPS refuses x at its first poll.
	u.twins.mu.Lock()
	u.twins.apply(x, twin.ObservationPatch(twin.Observation{Package: "2.0.5",
		Refusal: twin.RefusalNotOnUpgradePath, RefusedPackage: "2.0.7", RefusedRollout: "uid-fw"}))
	u.twins.mu.Unlock()
	u.r.forceFullRead(u.obj)
	s := u.loaded(t)
	g.Expect(s.obj.Status.Failed).To(BeZero(), "not a failure")
	g.Expect(u.r.releaseOffPath(ctx, s)).To(Succeed())
	tw := u.twins.twin(x)
	g.Expect(tw.Ownership).To(BeNil())
	g.Expect(tw.CUPS.Firmware.IsZero()).To(BeTrue(), "the previous (empty) firmware fields are back: %+v", tw.CUPS.Firmware)
	g.Expect(tw.History).To(HaveLen(1))
	g.Expect(tw.History[0]).To(Equal(twin.HistoryEntry{Rollout: "ns/fw", UID: "uid-fw", Batch: 1, Outcome: "Skipped",
		Reason: "NotOnUpgradePath", Restored: true, At: unitNow}))
	g.Expect(u.cache.Invalidated).To(ContainElement(x))
	g.Expect(u.events()).To(ContainElement(ContainSubstring("1 stations report a package firmware.upgradeFrom does not list")))
	writes := u.twins.writes[x]
	g.Expect(u.r.releaseOffPath(ctx, u.loaded(t))).To(Succeed())
	g.Expect(u.twins.writes[x]).To(Equal(writes), "put back once")
}
