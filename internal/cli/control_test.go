package cli

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// abortingStatus is a rollout restoring the previous firmware.
func abortingStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	msg := "restoring the previous firmware on the stations this rollout wrote"
	st.Phase = fwv1.PhaseAborting
	st.Conditions = []metav1.Condition{st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonAborting, msg, time.Minute),
		cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonAborting, msg, time.Minute)}
	return st
}

func abortedStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	msg := "aborted: the previous firmware is restored on 6 stations"
	st.Phase = fwv1.PhaseAborted
	st.InProgress = 0
	st.CompletionTime = ago(time.Minute)
	st.Conditions = []metav1.Condition{st.Conditions[0], cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonAborted, msg, time.Minute)}
	return st
}

// registryErrorStatus is st after a reconcile failed on an IoT Hub error:
// the phase and step stay, Ready and Reconciling carry the error.
func registryErrorStatus(st fwv1.FirmwareRolloutStatus) fwv1.FirmwareRolloutStatus {
	msg := "retrying after an error: query stations owned by fleet/x: 503 Service Unavailable"
	st.Conditions = []metav1.Condition{st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonRegistryError, msg, time.Minute),
		cond(fwv1.ConditionReconciling, metav1.ConditionTrue, fwv1.ReasonRegistryError, msg, time.Minute)}
	return st
}

func timedPauseStatus() fwv1.FirmwareRolloutStatus {
	st := waitingStatus("x")
	st.Conditions[1] = cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonPaused, "step 3 of 4: pause until 2026-03-14T16:04:26Z", 5*time.Minute)
	return st
}

// TestControl runs pause, resume and abort against the API server over every
// phase, and checks what each changed, or that it refused and left the
// rollout alone.
func TestControl(t *testing.T) {
	kc := kubeconfig(t)
	stamp := testNow.UTC().Format(time.RFC3339Nano)
	type want struct {
		paused, abort bool
		resumeAt      string
	}
	tests := []struct {
		name       string
		act        control
		spec       func(*fwv1.FirmwareRollout)
		status     fwv1.FirmwareRolloutStatus
		want       want   // the spec and annotation afterwards
		wantOut    string // printed on success
		wantRefuse string // the error, when refused
	}{
		{name: "pause a progressing rollout", act: controlPause, status: progressingStatus(),
			want: want{paused: true}, wantOut: "rollout x paused: no further twin is written"},
		{name: "pause a rollout waiting for resume", act: controlPause, status: waitingStatus("x"), want: want{paused: true}},
		{name: "pause refuses a paused one", act: controlPause, spec: setPaused, status: progressingStatus(),
			want: want{paused: true}, wantRefuse: "already paused (spec.paused is true); resume it with `stationfleet resume x`"},
		{name: "pause refuses a completed one", act: controlPause, status: completedStatus(), wantRefuse: "is Completed: there is nothing left to pause"},
		{name: "pause refuses an aborted one", act: controlPause, spec: setAbort, status: abortedStatus(), want: want{abort: true}, wantRefuse: "is Aborted"},
		{name: "pause refuses a halted one", act: controlPause, status: haltedStatus(), wantRefuse: "is Halted"},
		{name: "pause refuses an aborting one", act: controlPause, spec: setAbort, status: abortingStatus(), want: want{abort: true}, wantRefuse: "is being aborted"},

		{name: "resume a paused rollout", act: controlResume, spec: setPaused, status: func() fwv1.FirmwareRolloutStatus {
			st := progressingStatus()
			st.Phase = fwv1.PhasePaused
			st.Conditions[1] = cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonPaused, "spec.paused is true", time.Minute)
			st.Conditions = st.Conditions[:2]
			return st
		}(), want: want{}, wantOut: "rollout x resumed"},
		{name: "resume a rollout waiting in a pause step stamps the annotation", act: controlResume, status: waitingStatus("x"),
			want: want{resumeAt: stamp}},
		{name: "resume a paused rollout in a pause step does both", act: controlResume, spec: setPaused, status: func() fwv1.FirmwareRolloutStatus {
			st := waitingStatus("x")
			st.Conditions[1] = cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonPaused, "spec.paused is true", time.Minute)
			return st
		}(), want: want{resumeAt: stamp}},
		{name: "resume refuses a progressing one", act: controlResume, status: progressingStatus(),
			wantRefuse: "is not paused (phase Progressing): there is nothing to resume"},
		{name: "resume refuses a timed pause", act: controlResume, spec: setTimedPause, status: timedPauseStatus(),
			wantRefuse: "rollout x is in a timed pause step (step 3 of 4), which ends by itself; it ends at 2026-03-14T16:04:26Z"},
		{name: "resume a rollout waiting in a pause step while the controller retries a registry error", act: controlResume,
			status: registryErrorStatus(waitingStatus("x")), want: want{resumeAt: stamp}},
		{name: "resume refuses a timed pause while the controller retries a registry error", act: controlResume, spec: setTimedPause,
			status:     registryErrorStatus(timedPauseStatus()),
			wantRefuse: "rollout x is in a timed pause step (step 3 of 4), which ends by itself; it ends at 2026-03-14T16:04:26Z"},
		{name: "resume refuses a completed one", act: controlResume, status: completedStatus(), wantRefuse: "is Completed: there is nothing to resume"},
		{name: "resume refuses a halted one", act: controlResume, status: haltedStatus(), wantRefuse: "is Halted"},
		{name: "resume refuses an aborted one", act: controlResume, spec: setAbort, status: abortedStatus(), want: want{abort: true}, wantRefuse: "an abort cannot be undone"},

		{name: "abort a progressing rollout", act: controlAbort, status: progressingStatus(), want: want{abort: true},
			wantOut: "rollout x is aborting: the previous firmware is restored on every station it wrote"},
		{name: "abort a halted rollout", act: controlAbort, status: haltedStatus(), want: want{abort: true}},
		{name: "abort a paused rollout", act: controlAbort, spec: setPaused, status: waitingStatus("x"), want: want{paused: true, abort: true}},
		{name: "abort a stalled rollout", act: controlAbort, status: firmwareInvalidStatus(), want: want{abort: true}},
		{name: "abort refuses a completed one", act: controlAbort, status: completedStatus(),
			wantRefuse: "is Completed: every step is done, so there is nothing to abort; to go back, publish the previous firmware and roll it out with a new FirmwareRollout"},
		{name: "abort refuses an aborted one", act: controlAbort, spec: setAbort, status: abortedStatus(), want: want{abort: true}, wantRefuse: "is already Aborted"},
		{name: "abort refuses an aborting one", act: controlAbort, spec: setAbort, status: abortingStatus(), want: want{abort: true}, wantRefuse: "already being aborted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := testEnv.Namespace(t)
			obj := newRollout(ns, "x")
			if tt.spec != nil {
				tt.spec(obj)
			}
			obj = createRollout(t, obj, tt.status)
			before := obj.ResourceVersion

			r := runCLI(t, string(tt.act), "x", "--kubeconfig", kc, "-n", ns)

			got := &fwv1.FirmwareRollout{}
			g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), got)).To(Succeed())
			if tt.wantRefuse != "" {
				g.Expect(r.code).To(Equal(1))
				g.Expect(r.errOut).To(ContainSubstring(tt.wantRefuse))
				g.Expect(got.ResourceVersion).To(Equal(before), "a refused command must not change the rollout")
				return
			}
			g.Expect(r.code).To(Equal(0), r.errOut)
			g.Expect(r.out).To(ContainSubstring(tt.wantOut))
			g.Expect(got.Spec.Paused).To(Equal(tt.want.paused))
			g.Expect(got.Spec.Abort).To(Equal(tt.want.abort))
			g.Expect(got.Annotations[fwv1.ResumeAnnotation]).To(Equal(tt.want.resumeAt))
			g.Expect(got.Spec.Firmware).To(Equal(obj.Spec.Firmware))
		})
	}
}

