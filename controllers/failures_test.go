package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// TestFailureAnnouncedOnce: each failed station gets one Warning Event, when
// it is first counted Failed; a station that fell off the bounded failure
// list, or was announced before, is not announced again on later passes
// (a halted rollout with a few hundred failures used to repeat 20 Events and
// log lines on every reconcile).
func TestUnitFailureAnnouncedOnce(t *testing.T) {
	g := NewWithT(t)
	rec := events.NewFakeRecorder(1000)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := &FirmwareRolloutReconciler{Recorder: rec}
	obj := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw", UID: "uid-1"}}
	v := &stationView{}
	fail := func(n int) {
		for range n {
			v.add(rules.Station{ID: fmt.Sprintf("0016C0FFFE%06X", len(v.all)), OwnerUID: "uid-1", OwnerName: "ns/fw", Batch: 1, WrittenAt: now},
				rules.Outcome{State: fwv1.OutcomeFailed, Reason: "NotApplied", Message: "served the update 3 times"})
		}
	}
	drain := func() int {
		n := 0
		for {
			select {
			case <-rec.Events:
				n++
			default:
				return n
			}
		}
	}
	markAll := func() { // what markFailed records in the twins
		for i := range v.all {
			v.setFailed(i, "NotApplied")
		}
	}
	fail(fwv1.MaxFailuresListed + 5)
	r.updateStatus(context.Background(), &rolloutScope{obj: obj, view: v, now: now})
	g.Expect(drain()).To(Equal(fwv1.MaxFailuresListed+1), "one Event per station up to the list's size, then one summing up the rest")
	g.Expect(obj.Status.Failures).To(HaveLen(fwv1.MaxFailuresListed))
	g.Expect(obj.Status.Failed).To(BeEquivalentTo(fwv1.MaxFailuresListed + 5))
	markAll()

	for range 3 {
		now = now.Add(5 * time.Second)
		r.updateStatus(context.Background(), &rolloutScope{obj: obj, view: v, now: now})
	}
	g.Expect(drain()).To(BeZero(), "no station is announced twice")
	for _, f := range obj.Status.Failures {
		g.Expect(f.Time.Time).To(Equal(now.Add(-15*time.Second)), "the list keeps when each failure was first noticed")
	}

	// A pass whose status patch was lost (a conflict) listed stations that
	// are marked in their twins since: the next pass lists them again,
	// without announcing them again.
	obj.Status.Failures = nil
	r.updateStatus(context.Background(), &rolloutScope{obj: obj, view: v, now: now})
	g.Expect(drain()).To(BeZero())
	g.Expect(obj.Status.Failures).To(HaveLen(fwv1.MaxFailuresListed), "the list is refilled")

	now = now.Add(5 * time.Second)
	fail(1)
	r.updateStatus(context.Background(), &rolloutScope{obj: obj, view: v, now: now})
	g.Expect(drain()).To(Equal(1), "a new failure is announced")
	g.Expect(obj.Status.Failures[0].DeviceID).To(Equal(v.all[len(v.all)-1].ID))
	g.Expect(obj.Status.Failed).To(BeEquivalentTo(fwv1.MaxFailuresListed + 6))
}

// TestUnitHealthFailuresAnnounced: a station counted Unhealthy or
// RolledBack gets its Warning Event with the rule's message, and is listed.
func TestUnitHealthFailuresAnnounced(t *testing.T) {
	g := NewWithT(t)
	rec := events.NewFakeRecorder(10)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := &FirmwareRolloutReconciler{Recorder: rec}
	obj := &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw", UID: "uid-1"}}
	v := &stationView{}
	for i, reason := range []fwv1.FailureReason{fwv1.FailureUnhealthy, fwv1.FailureRolledBack} {
		v.add(rules.Station{ID: fmt.Sprintf("0016C0FFFE%06X", i), OwnerUID: "uid-1", Batch: 1, WrittenAt: now},
			rules.Outcome{State: fwv1.OutcomeFailed, Reason: string(reason), Message: "what it did"})
	}
	v.add(rules.Station{ID: "0016C0FFFE000009", OwnerUID: "uid-1", Batch: 1, WrittenAt: now},
		rules.Outcome{State: fwv1.OutcomeInProgress, Baking: true, Deadline: now.Add(time.Hour)})
	r.updateStatus(context.Background(), &rolloutScope{obj: obj, view: v, now: now})
	g.Expect(rec.Events).To(Receive(ContainSubstring("station 0016C0FFFE000000 failed: Unhealthy: what it did")))
	g.Expect(rec.Events).To(Receive(ContainSubstring("station 0016C0FFFE000001 failed: RolledBack: what it did")))
	g.Expect(obj.Status.Failures).To(HaveLen(2))
	g.Expect(obj.Status.Failed).To(BeEquivalentTo(2))
	g.Expect(obj.Status.InProgress).To(BeEquivalentTo(1))
	g.Expect(obj.Status.Baking).To(BeEquivalentTo(1))
}
