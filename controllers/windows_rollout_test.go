package controllers_test

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/stationsim"
)

// testClock is the reconciler's clock in the window tests: it stands still
// until the test moves it, so no test waits for a real window.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// readyOf is the rollout's Ready reason and message.
func readyOf(r *fwv1.FirmwareRollout) (string, string) {
	c := meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady)
	if c == nil {
		return "", ""
	}
	return c.Reason, c.Message
}

// waitReason waits until the rollout's Ready reason is reason.
func (w *world) waitReason(name, reason string, timeout time.Duration) *fwv1.FirmwareRollout {
	w.t.Helper()
	var r *fwv1.FirmwareRollout
	NewWithT(w.t).Eventually(func() string {
		r = w.get(name)
		got, _ := readyOf(r)
		return got
	}, timeout, 50*time.Millisecond).Should(Equal(reason), func() string { return "rollout status: " + statusString(r) })
	return r
}

// eventNotes are the notes of the Events with reason in the world's
// namespace.
func (w *world) eventNotes(reason string) []string {
	w.t.Helper()
	var events eventsv1.EventList
	if err := testEnv.Client.List(context.Background(), &events, client.InNamespace(w.ns)); err != nil {
		w.t.Fatalf("list events: %v", err)
	}
	var notes []string
	for _, e := range events.Items {
		if e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// TestBatchWindows: a rollout outside its window writes nothing and says
// until when; at the opening it starts its batch; a batch started in the
// window finishes after the window closed; the next batch waits for the
// next window. The reconciler's clock is set by the test, never waited for.
func TestBatchWindows(t *testing.T) {
	g := NewWithT(t)
	clock := &testClock{t: time.Date(2026, 12, 2, 19, 57, 0, 0, time.UTC)} // 20:57 in Berlin
	w := newWorldClock(t, 10, nil, clock.Now)
	r := w.rollout("r", batch("5"), batch("100%"))
	r.Spec.Strategy.Windows = []fwv1.BatchWindow{{Schedule: "0 2 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Berlin"}}
	r.Spec.Strategy.ProgressDeadline.Duration = 48 * time.Hour // the clock jumps by hours
	w.create(r)

	// Outside the window: nothing is written, and the rollout says until when.
	r = w.waitReason("r", fwv1.ReasonOutsideWindow, 30*time.Second)
	g.Expect(r.Status.Phase).To(Equal(fwv1.PhasePaused))
	_, msg := readyOf(r)
	g.Expect(msg).To(Equal("step 1 of 2: waiting for a batch window: the next opens at 2026-12-03T02:00:00+01:00 (Europe/Berlin), in 5h3m"))
	g.Expect(r.Status.NextWindow).NotTo(BeNil())
	g.Expect(r.Status.NextWindow.Time.Equal(time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC))).To(BeTrue())
	g.Consistently(func() int { return len(w.hub.RolloutWrites(string(r.UID))) }, 2*time.Second, 200*time.Millisecond).Should(BeZero(),
		"no twin is written outside the window (the world resyncs every second)")
	g.Expect(w.get("r").Status.Pending).To(BeNumerically("==", 10))
	g.Expect(w.get("r").Status.StartTime).To(BeNil(), "no twin written, not started")
	g.Expect(w.eventNotes(fwv1.ReasonOutsideWindow)).To(Equal([]string{msg}), "one Event when the wait starts")

	// The first batch's stations do not report yet, so the batch is still
	// in flight when the window closes.
	for i := range w.stations {
		w.stations[i].SetBehavior(stationsim.Behavior{StopPolling: true})
	}
	clock.Set(time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC)) // the opening
	g.Eventually(func() int32 { return w.get("r").Status.InProgress }, 20*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 5))
	r = w.get("r")
	g.Expect(r.Status.Phase).To(Equal(fwv1.PhaseProgressing))
	g.Expect(r.Status.NextWindow).To(BeNil())

	clock.Set(time.Date(2026, 12, 3, 2, 30, 0, 0, time.UTC)) // closed at 03:00 Berlin
	for i := range w.stations {
		w.stations[i].SetBehavior(stationsim.Behavior{})
	}
	// The started batch finishes and counts; the next waits for tomorrow.
	r = w.waitReason("r", fwv1.ReasonOutsideWindow, 30*time.Second)
	g.Expect(r.Status.CurrentStep).To(BeNumerically("==", 2))
	g.Expect(r.Status.Updated).To(BeNumerically("==", 5))
	g.Expect(r.Status.Batches).To(HaveLen(1))
	g.Expect(r.Status.Batches[0].CompletionTime).NotTo(BeNil())
	_, msg = readyOf(r)
	g.Expect(msg).To(Equal("step 2 of 2: waiting for a batch window: the next opens at 2026-12-04T02:00:00+01:00 (Europe/Berlin), in 22h30m"))
	g.Consistently(func() int { return len(w.hub.RolloutWrites(string(r.UID))) }, time.Second, 200*time.Millisecond).Should(Equal(5))

	clock.Set(time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC)) // the next opening
	r = w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 10))
	g.Expect(r.Status.NextWindow).To(BeNil())
	for id, n := range w.hub.RolloutWrites(string(r.UID)) {
		g.Expect(n).To(Equal(1), "station %s written %d times", id, n)
	}
}

// TestBatchWindowInvalidStallsBeforeAnyWrite: a time zone the manager does
// not know passes the API server's checks (its characters are fine) and
// stalls the rollout before any twin is written, with the reason.
func TestBatchWindowInvalidStallsBeforeAnyWrite(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 3, nil)
	r := w.rollout("r")
	r.Spec.Strategy.Windows = []fwv1.BatchWindow{
		{Schedule: "0 2 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Berlin"},
		{Schedule: "0 22 * * SAT", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Europe/Atlantis"},
	}
	w.create(r)
	g.Eventually(func() bool {
		return meta.IsStatusConditionTrue(w.get("r").Status.Conditions, fwv1.ConditionStalled)
	}, 20*time.Second, 100*time.Millisecond).Should(BeTrue())
	got := w.get("r")
	stalled := meta.FindStatusCondition(got.Status.Conditions, fwv1.ConditionStalled)
	g.Expect(stalled.Reason).To(Equal(fwv1.ReasonInvalidStrategy))
	g.Expect(stalled.Message).To(Equal(`strategy.windows[1]: time zone "Europe/Atlantis" is not in the time zone database: unknown time zone Europe/Atlantis; no batch starts until spec.strategy.windows is fixed`))
	g.Expect(got.Status.Phase).To(Equal(fwv1.PhasePending))
	g.Consistently(func() int { return len(w.hub.RolloutWrites(string(got.UID))) }, time.Second, 200*time.Millisecond).Should(BeZero())

	// Fixing the window in the spec lets the rollout go on.
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Strategy.Windows[1].TimeZone = "Atlantic/Azores" })
	g.Eventually(func() bool {
		return meta.FindStatusCondition(w.get("r").Status.Conditions, fwv1.ConditionStalled) == nil
	}, 20*time.Second, 100*time.Millisecond).Should(BeTrue())
}