func setPaused(o *fwv1.FirmwareRollout) { o.Spec.Paused = true }
func setAbort(o *fwv1.FirmwareRollout)  { o.Spec.Abort = true }

// TestControlWarnsForArgoCD checks that a rollout Argo CD manages gets a
// warning to change Git too, since a sync would revert spec.paused.
func TestControlWarnsForArgoCD(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	obj := newRollout(ns, "x")
	obj.Annotations = map[string]string{argoTrackingAnnotation: "fleet:firmware.stationfleet.io/FirmwareRollout:" + ns + "/x"}
	createRollout(t, obj, progressingStatus())
	r := runCLI(t, "pause", "x", "--kubeconfig", kubeconfig(t), "-n", ns)
	g.Expect(r.code).To(Equal(0), r.errOut)
	g.Expect(r.errOut).To(ContainSubstring("warning: Argo CD manages " + ns + "/x: set spec.paused: true in Git too"))
}

// TestControlDecidesOnTheCurrentState checks that a command decides on the
// rollout as the API server holds it, not on an earlier copy.
func TestControlDecidesOnTheCurrentState(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	obj := createRollout(t, newRollout(ns, "x"), progressingStatus())
	stale := obj.DeepCopy()
	// Someone else pauses it first.
	g.Expect(testEnv.Client.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"paused":true}}`)))).To(Succeed())

	plan, err := planControl(controlPause, stale, "stationfleet", testNow)
	g.Expect(err).NotTo(HaveOccurred(), "the stale copy still looks pausable")
	g.Expect(plan.patch).To(HaveKey("spec"))
	// The CLI reads the current state and refuses: already paused.
	r := runCLI(t, "pause", "x", "--kubeconfig", kubeconfig(t), "-n", ns)
	g.Expect(r.code).To(Equal(1))
	g.Expect(r.errOut).To(ContainSubstring("already paused"))
}
