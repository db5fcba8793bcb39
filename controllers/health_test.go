package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/stationsim"
)

// manualClock is the manager's clock in the bake time test.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *manualClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// pollAt makes station i poll CUPS once at the manager's time at.
func (w *world) pollAt(clock *manualClock, i int, at time.Time) stationsim.Result {
	w.t.Helper()
	clock.Set(at)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := w.stations[i].Poll(ctx)
	if res.Err != nil {
		w.t.Fatalf("station %d poll at %s: %v", i, at, res.Err)
	}
	return res
}

// TestBakeTime: with a bake time of one hour, three stations take the
// update and report it; they bake (status.baking, the Ready message says
// until when). Station 1 then comes back every 60 s (its network server
// rejects it) and ends Unhealthy; station 2 falls back to 2.0.6 and ends
// RolledBack, and is not sent the update again; station 0 is Updated
// exactly when its bake time ends. Each failure is listed, with its
// message, and announced by a Warning Event.
func TestBakeTime(t *testing.T) {
	g := NewWithT(t)
	w, clock, at := bakingWorld(t)
	st := w.get("r").Status
	g.Expect(st.InProgress).To(BeNumerically("==", 3), "baking stations are in progress")
	g.Expect(st.Updated).To(BeZero(), "no station is Updated before its bake time passed")
	g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionReady).Message).To(ContainSubstring("3 in progress (3 baking until 2026-12-01T11:00:03Z)"))

	// Station 1: "Router rejected", at once and then every 60 s.
	for _, s := range []time.Duration{300 * time.Millisecond, 60300 * time.Millisecond, 120300 * time.Millisecond} {
		w.pollAt(clock, 1, at.Add(s))
	}
	// Station 2: its firmware falls back to the old image.
	st2 := w.stations[2].State()
	st2.Package = "2.0.6"
	w.stations[2].SetState(st2)
	tw2 := w.twinOf(w.id(2))
	_ = tw2
	res := w.pollAt(clock, 2, at.Add(90*time.Second))
	g.Expect(res.Update).To(Equal(stationsim.UpdateNone), "a station that fell back is not sent the update again: %+v", res)
	clock.Set(at.Add(2 * time.Minute))
	expectHealthFailures(t, w)

	// One second before the end of the bake time station 0 still bakes;
	// at the end it is Updated and the rollout completes.
	clock.Set(at.Add(time.Hour - time.Second))
	g.Consistently(func() int32 { return w.get("r").Status.Updated }, 1500*time.Millisecond, 100*time.Millisecond).Should(BeZero())
	clock.Set(at.Add(time.Hour))
	r := w.waitPhase("r", fwv1.PhaseCompleted, 15*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 1))
	g.Expect(r.Status.Failed).To(BeNumerically("==", 2))
	g.Expect(r.Status.Baking).To(BeZero())
	g.Expect(r.Status.InProgress).To(BeZero())
	g.Expect(w.stations[2].Package()).To(Equal("2.0.6"))
}

// bakingWorld is three stations on 2.0.6 polling only when told, and the
// rollout "r" of 2.0.7 with a bake time of one hour; each station took the
// update at 10:00:00 and reported it at at (10:00:03), and the rollout
// counts them baking.
func bakingWorld(t *testing.T) (*world, *manualClock, time.Time) {
	g := NewWithT(t)
	clock := &manualClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	w := newWorldWith(t, 3, nil, worldOptions{now: clock.Now, manualPolls: true})
	r := w.rollout("r")
	r.Spec.Strategy.BakeTime = &metav1.Duration{Duration: time.Hour}
	r.Spec.Strategy.ProgressDeadline = &metav1.Duration{Duration: 26 * time.Hour}
	w.create(r)
	g.Eventually(func() int {
		n := 0
		for i := range w.specs {
			if tw := w.twinOf(w.id(i)); tw.Ownership != nil && tw.Ownership.BakeSeconds == 3600 {
				n++
			}
		}
		return n
	}, 20*time.Second, 50*time.Millisecond).Should(Equal(3), "every twin written with the bake time")

	t0 := clock.Now()
	for i := range w.specs {
		res := w.pollAt(clock, i, t0)
		g.Expect(res.Update).To(Equal(stationsim.UpdateApplied), res.UpdateReason)
	}
	at := t0.Add(3 * time.Second) // each station's start poll after the update
	for i := range w.specs {
		w.pollAt(clock, i, at)
	}
	g.Eventually(func() int32 { return w.get("r").Status.Baking }, 10*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 3),
		w.healthString)
	for i := range w.specs {
		g.Eventually(func() bool { o := w.twinOf(w.id(i)).Observation; return o != nil && o.Report != nil }, 5*time.Second, 20*time.Millisecond).Should(BeTrue())
	}
	return w, clock, at
}

