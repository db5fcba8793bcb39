package cups

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// testClock is a clock the test sets.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// bakeEnv is a simulated station on v1 owned by the rollout fleet/spring
// of the signed 2.0.7 with a bake time of one hour, served over TLS with
// the test's clock.
func bakeEnv(t *testing.T) (*simEnv, *testClock, *fwv1.FirmwareRollout) {
	clock := &testClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	e := newSimEnv(t, func(e *simEnv) {
		e.signedFirmware(t, "2.0.7", readVector(t, "sig-0.pem"), vectorKeyCRC)
		e.twin.Ownership.BakeSeconds = 3600
		e.twin.Ownership.Previous = twin.Firmware{Package: "v1"}
		e.twin.Ownership.WrittenAt = clock.Now()
	}, WithClock(clock.Now))
	obj := &fwv1.FirmwareRollout{}
	obj.UID, obj.Namespace, obj.Name = "u1", "fleet", "spring"
	obj.Spec.Firmware.Package = "2.0.7"
	obj.Spec.Strategy.BakeTime = &metav1.Duration{Duration: time.Hour}
	return e, clock, obj
}

// pollAt polls once at the test clock's time at.
func (e *simEnv) pollAt(t *testing.T, clock *testClock, at time.Time) stationsim.Result {
	t.Helper()
	clock.Set(at)
	res := e.poll(t)
	if res.Err != nil {
		t.Fatalf("poll at %s: %v", at, res.Err)
	}
	return res
}

// outcome is what the rollout's rule says of the stored twin at now.
func (e *simEnv) outcome(t *testing.T, obj *fwv1.FirmwareRollout, now time.Time) rules.StationOutcome {
	t.Helper()
	settle(t, e.h.srv)
	tw, err := e.h.store.Get(context.Background(), stationA)
	must(t, err)
	return rules.EvaluateStation(tw, obj, nil, now)
}

// TestSimulatorUnhealthyAfterTheUpdate: a station takes the update, reports
// it, then comes back every R (its network server rejects it): the CUPS
// server's record in the twin makes it Unhealthy; every poll woke the
// controller.
func TestSimulatorUnhealthyAfterTheUpdate(t *testing.T) {
	g := NewWithT(t)
	e, clock, obj := bakeEnv(t)
	t0 := clock.Now()
	res := e.pollAt(t, clock, t0)
	g.Expect(res.Update).To(Equal(stationsim.UpdateApplied), res.UpdateReason)
	at := t0.Add(3 * time.Second) // the restart after the update
	e.pollAt(t, clock, at)
	o := e.outcome(t, obj, at.Add(time.Second))
	g.Expect(o.State).To(Equal(fwv1.OutcomeInProgress))
	g.Expect(o.Baking).To(BeTrue())
	g.Expect(o.Deadline).To(Equal(at.Add(time.Hour)))

	// "Router rejected": at once, then every 60 s.
	for _, s := range []float64{0.3, 60.3, 120.3} {
		e.pollAt(t, clock, at.Add(time.Duration(s*float64(time.Second))))
	}
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.Report).NotTo(BeNil())
	g.Expect(obs.Report.At).To(Equal(at))
	g.Expect(obs.Report.Polls).To(HaveLen(4))
	o = e.outcome(t, obj, at.Add(121*time.Second))
	g.Expect(o.State).To(Equal(fwv1.OutcomeFailed))
	g.Expect(o.Reason).To(Equal(string(fwv1.FailureUnhealthy)))
	g.Expect(o.Message).To(Equal(`reported "2.0.7" at 10:00:03Z, then came back to CUPS 3 times every 60s within the bake time (1h): it cannot reach its network server`))
	// Polls recorded while a write of the station is under way are written,
	// and wake the controller, together: the last one's write wakes it.
	g.Expect(len(e.h.notified)).To(BeNumerically(">=", 2), "the update and the polls within the bake time woke the controller")
}

// TestSimulatorHealthyBakesThenUpdated: a healthy station polls once after
// the update and again only a day later; it bakes for the hour, then is
// Updated, and its late poll changes nothing in the twin.
func TestSimulatorHealthyBakesThenUpdated(t *testing.T) {
	g := NewWithT(t)
	e, clock, obj := bakeEnv(t)
	t0 := clock.Now()
	e.pollAt(t, clock, t0)
	at := t0.Add(3 * time.Second)
	e.pollAt(t, clock, at)
	g.Expect(e.outcome(t, obj, at.Add(time.Hour-time.Second)).Baking).To(BeTrue())
	g.Expect(e.outcome(t, obj, at.Add(time.Hour)).State).To(Equal(fwv1.OutcomeUpdated))
	settle(t, e.h.srv)
	writes := e.h.store.writes.Load()
	e.pollAt(t, clock, at.Add(24*time.Hour))
	g.Expect(e.outcome(t, obj, at.Add(24*time.Hour)).State).To(Equal(fwv1.OutcomeUpdated))
	g.Expect(e.h.store.writes.Load()-writes).To(BeNumerically("<=", 1), "only the hourly LastSeen refresh")
	g.Expect(e.h.store.observation(t, e.h.srv, stationA).Report.Polls).To(Equal([]time.Time{at}))
}

// TestSimulatorRolledBack: the station reports the new package, then its
// old one (the firmware fell back): it is not sent the update again, and
// the twin records RolledBack with what it did.
func TestSimulatorRolledBack(t *testing.T) {
	g := NewWithT(t)
	e, clock, obj := bakeEnv(t)
	t0 := clock.Now()
	e.pollAt(t, clock, t0)
	at := t0.Add(3 * time.Second)
	e.pollAt(t, clock, at)
	st := e.station.State()
	st.Package = "v1"
	e.station.SetState(st)
	for _, s := range []time.Duration{90 * time.Second, 150 * time.Second} {
		res := e.pollAt(t, clock, at.Add(s))
		g.Expect(res.Update).To(Equal(stationsim.UpdateNone), "a station that fell back is not sent the update again")
		g.Expect(res.Response.NothingToChange()).To(BeTrue())
	}
	obs := e.h.store.observation(t, e.h.srv, stationA)
	g.Expect(obs.UpdatesServed).To(Equal(1))
	g.Expect(obs.Refusal).To(Equal(twin.RefusalRolledBack))
	o := e.outcome(t, obj, at.Add(3*time.Minute))
	g.Expect(o.State).To(Equal(fwv1.OutcomeFailed))
	g.Expect(o.Reason).To(Equal(string(fwv1.FailureRolledBack)))
	g.Expect(o.Message).To(Equal(`reported "2.0.7" at 10:00:03Z, then its previous package "v1" at 10:01:33Z: the firmware fell back to its old image`))
}
