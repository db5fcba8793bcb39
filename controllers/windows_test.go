package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// windowUnit is a unit whose reconciler's clock the test sets, and whose
// strategy has windows.
func windowUnit(t *testing.T, n int, steps []fwv1.RolloutStep, windows ...fwv1.BatchWindow) (*unit, *time.Time) {
	t.Helper()
	u := newUnit(t, n, steps)
	obj := &fwv1.FirmwareRollout{}
	if err := u.client.Get(context.Background(), client.ObjectKeyFromObject(u.obj), obj); err != nil {
		t.Fatal(err)
	}
	obj.Spec.Strategy.Windows = windows
	if err := u.client.Update(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	clock := new(time.Time)
	u.r.Now = func() time.Time { return *clock }
	return u, clock
}

// pass runs one whole reconcile (every phase and the status patch) and
// returns the rollout as stored and the result. A terminal error (a stall
// only a person ends) is returned as such.
func (u *unit) pass(t *testing.T) (*fwv1.FirmwareRollout, ctrl.Result, error) {
	t.Helper()
	res, err := u.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(u.obj)})
	if err != nil && !errors.Is(err, reconcile.TerminalError(nil)) {
		t.Fatalf("reconcile: %v", err)
	}
	obj := &fwv1.FirmwareRollout{}
	if err := u.client.Get(context.Background(), client.ObjectKeyFromObject(u.obj), obj); err != nil {
		t.Fatal(err)
	}
	return obj, res, err
}

// owned counts the stations whose twins the rollout wrote.
func (u *unit) owned(n int) int {
	c := 0
	for i := range n {
		if u.twins.twin(stationID(i)).Ownership != nil {
			c++
		}
	}
	return c
}

func window(schedule string, d time.Duration, zone string) fwv1.BatchWindow {
	return fwv1.BatchWindow{Schedule: schedule, Duration: metav1.Duration{Duration: d}, TimeZone: zone}
}

// TestUnitWindowWait: outside its window a rollout writes nothing, says
// until when, requeues at the opening, announces the wait once, and starts
// its batch at the opening.
func TestUnitWindowWait(t *testing.T) {
	g := NewWithT(t)
	u, clock := windowUnit(t, 4, []fwv1.RolloutStep{batchStep("2"), batchStep("100%")}, window("0 2 * * *", time.Hour, "Europe/Berlin"))
	u.r.Options.StatusResync = 24 * time.Hour
	*clock = time.Date(2026, 12, 2, 19, 57, 0, 0, time.UTC) // 20:57 in Berlin

	obj, res, err := u.pass(t)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.owned(4)).To(BeZero(), "no twin is written outside the window")
	g.Expect(obj.Status.Phase).To(Equal(fwv1.PhasePaused))
	ready := meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady)
	g.Expect(ready.Reason).To(Equal(fwv1.ReasonOutsideWindow))
	g.Expect(ready.Message).To(Equal("step 1 of 2: waiting for a batch window: the next opens at 2026-12-03T02:00:00+01:00 (Europe/Berlin), in 5h3m"))
	g.Expect(obj.Status.NextWindow).NotTo(BeNil())
	g.Expect(obj.Status.NextWindow.Time.Equal(time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC))).To(BeTrue())
	g.Expect(res.RequeueAfter).To(Equal(5*time.Hour+3*time.Minute+time.Second), "requeued at the opening")
	g.Expect(obj.Status.StartTime).To(BeNil(), "not started: no twin written")
	g.Expect(u.events()).To(ConsistOf(ContainSubstring(fwv1.ReasonOutsideWindow)))

	*clock = clock.Add(time.Hour)
	obj, _, _ = u.pass(t)
	g.Expect(u.owned(4)).To(BeZero())
	g.Expect(meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady).Message).To(HaveSuffix("in 4h3m"))
	g.Expect(u.events()).To(BeEmpty(), "the wait is announced once")

	*clock = time.Date(2026, 12, 3, 1, 0, 0, 0, time.UTC) // the opening
	obj, _, _ = u.pass(t)
	g.Expect(u.owned(4)).To(Equal(2), "the batch starts at the opening")
	g.Expect(obj.Status.StartTime.Time.Equal(*clock)).To(BeTrue(), "started when the first twin was written")
	g.Expect(obj.Status.Phase).To(Equal(fwv1.PhaseProgressing))
	g.Expect(obj.Status.NextWindow).To(BeNil())
	g.Expect(u.events()).To(ContainElement(ContainSubstring(fwv1.ReasonBatchStarted)))
}

