package controllers_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/signing"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestMaxUpdateAttemptsIsTheNumberOfSends (issue 13 item 1): with the
// default maxUpdateAttempts of 3, a station that never applies the update
// is sent it exactly 3 times, however often it polls afterwards, and the
// failure says so.
func TestMaxUpdateAttemptsIsTheNumberOfSends(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 4, func(i int, sp *embedded.StationSpec) {
		if i == 0 {
			sp.Behavior.NeverApply = true
		}
	})
	r := w.rollout("r")
	r.Spec.Strategy.MaxUpdateAttempts = nil // the API's default: 3
	w.create(r)
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Spec.Strategy.MaxUpdateAttempts).To(HaveValue(BeNumerically("==", 3)))
	g.Expect(r.Status.Failed).To(BeNumerically("==", 1))
	g.Expect(r.Status.Failures).To(HaveLen(1))
	g.Expect(r.Status.Failures[0].Reason).To(Equal(fwv1.FailureNotApplied))
	g.Expect(r.Status.Failures[0].Message).To(HavePrefix("served the update 3 times"))

	w.morePolls(0, 10)
	g.Expect(w.stations[0].Stats().UpdatesNotInstalled).To(BeNumerically("==", 3), "updates sent to the station that never applies")
	tw := w.twinOf(w.id(0))
	g.Expect(tw.Observation.UpdatesServed).To(Equal(3))
	g.Expect(tw.Ownership.Failed).To(Equal(string(fwv1.FailureNotApplied)))
}

// TestFailedStationNotSentAgain (issue 13 item 2): a station the rollout
// counted Failed is not sent the update again while the rollout exists,
// even once it could take it (here: it gets the signing key).
func TestFailedStationNotSentAgain(t *testing.T) {
	g := NewWithT(t)
	other, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	otherKey, err := signing.MarshalSigKey(&other.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	w := newWorld(t, 4, func(i int, sp *embedded.StationSpec) {
		if i == 0 {
			sp.SigKeys = [][]byte{otherKey}
		}
	})
	w.create(w.rollout("r"))
	r := w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Failed).To(BeNumerically("==", 1))
	g.Eventually(func() string { return w.twinOf(w.id(0)).Ownership.Failed }, 10*time.Second, 100*time.Millisecond).
		Should(Equal(string(fwv1.FailureKeyMismatch)), "the failure is recorded in the ownership record")

	st := w.stations[0].State()
	st.SigKeys = [][]byte{w.signer.SigKey}
	w.stations[0].SetState(st)
	g.Consistently(func() string { return w.stations[0].Package() }, 2*time.Second, 100*time.Millisecond).Should(Equal("2.0.6"))
	g.Expect(w.stations[0].Stats().UpdatesApplied).To(BeZero())
	r = w.get("r")
	g.Expect(r.Status.Failed).To(BeNumerically("==", 1), "a rollout's status is its history")
	g.Expect(r.Status.Updated).To(BeNumerically("==", 3))
}

// TestDeleteRestoresStationsNotUpdated (issue 13 item 2): deleting a
// rollout whose stations ended Failed NotApplied gives them their previous
// firmware back, so they are not sent the update on every poll; Updated
// stations keep the new firmware.
func TestDeleteRestoresStationsNotUpdated(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 10, func(i int, sp *embedded.StationSpec) {
		if i < 2 {
			sp.Behavior.NeverApply = true
		}
	})
	w.create(w.rollout("r"))
	r := w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Failed).To(BeNumerically("==", 2))
	g.Expect(r.Status.Updated).To(BeNumerically("==", 8))

	g.Expect(testEnv.Client.Delete(context.Background(), r)).To(Succeed())
	g.Eventually(func() error {
		return testEnv.Client.Get(context.Background(), clientKey(r), &fwv1.FirmwareRollout{})
	}, 20*time.Second, 100*time.Millisecond).Should(HaveOccurred())

	old := twin.Firmware{Package: w.old.Package, URL: w.old.URL, Signature: w.old.Signature, KeyChecksum: &w.old.KeyChecksum}
	sent := [2]int64{w.stations[0].Stats().UpdatesNotInstalled, w.stations[1].Stats().UpdatesNotInstalled}
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).To(BeNil(), "station %d still owned", i)
		if i < 2 {
			g.Expect(tw.CUPS.Firmware.Equal(old)).To(BeTrue(), "station %d keeps the failed firmware: %+v", i, tw.CUPS.Firmware)
			continue
		}
		g.Expect(tw.CUPS.Package).To(Equal("2.0.7"), "station %d", i)
	}
	w.morePolls(0, 10)
	w.morePolls(1, 10)
	for i := range 2 {
		g.Expect(w.stations[i].Stats().UpdatesNotInstalled).To(Equal(sent[i]), "station %d was sent the update again", i)
		g.Expect(w.stations[i].Package()).To(Equal("2.0.6"))
	}
}

