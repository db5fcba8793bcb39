package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// The TestUnit* tests run each phase alone over fakes: no API server, no
// IoT Hub, milliseconds each (go test ./controllers/ -run Unit). The
// envtest suites (rollout_test.go, outcome_test.go) prove the behaviour
// against the real API server, the IoT Hub emulator and simulated stations.

var unitNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// unit is one phase test's reconciler, fakes and rollout.
type unit struct {
	r      *FirmwareRolloutReconciler
	twins  *memTwins
	cache  *FakeCache
	rec    *events.FakeRecorder
	obj    *fwv1.FirmwareRollout
	client client.Client
}

// newUnit builds a reconciler over a fake API client holding obj and
// others, and an in-memory registry holding stations 0..n-1 on 2.0.6.
func newUnit(t *testing.T, n int, steps []fwv1.RolloutStep, others ...client.Object) *unit {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := fwv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	u := &unit{twins: newMemTwins(), cache: &FakeCache{}, rec: events.NewFakeRecorder(100)}
	u.obj = &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fw", UID: "uid-fw", Generation: 1},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{Package: "2.0.7", URL: "file:///fw/2.0.7.bin", Signature: "MEUCIQDxxxxxxxxxxxx=", KeyChecksum: 7},
			Strategy: fwv1.RolloutStrategy{Steps: steps},
		},
	}
	for i := range n {
		id := stationID(i)
		u.obj.Spec.Selector.DeviceIDs = append(u.obj.Spec.Selector.DeviceIDs, id)
		u.twins.add(id, twin.ObservationPatch(twin.Observation{Package: "2.0.6"}))
	}
	u.client = fake.NewClientBuilder().WithScheme(scheme).WithObjects(append(others, u.obj)...).
		WithStatusSubresource(&fwv1.FirmwareRollout{}).Build()
	u.r = &FirmwareRolloutReconciler{Client: u.client, Registry: u.twins.registry(), Cache: u.cache, Recorder: u.rec,
		Firmware: &FakeChecker{CheckFn: func(context.Context, FirmwareRef) error { return nil }},
		Now:      func() time.Time { return unitNow }}
	u.r.applyDefaults()
	return u
}

func stationID(i int) string { return fmt.Sprintf("0016C0FFFE%06X", i) }

// scope reads the rollout back and returns a scope of it at unitNow.
func (u *unit) scope(t *testing.T) *rolloutScope {
	t.Helper()
	obj := &fwv1.FirmwareRollout{}
	if err := u.client.Get(context.Background(), client.ObjectKeyFromObject(u.obj), obj); err != nil {
		t.Fatal(err)
	}
	return newScope(obj, unitNow)
}