// expectHealthFailures waits until station 1 is Unhealthy and station 2
// RolledBack, listed with their messages, announced, and marked final.
func expectHealthFailures(t *testing.T, w *world) {
	g := NewWithT(t)
	g.Eventually(func() int32 { return w.get("r").Status.Failed }, 10*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 2),
		w.healthString)
	st := w.get("r").Status
	g.Expect(st.Baking).To(BeNumerically("==", 1))
	g.Expect(st.InProgress).To(BeNumerically("==", 1))
	reasons := map[fwv1.FailureReason]string{}
	for _, f := range st.Failures {
		reasons[f.Reason] = f.Message
		g.Expect(f.DeviceID).To(Equal(map[fwv1.FailureReason]string{fwv1.FailureUnhealthy: w.id(1), fwv1.FailureRolledBack: w.id(2)}[f.Reason]))
	}
	g.Expect(reasons).To(HaveKeyWithValue(fwv1.FailureUnhealthy,
		`reported "2.0.7" at 10:00:03Z, then came back to CUPS 3 times every 60s within the bake time (1h): it cannot reach its network server`))
	g.Expect(reasons).To(HaveKeyWithValue(fwv1.FailureRolledBack,
		`reported "2.0.7" at 10:00:03Z, then its previous package "2.0.6" at 10:01:33Z: the firmware fell back to its old image`))
	// The events API merges Events of one object with the same reason into
	// a series that keeps the first note, so only the first failure's text
	// is stored (TestUnitHealthFailuresAnnounced checks both are emitted).
	g.Eventually(func() []string { return stationFailedEvents(w.ns) }, 10*time.Second, 100*time.Millisecond).Should(ContainElement(Or(
		ContainSubstring("station "+w.id(1)+" failed: Unhealthy: reported \"2.0.7\" at 10:00:03Z, then came back to CUPS"),
		ContainSubstring("station "+w.id(2)+" failed: RolledBack: reported \"2.0.7\" at 10:00:03Z, then its previous package"),
	)))
	g.Expect(w.twinOf(w.id(1)).Ownership.Failed).To(Equal("Unhealthy"), "the failure is final")
	g.Expect(w.twinOf(w.id(2)).Ownership.Failed).To(Equal("RolledBack"))
}

// healthString is the rollout's status and each station's records.
func (w *world) healthString() string {
	out := statusString(w.get("r"))
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		out += fmt.Sprintf("\n  station %d: %+v %+v", i, tw.Ownership, tw.Observation)
		if tw.Observation != nil {
			out += fmt.Sprintf(" %+v", tw.Observation.Report)
		}
	}
	return out
}

// stationFailedEvents are the messages of the StationFailed Events in ns.
func stationFailedEvents(ns string) []string {
	var list corev1.EventList
	if err := testEnv.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		return nil
	}
	var out []string
	for _, e := range list.Items {
		if e.Reason == fwv1.ReasonStationFailed && strings.HasPrefix(e.Message, "station ") {
			out = append(out, e.Message)
		}
	}
	return out
}