// TestAbortThenTakeoverKeepHistory (issue 13 item 9): what a rollout
// counted for a station stays readable after it let the station go, and a
// refusal recorded for an aborted rollout is not the next rollout's.
func TestAbortThenTakeoverKeepHistory(t *testing.T) {
	g := NewWithT(t)
	other, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	otherKey, err := signing.MarshalSigKey(&other.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	w := newWorld(t, 4, func(i int, sp *embedded.StationSpec) {
		if i == 0 {
			sp.SigKeys = [][]byte{otherKey}
		}
	})
	// a: station 0 fails KeyMismatch, the rollout pauses, then is aborted.
	w.create(w.rollout("a", batch("100%"), pause(0)))
	w.waitPhase("a", fwv1.PhasePaused, 60*time.Second)
	w.patch("a", func(r *fwv1.FirmwareRollout) { r.Spec.Abort = true })
	a := w.waitPhase("a", fwv1.PhaseAborted, 30*time.Second)
	tw := w.twinOf(w.id(0))
	g.Expect(tw.Observation.Refusal).To(Equal(twin.RefusalKeyMismatch))
	o := rules.EvaluateStation(tw, a, nil, time.Now())
	g.Expect(o.State).To(Equal(fwv1.OutcomeFailed))
	g.Expect(o.Reason).To(Equal(string(fwv1.FailureKeyMismatch)))
	g.Expect(o.FromHistory).To(BeTrue())

	// b: the same package; station 0 got the key meanwhile, but stops
	// polling, so its twin keeps a's refusal. It is not Failed for b.
	w.stations[0].SetBehavior(stationsim.Behavior{StopPolling: true})
	w.giveKey(0, w.signer.SigKey)
	b := w.rollout("b", batch("100%"))
	b.Spec.Strategy.MaxUpdateAttempts = ptr.To[int32](3)
	w.create(b)
	g.Eventually(func() int32 { return w.get("b").Status.Updated }, 30*time.Second, 100*time.Millisecond).Should(BeNumerically("==", 3))
	g.Consistently(func() int32 { return w.get("b").Status.Failed }, time.Second, 100*time.Millisecond).Should(BeZero())
	g.Expect(w.get("b").Status.InProgress).To(BeNumerically("==", 1))
	w.stations[0].SetBehavior(stationsim.Behavior{})
	rb := w.waitPhase("b", fwv1.PhaseCompleted, 30*time.Second)
	g.Expect(rb.Status.Updated).To(BeNumerically("==", 4))

	// c: a later package takes every station over from the completed b.
	next, err := w.signer.Publish(filepath.Join(w.dir, "fw"), "2.0.8", 0)
	g.Expect(err).NotTo(HaveOccurred())
	c := w.rollout("c", batch("100%"))
	c.Spec.Firmware = fwv1.FirmwareSpec{Package: next.Package, URL: next.URL, Signature: next.Signature, KeyChecksum: int64(next.KeyChecksum)}
	w.create(c)
	w.waitPhase("c", fwv1.PhaseCompleted, 60*time.Second)
	rb = w.get("b")
	g.Expect(rb.Status.Updated).To(BeNumerically("==", 4), "b's status is its history")
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership.Rollout).To(Equal(w.ns + "/c"))
		o := rules.EvaluateStation(tw, rb, map[string]bool{}, time.Now())
		g.Expect(o.State).To(Equal(fwv1.OutcomeUpdated), "station %d as b counted it", i)
		g.Expect(o.Batch).To(Equal(1))
		g.Expect(tw.History).To(HaveLen(2), "station %d: b (takeover) and a (abort)", i)
	}
	// Station 0 was sent the update once, by b (a never sent it: KeyMismatch).
	o = rules.EvaluateStation(w.twinOf(w.id(0)), rb, map[string]bool{}, time.Now())
	g.Expect(o.UpdatesServed).To(Equal(1))
	g.Expect(meta.IsStatusConditionTrue(w.get("c").Status.Conditions, fwv1.ConditionReady)).To(BeTrue())
}

// giveKey replaces station i's signing keys with key.
func (w *world) giveKey(i int, key []byte) {
	st := w.stations[i].State()
	st.SigKeys = [][]byte{key}
	w.stations[i].SetState(st)
}

// morePolls waits until station i has polled CUPS n more times.
func (w *world) morePolls(i int, n int64) {
	w.t.Helper()
	start := w.stations[i].Stats().Polls
	NewWithT(w.t).Eventually(func() int64 { return w.stations[i].Stats().Polls }, 20*time.Second, 50*time.Millisecond).
		Should(BeNumerically(">=", start+n), "station %d polls", i)
}
