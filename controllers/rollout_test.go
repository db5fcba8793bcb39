package controllers_test

import (
	"context"
	"time"

	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestRolloutCompletes: 100 stations, steps 1 / 10% / 100%.
func TestRolloutCompletes(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 100, nil)
	w.create(w.rollout("r", batch("1"), batch("10%"), batch("100%")))
	r := w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)

	st := r.Status
	g.Expect(st.Targets).To(BeNumerically("==", 100))
	g.Expect(st.Updated).To(BeNumerically("==", 100))
	g.Expect(st.Failed + st.Pending + st.InProgress + st.Skipped).To(BeZero())
	g.Expect(st.Progress).To(Equal("100/100"))
	g.Expect(st.CurrentStep).To(BeNumerically("==", 3))
	g.Expect(st.ObservedGeneration).To(Equal(r.Generation))
	g.Expect(st.StartTime).NotTo(BeNil())
	g.Expect(st.CompletionTime).NotTo(BeNil())
	g.Expect(meta.IsStatusConditionTrue(st.Conditions, fwv1.ConditionReady)).To(BeTrue())
	g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionReconciling)).To(BeNil())
	g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionStalled)).To(BeNil())

	// Batches of 1, 10% of 100 and the rest, each complete.
	g.Expect(st.Batches).To(HaveLen(3))
	for i, want := range []int32{1, 10, 89} {
		b := st.Batches[i]
		g.Expect(b.Step).To(BeNumerically("==", i+1))
		g.Expect(b.Size).To(Equal(want), "batch %d", i+1)
		g.Expect(b.Updated).To(Equal(want), "batch %d", i+1)
		g.Expect(b.CompletionTime).NotTo(BeNil())
	}
	// The batches ran in order: each started after the one before completed.
	for i := 1; i < 3; i++ {
		g.Expect(st.Batches[i].StartTime.Time).NotTo(BeTemporally("<", st.Batches[i-1].CompletionTime.Time.Truncate(time.Second)), "batches %+v", st.Batches)
	}

	// Every twin holds the new firmware and the stations run it.
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.CUPS.Package).To(Equal("2.0.7"))
		g.Expect(tw.CUPS.URL).To(Equal(w.fw.URL))
		g.Expect(tw.CUPS.Signature).To(Equal(w.fw.Signature))
		g.Expect(tw.CUPS.KeyChecksum).To(HaveValue(Equal(w.fw.KeyChecksum)))
		g.Expect(tw.Ownership).NotTo(BeNil())
		g.Expect(tw.Ownership.Previous.Package).To(Equal("2.0.6"))
		g.Expect(w.stations[i].Package()).To(Equal("2.0.7"))
	}
	// Exactly one firmware write per station.
	writes := w.hub.RolloutWrites(string(r.UID))
	g.Expect(writes).To(HaveLen(100))
	for id, n := range writes {
		g.Expect(n).To(Equal(1), "station %s written %d times", id, n)
	}
}

// TestHaltsOnMaxFailures: 10 of 100 stations never apply, maxFailures 5.
func TestHaltsOnMaxFailures(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 100, func(i int, sp *embedded.StationSpec) {
		if i%10 == 3 {
			sp.Behavior.NeverApply = true
		}
	})
	steps := make([]fwv1.RolloutStep, 10)
	for i := range steps {
		steps[i] = batch("10%")
	}
	r := w.rollout("r", steps...)
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(5))
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseHalted, 90*time.Second)

	st := r.Status
	g.Expect(st.Failed).To(BeNumerically(">=", 6))
	g.Expect(meta.IsStatusConditionTrue(st.Conditions, fwv1.ConditionStalled)).To(BeTrue())
	g.Expect(meta.FindStatusCondition(st.Conditions, fwv1.ConditionStalled).Reason).To(Equal(fwv1.ReasonHalted))
	g.Expect(st.Failures).NotTo(BeEmpty())
	for _, f := range st.Failures {
		g.Expect(f.Reason).To(Equal(fwv1.FailureNotApplied))
	}
	haltStep := st.CurrentStep
	// No station of a later batch is written, even after a while.
	g.Consistently(func() int {
		later := 0
		for i := range w.specs {
			if tw := w.twinOf(w.id(i)); tw.Ownership != nil && int32(tw.Ownership.Batch) > haltStep {
				later++
			}
		}
		return later
	}, 2*time.Second, 200*time.Millisecond).Should(BeZero(), "stations of a batch after the halt")
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		if tw.Ownership == nil {
			g.Expect(tw.CUPS.Package).To(Equal("2.0.6"))
			continue
		}
		g.Expect(tw.Ownership.Batch).To(BeNumerically("<=", haltStep))
		// A station that never applies is sent the update maxUpdateAttempts
		// (2) times and then no more, however often it polls (about 13
		// times in the 2 s above): the next ask makes it NotApplied.
		if i%10 == 3 {
			g.Expect(w.stations[i].Stats().UpdatesNotInstalled).To(BeNumerically("==", 2), "station %d", i)
		}
	}
	g.Expect(w.get("r").Status.Phase).To(Equal(fwv1.PhaseHalted))
	g.Expect(w.get("r").Status.Pending).To(BeNumerically(">", 0), "a halted rollout leaves later stations unwritten")
}

