package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Issue 15 items 3 and 4 in the CLI and Argo CD: retry, failurePolicy and
// the controller's own abort.

// autoAbortMessage is what the controller says when it aborted a rollout
// under failurePolicy Abort.
const autoAbortMessage = "3 stations failed, more than maxFailures allows (2): failurePolicy Abort restores the previous firmware on every station this rollout wrote"

// setAbortPolicy makes the rollout abort by itself after 2 failures.
func setAbortPolicy(o *fwv1.FirmwareRollout) {
	mf := intstr.FromInt32(2)
	o.Spec.Strategy.MaxFailures, o.Spec.Strategy.FailurePolicy = &mf, fwv1.FailurePolicyAbort
}

// autoAbortedStatus is a rollout the controller aborted under failurePolicy
// Abort.
func autoAbortedStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	msg := autoAbortMessage + "; aborted: the previous firmware is restored on 6 stations"
	st.Phase, st.InProgress, st.Failed = fwv1.PhaseAborted, 0, 3
	st.CompletionTime = ago(time.Minute)
	st.AbortReason, st.AbortMessage = fwv1.ReasonFailureLimitAborted, autoAbortMessage
	st.Conditions = []metav1.Condition{st.Conditions[0],
		cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonFailureLimitAborted, msg, time.Minute),
		cond(fwv1.ConditionStalled, metav1.ConditionTrue, fwv1.ReasonFailureLimitAborted, msg, time.Minute)}
	return st
}

// retriedStatus is a progressing rollout whose failed stations were
// retried 10 minutes before testNow.
func retriedStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	st.LastHandledRetry = testNow.Add(-10 * time.Minute).Format(time.RFC3339Nano)
	return st
}

// noFailures is a progressing rollout without failed stations.
func noFailures() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	st.Failed, st.InProgress, st.Failures = 0, 3, nil
	return st
}

// retryArgoCases are the states retry adds to the Argo CD tests.
func retryArgoCases(mk func(int64, func(*fwv1.FirmwareRollout), fwv1.FirmwareRolloutStatus) *fwv1.FirmwareRollout) []argoCase {
	return []argoCase{
		{"progressing without failures", mk(1, nil, noFailures()), "Progressing", "step 2 of 4: 3 updated, 2 in progress, 1 failed, 44 pending of 50 stations", []string{"abort", "pause"}},
		{"aborted by failurePolicy Abort", mk(1, setAbortPolicy, autoAbortedStatus()), "Degraded",
			autoAbortMessage + "; aborted: the previous firmware is restored on 6 stations", nil},
		{"retried, progressing", mk(1, nil, retriedStatus()), "Progressing", "step 2 of 4: 3 updated, 2 in progress, 1 failed, 44 pending of 50 stations", []string{"abort", "pause", "retry"}},
	}
}

// TestRetry runs retry against the API server over every phase, and checks
// that it stamps the annotation or refuses and leaves the rollout alone.
func TestRetry(t *testing.T) {
	kc := kubeconfig(t)
	stamp := testNow.UTC().Format(time.RFC3339Nano)
	tests := []struct {
		name       string
		spec       func(*fwv1.FirmwareRollout)
		status     fwv1.FirmwareRolloutStatus
		wantOut    string
		wantRefuse string
	}{
		{name: "retry a halted rollout", status: haltedStatus(),
			wantOut: "rollout x: retry requested: the update is sent again to its 4 failed stations, their attempts counted afresh; the rollout goes on once its failures are within maxFailures"},
		{name: "retry a progressing rollout with a failure", status: progressingStatus(), wantOut: "sent again to its 1 failed stations"},
		{name: "retry a rollout waiting for resume", status: waitingStatus("x"), wantOut: "retry requested"},
		{name: "retry a rollout retried before", status: retriedStatus(), wantOut: "retry requested"},
		{name: "refuses without failures", status: noFailures(), wantRefuse: "rollout x has no failed station: there is nothing to retry; follow it with"},
		{name: "refuses a completed one", status: completedStatus(),
			wantRefuse: "rollout x is Completed: a finished rollout sends nothing again; to update its failed stations (`stationfleet stations x --outcome Failed`), roll the firmware out to them with a new FirmwareRollout"},
		{name: "refuses an aborted one", spec: setAbort, status: abortedStatus(), wantRefuse: "is Aborted: an abort cannot be undone; create a new FirmwareRollout"},
		{name: "refuses one the controller aborted", spec: setAbortPolicy, status: autoAbortedStatus(), wantRefuse: "is Aborted: an abort cannot be undone"},
		{name: "refuses an aborting one", spec: setAbort, status: abortingStatus(), wantRefuse: "is being aborted: an abort cannot be undone"},
		{name: "refuses one not started", status: firmwareInvalidStatus(), wantRefuse: "has not started (phase Pending): no station has failed"},
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

			r := runCLI(t, "retry", "x", "--kubeconfig", kc, "-n", ns)

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
			g.Expect(r.errOut).To(BeEmpty(), "the annotation is not in Git: no warning to change Git")
			g.Expect(got.Annotations[fwv1.RetryAnnotation]).To(Equal(stamp))
			g.Expect(got.Spec).To(Equal(obj.Spec), "retry changes no spec field")
		})
	}
}

// TestStatusShowsFailurePolicyAndRetry: the status view says what failures
// do (failurePolicy), why the controller aborted, and the last retry.
func TestStatusShowsFailurePolicyAndRetry(t *testing.T) {
	kc := kubeconfig(t)
	tests := []struct {
		name   string
		spec   func(*fwv1.FirmwareRollout)
		status fwv1.FirmwareRolloutStatus
	}{
		{"auto-aborted", setAbortPolicy, autoAbortedStatus()},
		{"retried", nil, retriedStatus()},
		{"halted-retry-requested", func(o *fwv1.FirmwareRollout) {
			o.Annotations = map[string]string{fwv1.RetryAnnotation: testNow.Add(-time.Minute).Format(time.RFC3339Nano)}
		}, haltedStatus()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := testEnv.Namespace(t)
			obj := newRollout(ns, "fw-2-0-7")
			if tt.spec != nil {
				tt.spec(obj)
			}
			createRollout(t, obj, tt.status)
			r := runCLI(t, "status", "fw-2-0-7", "--kubeconfig", kc, "-n", ns)
			g.Expect(r.code).To(Equal(0), r.errOut)
			golden(t, "status-"+tt.name+".golden", strings.ReplaceAll(r.out, ns, "NAMESPACE"))
		})
	}
	// Followed with -w, a halted rollout whose retry is not yet handled
	// is not a stop.
	o := newRollout("ns", "x")
	o.Status = haltedStatus()
	o.Annotations = map[string]string{fwv1.RetryAnnotation: "t1"}
	done, _ := stopped(o)
	NewWithT(t).Expect(done).To(BeFalse())
	o.Status.LastHandledRetry = "t1"
	done, err := stopped(o)
	NewWithT(t).Expect(done).To(BeTrue())
	NewWithT(t).Expect(err).To(HaveOccurred())
}
