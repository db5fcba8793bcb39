package controllers_test

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/app"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// Issue 19: what a halted rollout holds, and a rollout's status is its
// history, against the real API server, the IoT Hub emulator and simulated
// stations.

// badFirmware publishes version signed with a key no station holds: every
// station it is written to fails KeyMismatch.
func (w *world) badFirmware(version string) fwv1.FirmwareSpec {
	w.t.Helper()
	g := NewWithT(w.t)
	other, err := embedded.LoadOrCreateSigner(filepath.Join(w.dir, "keys", "other.pem"))
	g.Expect(err).NotTo(HaveOccurred())
	fw, err := other.Publish(filepath.Join(w.dir, "fw"), version, 0)
	g.Expect(err).NotTo(HaveOccurred())
	return fwv1.FirmwareSpec{Package: fw.Package, URL: fw.URL, Signature: fw.Signature, KeyChecksum: int64(fw.KeyChecksum)}
}

// haltedBad creates the rollout "bad" of a firmware no station can verify,
// written to n stations first, and waits until it is Halted with those n
// Failed. It returns the rollout and the stations it wrote.
func (w *world) haltedBad(n int) (*fwv1.FirmwareRollout, map[string]bool) {
	w.t.Helper()
	g := NewWithT(w.t)
	r := w.rollout("bad", batch(strconv.Itoa(n)), batch("100%"))
	r.Spec.Firmware = w.badFirmware("2.0.8")
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	w.waitPhase("bad", fwv1.PhaseHalted, 60*time.Second)
	g.Eventually(func() int32 { return w.get("bad").Status.Failed }, 30*time.Second, 100*time.Millisecond).Should(BeNumerically("==", n))
	bad := w.get("bad")
	written := map[string]bool{}
	for i := range w.specs {
		if tw := w.twinOf(w.id(i)); tw.Ownership != nil && tw.Ownership.UID == string(bad.UID) {
			written[w.id(i)] = true
		}
	}
	g.Expect(written).To(HaveLen(n))
	return bad, written
}

// expectHaltedHolds checks what the halted rollout "bad" holds, as the
// README says: every station it wrote is still its own and Failed; every
// other station is another rollout's, which it counts Skipped; the halt's
// count is status.failed.
func (w *world) expectHaltedHolds(g Gomega, get func() *fwv1.FirmwareRollout, written map[string]bool) {
	w.t.Helper()
	n := len(written)
	g.Eventually(func() string {
		r := get()
		s := r.Status
		if s.Phase != fwv1.PhaseHalted || int(s.Failed) != n || s.InProgress != 0 || s.Pending != 0 || int(s.Skipped) != len(w.specs)-n {
			return statusString(r)
		}
		return ""
	}, 30*time.Second, 200*time.Millisecond).Should(BeEmpty(), "the halted rollout's status agrees with the twins")
	r := get()
	msg := meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady).Message
	g.Expect(msg).To(HavePrefix("%d stations failed", n), "the halt's count is status.failed")
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).NotTo(BeNil(), "station %d", i)
		if written[w.id(i)] {
			g.Expect(tw.Ownership.UID).To(Equal(string(r.UID)), "station %d: the halted rollout keeps what it wrote", i)
			g.Expect(tw.Ownership.Failed).To(BeEquivalentTo(fwv1.FailureKeyMismatch))
			continue
		}
		g.Expect(tw.Ownership.UID).NotTo(Equal(string(r.UID)), "station %d", i)
	}
}