// loaded is scope with the station view loaded and counted.
func (u *unit) loaded(t *testing.T) *rolloutScope {
	t.Helper()
	s := u.scope(t)
	if err := u.r.loadStations(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	u.r.updateStatus(context.Background(), s)
	return s
}

// report makes station i report pkg to CUPS.
func (u *unit) report(i int, pkg string) {
	u.twins.mu.Lock()
	defer u.twins.mu.Unlock()
	u.twins.apply(stationID(i), twin.ObservationPatch(twin.Observation{Package: pkg}))
}

// events drains the recorded Events.
func (u *unit) events() []string {
	var out []string
	for {
		select {
		case e := <-u.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func batchStep(v string) fwv1.RolloutStep {
	b := intstr.Parse(v)
	return fwv1.RolloutStep{Batch: &b}
}

func TestUnitHalt(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 4, []fwv1.RolloutStep{batchStep("100%")})
	maxF := intstr.FromInt32(1)
	s := u.loaded(t)
	s.obj.Spec.Strategy.MaxFailures = &maxF
	s.obj.Status.Failed = 1
	g.Expect(u.r.halt(context.Background(), s)).To(Succeed(), "as many failures as maxFailures allows go on")

	s.obj.Status.Failed = 2
	err := u.r.halt(context.Background(), s)
	var stall *Stalling
	g.Expect(errors.As(err, &stall)).To(BeTrue())
	g.Expect(stall.Phase).To(Equal(fwv1.PhaseHalted))
	g.Expect(stall.Err.Error()).To(HavePrefix("2 stations failed, more than maxFailures allows (1)"))
	g.Expect(stall.RequeueAfter).To(BeNumerically(">", 0), "a halted rollout keeps counting its stations")
	g.Expect(s.obj.Status.CompletionTime).NotTo(BeNil())
	g.Expect(u.events()).To(ConsistOf(ContainSubstring(fwv1.ReasonHalted)))

	// Halted already: still halted, no new Event.
	s.obj.Status.Phase = fwv1.PhaseHalted
	err = u.r.halt(context.Background(), s)
	g.Expect(errors.As(err, &stall)).To(BeTrue())
	g.Expect(stall.Err.Error()).To(HavePrefix("2 stations failed, more than maxFailures allows (1)"))
	g.Expect(u.events()).To(BeEmpty())

	// The halt follows from the spec: maxFailures raised past the failures
	// lets the rollout go on, and says why.
	maxF = intstr.FromInt32(2)
	g.Expect(u.r.halt(context.Background(), s)).To(Succeed())
	g.Expect(s.obj.Status.CompletionTime).To(BeNil())
	g.Expect(u.events()).To(ConsistOf(And(ContainSubstring(fwv1.ReasonResumed),
		ContainSubstring("2 stations failed and maxFailures 2 allows 2: the halt is lifted and the rollout goes on"))))
}

func TestUnitPause(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 2, []fwv1.RolloutStep{batchStep("1"), batchStep("1")})
	s := u.loaded(t)
	g.Expect(u.r.pause(context.Background(), s)).To(Succeed())
	s.obj.Spec.Paused = true
	var w *Waiting
	g.Expect(errors.As(u.r.pause(context.Background(), s), &w)).To(BeTrue())
	g.Expect(w.Phase).To(Equal(fwv1.PhasePaused))
	g.Expect(u.events()).To(HaveLen(1))
	s.obj.Status.Phase = fwv1.PhasePaused
	g.Expect(errors.As(u.r.pause(context.Background(), s), &w)).To(BeTrue())
	g.Expect(u.events()).To(BeEmpty(), "announced once, when the rollout pauses")
}

func TestUnitPauseSteps(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 1, []fwv1.RolloutStep{{Pause: &fwv1.PauseStep{Duration: &metav1.Duration{Duration: time.Hour}}}, {Pause: &fwv1.PauseStep{}}})
	s := u.scope(t)
	start := metav1.NewTime(unitNow.Add(-30 * time.Minute))
	s.obj.Status.StepStartTime = &start
	var w *Waiting
	g.Expect(errors.As(u.r.stepTimedPause(s, 1, time.Hour), &w)).To(BeTrue())
	g.Expect(w.RequeueAfter).To(Equal(30*time.Minute + time.Second))
	g.Expect(u.r.stepTimedPause(s, 1, 30*time.Minute)).To(Succeed(), "the pause is over")

	g.Expect(errors.As(u.r.stepIndefinitePause(context.Background(), s, 2), &w)).To(BeTrue())
	g.Expect(w.Reason).To(Equal(fwv1.ReasonWaitingForResume))
	s.obj.Status.LastHandledResume = "t1"
	s.obj.Annotations = map[string]string{fwv1.ResumeAnnotation: "t1"}
	g.Expect(errors.As(u.r.stepIndefinitePause(context.Background(), s, 2), &w)).To(BeTrue(), "an old resume does not resume")
	s.obj.Annotations[fwv1.ResumeAnnotation] = "t2"
	g.Expect(u.r.stepIndefinitePause(context.Background(), s, 2)).To(Succeed())
	g.Expect(s.obj.Status.LastHandledResume).To(Equal("t2"))
}

func TestUnitPreflight(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 1, []fwv1.RolloutStep{batchStep("1")})
	u.r.Options.PreflightRetry, u.r.Options.StatusResync = time.Hour, time.Minute
	checks := 0
	var result error
	u.r.Firmware = &FakeChecker{CheckFn: func(_ context.Context, ref FirmwareRef) error {
		checks++
		g.Expect(ref.URL).To(Equal("file:///fw/2.0.7.bin"))
		g.Expect(ref.KeyChecksum).To(BeEquivalentTo(7))
		return result
	}}
	s := u.scope(t)
	var stall *Stalling

	result = errors.New("firmware blob not found")
	g.Expect(errors.As(u.r.preflight(context.Background(), s), &stall)).To(BeTrue())
	g.Expect(stall.Reason).To(Equal(fwv1.ReasonFirmwareInvalid))
	g.Expect(stall.Err.Error()).To(Equal("firmware check failed, no twin was written: firmware blob not found"))
	g.Expect(stall.RequeueAfter).To(BeNumerically(">=", time.Hour))
	g.Expect(meta.IsStatusConditionFalse(s.obj.Status.Conditions, ConditionFirmwareVerified)).To(BeTrue())

	result = fmt.Errorf("%w: 503", ErrFirmwareUnavailable)
	g.Expect(errors.As(u.r.preflight(context.Background(), s), &stall)).To(BeTrue())
	g.Expect(stall.RequeueAfter).To(BeNumerically("<", 2*time.Minute), "a store outage is checked again soon")

	result = nil
	g.Expect(u.r.preflight(context.Background(), s)).To(Succeed())
	g.Expect(meta.IsStatusConditionTrue(s.obj.Status.Conditions, ConditionFirmwareVerified)).To(BeTrue())
	g.Expect(u.r.preflight(context.Background(), s)).To(Succeed())
	g.Expect(checks).To(Equal(3), "a verified firmware is not checked again")

	s.obj.Status.Conditions = nil
	s.obj.Spec.Firmware.PublicKeyRef = &fwv1.ConfigMapKeySelector{Name: "missing", Key: "k"}
	g.Expect(errors.As(u.r.preflight(context.Background(), s), &stall)).To(BeTrue())
	g.Expect(stall.Err.Error()).To(ContainSubstring("publicKeyRef: no ConfigMap missing in namespace ns"))
	g.Expect(checks).To(Equal(3), "a key that cannot be read stalls before the check")
}