// TestUnitWindowStartedBatchGoesOn: a batch started inside its window
// finishes its writes and its counting after the window closes; only the
// next batch waits.
func TestUnitWindowStartedBatchGoesOn(t *testing.T) {
	g := NewWithT(t)
	u, clock := windowUnit(t, 4, []fwv1.RolloutStep{batchStep("3"), batchStep("100%")}, window("0 2 * * *", time.Hour, ""))
	u.r.Options.MaxWritesPerReconcile = 1 // one twin per pass
	*clock = time.Date(2026, 12, 3, 2, 59, 0, 0, time.UTC)
	u.pass(t)
	g.Expect(u.owned(4)).To(Equal(1))

	*clock = time.Date(2026, 12, 3, 3, 30, 0, 0, time.UTC) // the window closed
	obj, _, _ := u.pass(t)
	g.Expect(u.owned(4)).To(Equal(2), "a started batch finishes its writes")
	u.pass(t)
	g.Expect(u.owned(4)).To(Equal(3))

	for i := range 4 {
		if u.twins.twin(stationID(i)).Ownership != nil {
			u.report(i, "2.0.7")
		}
	}
	u.r.forceFullRead(obj)
	obj, _, _ = u.pass(t)
	g.Expect(obj.Status.Updated).To(BeEquivalentTo(3), "and counts its stations")
	g.Expect(obj.Status.CurrentStep).To(BeEquivalentTo(2))
	g.Expect(u.owned(4)).To(Equal(3), "the next batch waits for the window")
	g.Expect(obj.Status.Phase).To(Equal(fwv1.PhasePaused))
	g.Expect(meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady).Message).To(
		Equal("step 2 of 2: waiting for a batch window: the next opens at 2026-12-04T02:00:00Z (UTC), in 22h30m"))
}

// TestUnitWindowPausedFirst: spec.paused holds a rollout whatever its
// windows say, and says so rather than the window; unpaused outside its
// window, it waits for the window.
func TestUnitWindowPausedFirst(t *testing.T) {
	g := NewWithT(t)
	u, clock := windowUnit(t, 2, []fwv1.RolloutStep{batchStep("100%")}, window("0 2 * * *", time.Hour, ""))
	*clock = time.Date(2026, 12, 3, 3, 30, 0, 0, time.UTC) // closed
	setPaused := func(p bool) {
		obj := &fwv1.FirmwareRollout{}
		g.Expect(u.client.Get(context.Background(), client.ObjectKeyFromObject(u.obj), obj)).To(Succeed())
		obj.Spec.Paused = p
		g.Expect(u.client.Update(context.Background(), obj)).To(Succeed())
	}
	setPaused(true)
	obj, _, _ := u.pass(t)
	g.Expect(u.owned(2)).To(BeZero())
	g.Expect(meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady).Reason).To(Equal(fwv1.ReasonPaused))
	g.Expect(obj.Status.NextWindow).To(BeNil())

	setPaused(false)
	obj, _, _ = u.pass(t)
	g.Expect(u.owned(2)).To(BeZero())
	g.Expect(meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionReady).Reason).To(Equal(fwv1.ReasonOutsideWindow))
	g.Expect(obj.Status.NextWindow).NotTo(BeNil())

	setPaused(true)
	obj, _, _ = u.pass(t)
	g.Expect(obj.Status.NextWindow).To(BeNil(), "removed once the rollout no longer waits for a window")
}

// TestUnitWindowInvalid: a schedule or zone the controller cannot use
// stalls the rollout before any twin is written, with the parser's words.
func TestUnitWindowInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    fwv1.BatchWindow
		msg  string
	}{
		{"unknown zone", window("0 2 * * *", time.Hour, "Mars/Olympus_Mons"),
			`strategy.windows[0]: time zone "Mars/Olympus_Mons" is not in the time zone database: unknown time zone Mars/Olympus_Mons; no batch starts until spec.strategy.windows is fixed`},
		{"hour out of range", window("0 25 * * *", time.Hour, "UTC"),
			`strategy.windows[0]: schedule "0 25 * * *": end of range (25) above maximum (23): 25; no batch starts until spec.strategy.windows is fixed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u, clock := windowUnit(t, 2, []fwv1.RolloutStep{batchStep("100%")}, tc.w)
			*clock = time.Date(2026, 12, 3, 2, 30, 0, 0, time.UTC)
			obj, _, err := u.pass(t)
			g.Expect(err).To(HaveOccurred(), "terminal: only a change of the spec ends it")
			g.Expect(u.owned(2)).To(BeZero())
			g.Expect(obj.Status.Phase).To(Equal(fwv1.PhasePending))
			stalled := meta.FindStatusCondition(obj.Status.Conditions, fwv1.ConditionStalled)
			g.Expect(stalled).NotTo(BeNil())
			g.Expect(stalled.Reason).To(Equal(fwv1.ReasonInvalidStrategy))
			g.Expect(stalled.Message).To(Equal(tc.msg))
			g.Expect(u.events()).To(ConsistOf(ContainSubstring(tc.msg)))
			u.pass(t)
			g.Expect(u.events()).To(BeEmpty(), "announced once")
		})
	}
}

// TestUnitKeepNextWindow: status.nextWindow stays while the rollout waits
// for a window, also through a pass that failed on a transient error, and
// goes otherwise.
func TestUnitKeepNextWindow(t *testing.T) {
	next := metav1.NewTime(unitNow)
	for _, tc := range []struct {
		name string
		sum  summary
		keep bool
	}{
		{"waiting for a window", summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonOutsideWindow}, true},
		{"a transient error", summary{phase: fwv1.PhasePaused, err: errors.New("503")}, true},
		{"progressing", summary{phase: fwv1.PhaseProgressing, reason: fwv1.ReasonProgressing}, false},
		{"paused by spec", summary{phase: fwv1.PhasePaused, reason: fwv1.ReasonPaused}, false},
		{"stalled", summary{phase: fwv1.PhasePending, reason: fwv1.ReasonInvalidStrategy, stalled: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := fwv1.FirmwareRolloutStatus{NextWindow: &next}
			keepNextWindow(&st, tc.sum)
			NewWithT(t).Expect(st.NextWindow != nil).To(Equal(tc.keep))
		})
	}
}