// TestHaltedRolloutHoldsWhatItWrote: a halted rollout keeps every station
// it wrote (no other rollout writes one of them) and does not hold the
// stations it never wrote: a later rollout (the fixed firmware) takes
// those, and the halted rollout counts them Skipped, so that its status
// agrees with the twins. Before, a halted rollout counted the stations a
// completed later rollout had taken Pending, waiting for itself.
func TestHaltedRolloutHoldsWhatItWrote(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 10, nil)
	_, written := w.haltedBad(3)

	w.create(w.rollout("fixed", batch("100%")))
	fixed := w.waitPhase("fixed", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(fixed.Status.Updated).To(BeNumerically("==", 7))
	g.Expect(fixed.Status.Skipped).To(BeNumerically("==", 3), "the halted rollout's stations are not taken")
	for id := range w.hub.RolloutWrites(string(fixed.UID)) {
		g.Expect(written).NotTo(HaveKey(id), "the fixed rollout wrote a station of the halted one")
	}
	w.expectHaltedHolds(g, func() *fwv1.FirmwareRollout { return w.get("bad") }, written)
	g.Consistently(func() int32 { return w.get("bad").Status.Failed }, 2*time.Second, 200*time.Millisecond).Should(BeNumerically("==", 3))
}

// TestHaltedFailuresStayCountedAcrossManagers: a rollout of another
// namespace, run by a manager that does not watch the halted rollout's
// namespace (so not in its cache), wants every station. It takes the
// halted rollout's never-written stations and leaves the ones it wrote,
// whose failure count and halt message stay as they were. Before, the
// other manager took the halted rollout's failed stations over (an owner
// it did not know held nothing), the halted rollout's failure count fell
// to 0 and the halt was lifted by a count that had lost its history.
func TestHaltedFailuresStayCountedAcrossManagers(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 10, nil)
	_, written := w.haltedBad(2)

	ns2 := testEnv.Namespace(t)
	w.startManagerIn(ns2)
	other := w.rollout("other", batch("100%"))
	other.Namespace = ns2
	w.create(other)
	getOther := func() *fwv1.FirmwareRollout {
		r := &fwv1.FirmwareRollout{}
		g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(other), r)).To(Succeed())
		return r
	}
	g.Eventually(func() fwv1.RolloutPhase { return getOther().Status.Phase }, 60*time.Second, 100*time.Millisecond).
		Should(Equal(fwv1.PhaseCompleted), func() string { return statusString(getOther()) })
	ro := getOther()
	g.Expect(ro.Status.Updated).To(BeNumerically("==", 8))
	g.Expect(ro.Status.Skipped).To(BeNumerically("==", 2))
	w.expectHaltedHolds(g, func() *fwv1.FirmwareRollout { return w.get("bad") }, written)
	g.Consistently(func() string {
		r := w.get("bad")
		msg := meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady).Message
		return string(r.Status.Phase) + " failed=" + strconv.Itoa(int(r.Status.Failed)) + " " + strings.SplitN(msg, ";", 2)[0]
	}, 2*time.Second, 200*time.Millisecond).Should(Equal("Halted failed=2 2 stations failed, more than maxFailures allows (0)"))
}

// startManagerIn runs a second manager, as startManager does, watching only
// ns, with its own CUPS port (the stations keep polling the first).
func (w *world) startManagerIn(ns string) {
	g := NewWithT(w.t)
	mgr, err := ctrl.NewManager(testEnv.Config, ctrl.Options{
		Scheme:                 testEnv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	g.Expect(err).NotTo(HaveOccurred())
	opts := app.DefaultOptions()
	opts.IoTHub.ConnectionStringFile = w.csFile
	opts.IoTHub.CAFile = w.hub.CAFile()
	opts.IoTHub.Endpoint = w.hub.Addr()
	opts.IoTHub.NoRateLimit = true
	opts.Firmware.Dir = filepath.Join(w.dir, "fw")
	addr := proc.FreeAddr(w.t)
	opts.CUPS = cups.Options{Addr: addr, Insecure: true, CacheTTL: 100 * time.Millisecond}
	opts.Rollout.StatusResync = time.Second
	opts.Rollout.TargetResync = time.Second
	_, err = app.Setup(mgr, opts)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	w.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			w.t.Error("second manager did not stop within 30s")
		}
	})
	g.Eventually(func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
}
