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

func TestUnitStepBatchWritesSkipsAndRetries(t *testing.T) {
	g := NewWithT(t)
	other := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", UID: "uid-other"}}
	u := newUnit(t, 5, []fwv1.RolloutStep{batchStep("3"), batchStep("100%")}, other)
	// Station 4 belongs to another active rollout; station 3's writes fail.
	u.twins.add(stationID(4), twin.FirmwarePatch(twin.Firmware{Package: "9.9.9"}, &twin.Ownership{UID: "uid-other", Rollout: "ns/other"}))
	u.twins.fail[stationID(3)] = errors.New("iothub: 503")

	s := u.loaded(t)
	s.obj.Status.CurrentStep = 1
	err := u.r.stepBatch(context.Background(), s, 1, s.obj.Spec.Strategy.Steps[0])
	owned := 0
	for i := range 5 {
		if o := u.twins.twin(stationID(i)).Ownership; o != nil && o.UID == "uid-fw" {
			owned++
			g.Expect(u.twins.twin(stationID(i)).CUPS.Package).To(Equal("2.0.7"))
			g.Expect(o.Previous.Package).To(BeEmpty())
		}
	}
	g.Expect(u.twins.twin(stationID(4)).Ownership.UID).To(Equal("uid-other"), "a station another active rollout owns is not written")
	if w := (*Waiting)(nil); errors.As(err, &w) {
		g.Expect(owned).To(Equal(3), "station 3 was not in the batch's spread order")
	} else {
		g.Expect(err).To(MatchError(ContainSubstring("iothub: 503")), "a failed write is an error to retry")
		g.Expect(owned).To(Equal(2))
	}
	g.Expect(s.obj.Status.Batches).NotTo(BeEmpty())
	g.Expect(s.obj.Status.Batches[0].Size).To(BeEquivalentTo(3), "the batch shows its planned size while it is written")
	g.Expect(u.cache.Invalidated).To(HaveLen(owned), "each written station's CUPS cache entry is dropped")

	// The next pass writes the rest of the batch; a station written
	// before is never written twice.
	delete(u.twins.fail, stationID(3))
	before := map[string]int{}
	for k, v := range u.twins.writes {
		before[k] = v
	}
	s = u.loaded(t)
	s.obj.Status.CurrentStep = 1
	err = u.r.stepBatch(context.Background(), s, 1, s.obj.Spec.Strategy.Steps[0])
	var w *Waiting
	g.Expect(errors.As(err, &w)).To(BeTrue(), "then it waits for the stations to report")
	g.Expect(w.Phase).To(Equal(fwv1.PhaseProgressing))
	written := 0
	for i := range 4 {
		id := stationID(i)
		if o := u.twins.twin(id).Ownership; o != nil && o.UID == "uid-fw" {
			written++
			g.Expect(u.twins.writes[id]).To(Equal(1), "station %s written once", id)
		}
	}
	g.Expect(written).To(Equal(3))
	g.Expect(s.obj.Status.Skipped).To(BeEquivalentTo(1))
}

func TestUnitMarkFailedOnce(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 2, []fwv1.RolloutStep{batchStep("100%")})
	for i := range 2 {
		u.twins.mu.Lock()
		u.twins.apply(stationID(i), twin.FirmwarePatch(twin.Firmware{Package: "2.0.7"},
			&twin.Ownership{UID: "uid-fw", Rollout: "ns/fw", Batch: 1, WrittenAt: unitNow.Add(-time.Minute)}))
		u.twins.mu.Unlock()
	}
	u.twins.mu.Lock()
	u.twins.apply(stationID(0), twin.ObservationPatch(twin.Observation{Package: "2.0.6",
		Refusal: twin.RefusalKeyMismatch, RefusedPackage: "2.0.7", RefusedRollout: "uid-fw"}))
	u.twins.mu.Unlock()

	s := u.loaded(t)
	g.Expect(s.obj.Status.Failed).To(BeEquivalentTo(1))
	g.Expect(u.r.markFailed(context.Background(), s)).To(Succeed())
	g.Expect(u.twins.twin(stationID(0)).Ownership.Failed).To(BeEquivalentTo(fwv1.FailureKeyMismatch))
	g.Expect(u.twins.twin(stationID(1)).Ownership.Failed).To(BeEmpty())
	writes := u.twins.writes[stationID(0)]
	g.Expect(u.r.markFailed(context.Background(), u.loaded(t))).To(Succeed())
	g.Expect(u.twins.writes[stationID(0)]).To(Equal(writes), "a failure is recorded once")
}

// TestUnitClaimNeverWritesTwice: a station whose twin this rollout already
// owns (written before a restart, while the view still saw it unwritten)
// is taken as written, with its first batch and time, and not written.
func TestUnitClaimNeverWritesTwice(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 1, []fwv1.RolloutStep{batchStep("1"), batchStep("1")})
	s := u.loaded(t)
	u.twins.mu.Lock()
	u.twins.apply(stationID(0), twin.FirmwarePatch(twin.Firmware{Package: "2.0.7"},
		&twin.Ownership{UID: "uid-fw", Rollout: "ns/fw", Batch: 1, WrittenAt: unitNow.Add(-time.Hour)}))
	u.twins.mu.Unlock()
	c := u.r.claim(context.Background(), s, 0, s.view.station(0), nil, twin.Ownership{UID: "uid-fw", Rollout: "ns/fw", Batch: 2, WrittenAt: unitNow})
	g.Expect(c.err).NotTo(HaveOccurred())
	g.Expect(c.written).To(BeTrue())
	g.Expect(c.s.Batch).To(Equal(1))
	g.Expect(c.s.WrittenAt).To(Equal(unitNow.Add(-time.Hour)))
	g.Expect(u.twins.writes[stationID(0)]).To(BeZero())
}