// TestKeyAndModelMismatch: stations without the signing key, or of another
// model, fail with those reasons and are never sent the firmware.
func TestKeyAndModelMismatch(t *testing.T) {
	g := NewWithT(t)
	other, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	otherKey, err := signing.MarshalSigKey(&other.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	w := newWorld(t, 12, func(i int, sp *embedded.StationSpec) {
		switch i {
		case 0, 1:
			sp.SigKeys = [][]byte{otherKey}
		case 2:
			sp.Model = "kerlink"
		}
	})
	r := w.rollout("r", batch("100%"))
	r.Spec.Firmware.Model = "linux"
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 9))
	g.Expect(r.Status.Failed).To(BeNumerically("==", 3))
	reasons := map[string]fwv1.FailureReason{}
	for _, f := range r.Status.Failures {
		reasons[f.DeviceID] = f.Reason
	}
	g.Expect(reasons).To(Equal(map[string]fwv1.FailureReason{
		w.id(0): fwv1.FailureKeyMismatch,
		w.id(1): fwv1.FailureKeyMismatch,
		w.id(2): fwv1.FailureModelMismatch,
	}))
	for i := 0; i < 3; i++ {
		s := w.stations[i].Stats()
		g.Expect(s.UpdatesApplied+s.UpdatesRefused+s.UpdatesNotInstalled).To(BeZero(), "station %d was sent an update", i)
		g.Expect(w.stations[i].Package()).To(Equal("2.0.6"))
	}
}

// TestPauseAndResume: pause through spec.paused and through an indefinite
// pause step resumed by the annotation; a timed pause resumes by itself.
func TestPauseAndResume(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 20, nil)
	w.create(w.rollout("r", batch("5"), pause(0), batch("5"), pause(1500*time.Millisecond), batch("100%")))

	// The indefinite pause holds after the first batch.
	r := w.waitPhase("r", fwv1.PhasePaused, 30*time.Second)
	g.Expect(r.Status.CurrentStep).To(BeNumerically("==", 2))
	g.Expect(meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady).Reason).To(Equal(fwv1.ReasonWaitingForResume))
	g.Consistently(func() int32 { return w.get("r").Status.Updated + w.get("r").Status.InProgress }, 2*time.Second, 200*time.Millisecond).Should(BeNumerically("==", 5))

	// spec.paused holds it even once resumed by annotation.
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Paused = true })
	w.patch("r", func(r *fwv1.FirmwareRollout) {
		r.Annotations = map[string]string{fwv1.ResumeAnnotation: time.Now().Format(time.RFC3339Nano)}
	})
	g.Eventually(func() string {
		c := meta.FindStatusCondition(w.get("r").Status.Conditions, fwv1.ConditionReady)
		if c == nil {
			return ""
		}
		return c.Reason
	}, 10*time.Second, 100*time.Millisecond).Should(Equal(fwv1.ReasonPaused))
	g.Consistently(func() int32 { return w.get("r").Status.Pending }, 2*time.Second, 200*time.Millisecond).Should(BeNumerically("==", 15))

	// Unpausing goes on through the resumed step and the timed pause.
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Paused = false })
	g.Eventually(func() int32 { return w.get("r").Status.CurrentStep }, 30*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 4))
	r = w.get("r") // in the timed pause
	g.Expect(r.Status.Phase).To(Equal(fwv1.PhasePaused))
	g.Expect(r.Status.Updated).To(BeNumerically("==", 10))
	g.Expect(r.Status.Pending).To(BeNumerically("==", 10))
	r = w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 20))
}

// TestAbortRestores: abort after the second batch restores every touched
// station's four fields, and updated stations are offered the old package.
func TestAbortRestores(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 30, nil)
	w.create(w.rollout("r", batch("5"), batch("5"), pause(0), batch("100%")))
	r := w.waitPhase("r", fwv1.PhasePaused, 40*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 10))

	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Abort = true })
	r = w.waitPhase("r", fwv1.PhaseAborted, 30*time.Second)
	g.Expect(meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady).Reason).To(Equal(fwv1.ReasonAborted))

	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).To(BeNil(), "station %d still owned", i)
		g.Expect(tw.CUPS.Firmware.Equal(twin.Firmware{Package: w.old.Package, URL: w.old.URL, Signature: w.old.Signature, KeyChecksum: &w.old.KeyChecksum})).
			To(BeTrue(), "station %d firmware not restored: %+v", i, tw.CUPS.Firmware)
	}
	// The ten updated stations are offered 2.0.6 again and go back to it.
	g.Eventually(func() int {
		n := 0
		for _, s := range w.stations {
			if s.Package() == "2.0.6" {
				n++
			}
		}
		return n
	}, 30*time.Second, 100*time.Millisecond).Should(Equal(30))
}

