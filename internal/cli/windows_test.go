package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// setWindows gives newRollout a nightly batch window in Berlin.
func setWindows(o *fwv1.FirmwareRollout) {
	o.Spec.Strategy.Windows = []fwv1.BatchWindow{
		{Schedule: "0 2 * * *", Duration: metav1.Duration{Duration: 4 * time.Hour}, TimeZone: "Europe/Berlin"},
		{Schedule: "0 22 * * SAT,SUN", Duration: metav1.Duration{Duration: 2 * time.Hour}, TimeZone: "UTC"},
	}
}

// outsideWindowStatus is a rollout whose second batch waits for the next
// window (testNow is Saturday 16:09 in Berlin).
func outsideWindowStatus() fwv1.FirmwareRolloutStatus {
	st := progressingStatus()
	msg := "step 2 of 4: waiting for a batch window: the next opens at 2026-03-14T22:00:00Z (UTC), in 6h50m"
	st.Phase = fwv1.PhasePaused
	st.Conditions = []metav1.Condition{st.Conditions[0], cond(fwv1.ConditionReady, metav1.ConditionFalse, fwv1.ReasonOutsideWindow, msg, 10*time.Minute)}
	st.Batches = st.Batches[:1]
	st.InProgress, st.Updated, st.Failed, st.Pending, st.Progress = 0, 1, 0, 49, "1/50"
	st.Failures = nil
	next := metav1.NewTime(time.Date(2026, 3, 14, 22, 0, 0, 0, time.UTC))
	st.NextWindow = &next
	return st
}

// TestStatusOutsideWindowGolden: the status view shows the windows, that
// none is open and when the next opens, and what happens next.
func TestStatusOutsideWindowGolden(t *testing.T) {
	g := NewWithT(t)
	kc := kubeconfig(t)
	ns := testEnv.Namespace(t)
	obj := newRollout(ns, "fw-2-0-7")
	setWindows(obj)
	createRollout(t, obj, outsideWindowStatus())
	r := runCLI(t, "status", "fw-2-0-7", "--kubeconfig", kc, "-n", ns)
	g.Expect(r.code).To(Equal(0), r.errOut)
	golden(t, "status-outside-window.golden", strings.ReplaceAll(r.out, ns, "NAMESPACE"))
}

// TestWindowStateShown: open until when, closed until when.
func TestWindowStateShown(t *testing.T) {
	g := NewWithT(t)
	obj := newRollout("ns", "x")
	setWindows(obj)
	var out strings.Builder
	p := printer{now: time.Date(2026, 3, 15, 3, 0, 0, 0, time.UTC), cmd: "stationfleet"} // 04:00 in Berlin
	p.renderWindows(&out, obj, func(k, format string, args ...any) {
		out.WriteString(k + ": " + strings.TrimSpace(fmt.Sprintf(format, args...)) + "\n")
	})
	g.Expect(out.String()).To(Equal("Windows: 0 2 * * * for 4h (Europe/Berlin); 0 22 * * SAT,SUN for 2h (UTC)\n" +
		"Window: open until 2026-03-15T06:00:00+01:00 (Europe/Berlin, in 2h): a batch may start now\n"))
}

// TestResumeRefusesAWindowWait: a batch window is not a pause; resume says
// so and changes nothing.
func TestResumeRefusesAWindowWait(t *testing.T) {
	g := NewWithT(t)
	kc := kubeconfig(t)
	for _, st := range []fwv1.FirmwareRolloutStatus{outsideWindowStatus(), registryErrorStatus(outsideWindowStatus())} {
		ns := testEnv.Namespace(t)
		obj := newRollout(ns, "x")
		setWindows(obj)
		obj = createRollout(t, obj, st)
		r := runCLI(t, "resume", "x", "--kubeconfig", kc, "-n", ns)
		g.Expect(r.code).To(Equal(1))
		g.Expect(r.errOut).To(ContainSubstring("rollout x is waiting for a batch window, which is not a pause: the next batch starts by itself when a window opens (at 2026-03-14T22:00:00Z); to start it sooner, change spec.strategy.windows"))
		got := &fwv1.FirmwareRollout{}
		g.Expect(testEnv.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), got)).To(Succeed())
		g.Expect(got.ResourceVersion).To(Equal(obj.ResourceVersion), "a refused resume changes nothing")
	}
}