// TestUnitReconcileToCompletion runs whole passes (every phase and the
// status patch) over the fake API client and registry.
func TestUnitReconcileToCompletion(t *testing.T) {
	g := NewWithT(t)
	u := newUnit(t, 4, []fwv1.RolloutStep{batchStep("1"), {Pause: &fwv1.PauseStep{Duration: &metav1.Duration{Duration: time.Minute}}}, batchStep("100%")})
	pass := func() (*fwv1.FirmwareRollout, ctrl.Result) {
		res, err := u.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(u.obj)})
		g.Expect(err).NotTo(HaveOccurred())
		obj := &fwv1.FirmwareRollout{}
		g.Expect(u.client.Get(context.Background(), client.ObjectKeyFromObject(u.obj), obj)).To(Succeed())
		return obj, res
	}
	obj, _ := pass()
	g.Expect(obj.Finalizers).To(ContainElement(fwv1.Finalizer))
	g.Expect(obj.Status.Phase).To(Equal(fwv1.PhaseProgressing))
	g.Expect(obj.Status.InProgress).To(BeEquivalentTo(1))
	g.Expect(obj.Status.ObservedGeneration).To(BeEquivalentTo(1))
	g.Expect(meta.IsStatusConditionTrue(obj.Status.Conditions, fwv1.ConditionReconciling)).To(BeTrue())

	for i := range 4 {
		if o := u.twins.twin(stationID(i)).Ownership; o != nil {
			u.report(i, "2.0.7")
		}
	}
	u.r.forceFullRead(obj)
	obj, res := pass()
	g.Expect(obj.Status.Phase).To(Equal(fwv1.PhasePaused))
	g.Expect(obj.Status.CurrentStep).To(BeEquivalentTo(2))
	g.Expect(res.RequeueAfter).To(Equal(time.Minute + time.Second))

	unitNow = unitNow.Add(2 * time.Minute)
	defer func() { unitNow = unitNow.Add(-2 * time.Minute) }()
	obj, _ = pass()
	g.Expect(obj.Status.CurrentStep).To(BeEquivalentTo(3))
	g.Expect(obj.Status.InProgress).To(BeEquivalentTo(3))
	for i := range 4 {
		u.report(i, "2.0.7")
	}
	u.r.forceFullRead(obj)
	obj, res = pass()
	g.Expect(obj.Status.Phase).To(Equal(fwv1.PhaseCompleted))
	g.Expect(obj.Status.Updated).To(BeEquivalentTo(4))
	g.Expect(res.RequeueAfter).To(BeZero())
	g.Expect(meta.IsStatusConditionTrue(obj.Status.Conditions, fwv1.ConditionReady)).To(BeTrue())
	g.Expect(u.events()).To(ContainElement(ContainSubstring("4 of 4 stations updated")))
}
