package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUnitTakenOverStationsStayCounted: a station the rollout counted
// Failed, then Updated, and let go to another rollout (its twin's history
// says so) stays counted so: a rollout's status is its history, also when
// it is recounted from the twins (a restarted manager). Before, the
// recount made them Pending (or Skipped), and the failure count fell.
func TestUnitTakenOverStationsStayCounted(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 3, []fwv1.RolloutStep{batchStep("100%")})
	let := func(i int, outcome fwv1.StationOutcome, reason fwv1.FailureReason) {
		u.twins.mu.Lock()
		defer u.twins.mu.Unlock()
		p := twin.FirmwarePatch(twin.Firmware{Package: "3.0.0"}, &twin.Ownership{UID: "uid-later", Rollout: "ns/later", Batch: 1, WrittenAt: unitNow})
		u.twins.apply(stationID(i), p.SetHistory([]twin.HistoryEntry{{Rollout: "ns/fw", UID: "uid-fw", Batch: 1,
			Outcome: string(outcome), Reason: string(reason), At: unitNow.Add(-time.Minute)}}))
	}
	let(0, fwv1.OutcomeFailed, fwv1.FailureKeyMismatch)
	let(1, fwv1.OutcomeUpdated, "")

	s := u.loaded(t)
	st := s.obj.Status
	g.Expect([]int32{st.Updated, st.Failed, st.Pending, st.Skipped}).To(Equal([]int32{1, 1, 1, 0}))
	g.Expect(st.Failures).To(HaveLen(1))
	g.Expect(st.Failures[0].DeviceID).To(Equal(stationID(0)))
	g.Expect(st.Failures[0].Reason).To(Equal(fwv1.FailureKeyMismatch))
	g.Expect(st.Failures[0].Time.Time).To(Equal(unitNow.Add(-time.Minute)), "a failure counted before is not new")

	// The one station still unwritten is written; the two let go are not.
	s = u.loaded(t)
	g.Expect(s.view.unwritten).To(HaveLen(1))
	g.Expect(s.view.all[s.view.unwritten[0]].ID).To(Equal(stationID(2)))
}
