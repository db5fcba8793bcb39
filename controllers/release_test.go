package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// own makes station i owned by the unit's rollout, written over the
// previous firmware prev.
func (u *unit) own(i int, prev string) {
	u.twins.mu.Lock()
	defer u.twins.mu.Unlock()
	crc := uint32(7)
	u.twins.apply(stationID(i), twin.FirmwarePatch(twin.Firmware{Package: "2.0.7", URL: "file:///fw/2.0.7.bin", Signature: "c2ln", KeyChecksum: &crc},
		&twin.Ownership{UID: "uid-fw", Rollout: "ns/fw", Batch: 1, WrittenAt: unitNow.Add(-time.Hour),
			Previous: twin.Firmware{Package: prev, URL: "file:///fw/" + prev + ".bin"}}))
}

func TestUnitAbortRestoresEveryStation(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 3, []fwv1.RolloutStep{batchStep("100%")})
	u.own(0, "2.0.6")
	u.own(1, "2.0.5")
	u.report(1, "2.0.7")
	s := u.scope(t)
	g.Expect(u.r.reconcileAbort(context.Background(), s)).To(Succeed(), "nothing to do without spec.abort")
	s.obj.Spec.Abort = true
	var f *Finished
	g.Expect(errors.As(u.r.reconcileAbort(context.Background(), s), &f)).To(BeTrue())
	g.Expect(f.Phase).To(Equal(fwv1.PhaseAborted))
	g.Expect(f.Message).To(ContainSubstring("restored on 2 stations"))
	for i, want := range []string{"2.0.6", "2.0.5"} {
		tw := u.twins.twin(stationID(i))
		g.Expect(tw.CUPS.Package).To(Equal(want), "abort restores even an Updated station")
		g.Expect(tw.Ownership).To(BeNil())
		g.Expect(tw.History).To(HaveLen(1), "what the rollout counted is kept in the twin's history")
	}
	g.Expect(u.twins.writes[stationID(2)]).To(BeZero(), "a station the rollout never wrote is not touched")
}

func TestUnitDeleteKeepsUpdatedStations(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 2, []fwv1.RolloutStep{batchStep("100%")})
	u.own(0, "2.0.6")
	u.own(1, "2.0.6")
	u.report(1, "2.0.7")
	s := u.scope(t)
	g.Expect(u.r.reconcileDelete(context.Background(), s)).To(Succeed(), "nothing to do for a live rollout")
	s.obj.Finalizers = []string{fwv1.Finalizer}
	now := metav1.NewTime(unitNow)
	s.obj.DeletionTimestamp = &now
	g.Expect(u.r.reconcileDelete(context.Background(), s)).To(MatchError(errObjectGone))
	g.Expect(u.twins.twin(stationID(0)).CUPS.Package).To(Equal("2.0.6"), "a station not updated gets its previous firmware back")
	g.Expect(u.twins.twin(stationID(1)).CUPS.Package).To(Equal("2.0.7"), "an updated station keeps the new firmware")
	g.Expect(u.twins.twin(stationID(1)).Ownership).To(BeNil())
	g.Expect(s.obj.Finalizers).To(BeEmpty())
}