// TestManagerRestartMidBatch: the manager stops in the middle of a batch and
// starts again; the rollout completes, no station is written twice, no
// outcome is lost.
func TestManagerRestartMidBatch(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 60, func(i int, sp *embedded.StationSpec) {
		if i%20 == 7 {
			sp.Behavior.NeverApply = true
		}
	})
	w.create(w.rollout("r", batch("10"), batch("100%")))
	// Wait until the second batch is written and in flight.
	g.Eventually(func() int32 { return w.get("r").Status.CurrentStep }, 30*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 2))
	w.killManager()
	// Stations keep polling while the manager is down: they fail and retry.
	failures := w.stations[0].Stats().Failures
	g.Eventually(func() int64 { return w.stations[0].Stats().Failures }, 10*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", failures+3))
	w.startManager()
	r := w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 57))
	g.Expect(r.Status.Failed).To(BeNumerically("==", 3))
	g.Expect(r.Status.Updated + r.Status.Failed).To(Equal(r.Status.Targets))
	writes := w.hub.RolloutWrites(string(r.UID))
	g.Expect(writes).To(HaveLen(60))
	for id, n := range writes {
		g.Expect(n).To(Equal(1), "station %s written %d times", id, n)
	}
}

// TestOverlappingRollouts: the overlap is owned by one rollout and reported
// Skipped by the other.
func TestOverlappingRollouts(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 20, nil)
	a := w.rollout("a", batch("100%"))
	a.Spec.Selector = fwv1.StationSelector{Tags: map[string]string{"region": "eu-west"}} // 10 stations
	a.Spec.Strategy.ProgressDeadline.Duration = 10 * time.Minute
	w.create(a)
	// a's stations never finish while b starts: stop them polling.
	for i := range w.specs {
		if i%2 == 0 {
			w.stations[i].SetBehavior(stationsim.Behavior{StopPolling: true})
		}
	}
	g.Eventually(func() int32 { return w.get("a").Status.InProgress }, 30*time.Second, 50*time.Millisecond).Should(BeNumerically("==", 10))

	b := w.rollout("b", batch("100%"))
	b.Spec.Selector = fwv1.StationSelector{Tags: map[string]string{"ring": "prod"}} // all 20
	w.create(b)
	rb := w.waitPhase("b", fwv1.PhaseCompleted, 30*time.Second)
	g.Expect(rb.Status.Targets).To(BeNumerically("==", 20))
	g.Expect(rb.Status.Skipped).To(BeNumerically("==", 10))
	g.Expect(rb.Status.Updated).To(BeNumerically("==", 10))
	ra := w.get("a")
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		owner := "b"
		if i%2 == 0 {
			owner = "a"
		}
		g.Expect(tw.Ownership.Rollout).To(Equal(w.ns+"/"+owner), "station %d", i)
	}
	g.Expect(w.hub.RolloutWrites(string(rb.UID))).To(HaveLen(10))
	g.Expect(w.hub.RolloutWrites(string(ra.UID))).To(HaveLen(10))
}

// TestBadFirmwareStallsBeforeAnyWrite: a signature that does not verify
// stalls the rollout with a message, and no twin is touched.
func TestBadFirmwareStallsBeforeAnyWrite(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 5, nil)
	g.Expect(testEnv.Client.Create(context.Background(), configMapWithKey(w.ns, "fw-signing", w.signer.SigKey))).To(Succeed())
	r := w.rollout("r")
	r.Spec.Firmware.Signature = w.old.Signature // a signature of another blob
	r.Spec.Firmware.PublicKeyRef = &fwv1.ConfigMapKeySelector{Name: "fw-signing", Key: "sig-0.key"}
	writesBefore := w.hub.Writes()
	w.create(r)
	g.Eventually(func() bool {
		return meta.IsStatusConditionTrue(w.get("r").Status.Conditions, fwv1.ConditionStalled)
	}, 20*time.Second, 100*time.Millisecond).Should(BeTrue())
	got := w.get("r")
	stalled := meta.FindStatusCondition(got.Status.Conditions, fwv1.ConditionStalled)
	g.Expect(stalled.Reason).To(Equal(fwv1.ReasonFirmwareInvalid))
	g.Expect(stalled.Message).To(ContainSubstring("does not verify"))
	g.Expect(got.Status.Phase).To(Equal(fwv1.PhasePending))
	g.Expect(w.hub.RolloutWrites(string(got.UID))).To(BeEmpty())
	// Only CUPS observations were written, never firmware.
	for i := range w.specs {
		g.Expect(w.twinOf(w.id(i)).CUPS.Package).To(Equal("2.0.6"))
	}
	_ = writesBefore
}

// TestDeleteReleasesStations: deleting a completed rollout leaves its
// firmware in place and no twin owned by it.
func TestDeleteReleasesStations(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 10, nil)
	w.create(w.rollout("r"))
	r := w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)
	g.Expect(testEnv.Client.Delete(context.Background(), r)).To(Succeed())
	g.Eventually(func() bool {
		err := testEnv.Client.Get(context.Background(), clientKey(r), &fwv1.FirmwareRollout{})
		return err != nil
	}, 20*time.Second, 100*time.Millisecond).Should(BeTrue())
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).To(BeNil())
		g.Expect(tw.CUPS.Package).To(Equal("2.0.7"))
	}
}
