package e2e

import (
	"os/exec"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestBatchWindowsInTheManager: the manager process, on its real clock,
// keeps a rollout outside its batch window (in a zone with a half-hour
// offset) from writing any twin, says until when in status and in `kubectl
// get fwr -o wide`, and starts the batch once the window is open. The
// window is computed from the time the test starts, 12 hours ahead, so it
// is closed however the test is timed; it is then widened to always open
// (every minute for a minute) rather than waited for.
func TestBatchWindowsInTheManager(t *testing.T) {
	g := NewWithT(t)
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	g.Expect(err).NotTo(HaveOccurred())
	opens := time.Now().In(kolkata).Add(12 * time.Hour).Truncate(time.Minute)
	w := newWorld(t, worldOptions{stations: 6})
	r := w.rollout("r", batch("2"), batch("100%"))
	r.Spec.Strategy.Windows = []fwv1.BatchWindow{{
		Schedule: strconv.Itoa(opens.Minute()) + " " + strconv.Itoa(opens.Hour()) + " * * *",
		Duration: metav1.Duration{Duration: time.Minute}, TimeZone: "Asia/Kolkata",
	}}
	w.create(r)

	g.Eventually(func() string {
		c := meta.FindStatusCondition(w.get("r").Status.Conditions, fwv1.ConditionReady)
		if c == nil {
			return ""
		}
		return c.Reason
	}, 30*time.Second, 100*time.Millisecond).Should(Equal(fwv1.ReasonOutsideWindow), func() string { return statusString(w.get("r")) })
	r = w.get("r")
	g.Expect(r.Status.Phase).To(Equal(fwv1.PhasePaused))
	g.Expect(meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady).Message).To(HavePrefix(
		"step 1 of 2: waiting for a batch window: the next opens at " + opens.Format(time.RFC3339) + " (Asia/Kolkata), in 1"))
	g.Expect(r.Status.NextWindow).NotTo(BeNil())
	g.Expect(r.Status.NextWindow.Time.Equal(opens)).To(BeTrue(), "nextWindow %s, want %s", r.Status.NextWindow, opens)

	out, err := exec.Command(kubectlBinary(t), "--kubeconfig="+kubeconfigPath, "-n", w.ns, "get", "fwr", "r", "-o", "wide").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl get -o wide: %s", out)
	g.Expect(string(out)).To(ContainSubstring("NEXT WINDOW"))
	g.Expect(string(out)).To(ContainSubstring(opens.UTC().Format(time.RFC3339)))

	g.Consistently(func() int {
		owned := 0
		for i := range w.specs {
			if w.twinOf(i).Ownership != nil {
				owned++
			}
		}
		return owned
	}, 2*time.Second, 250*time.Millisecond).Should(BeZero(), "a twin was written outside the window")

	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Strategy.Windows[0].Schedule = "* * * * *" })
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 6), statusString(r))
	g.Expect(r.Status.NextWindow).To(BeNil())
	w.expectWrittenOnce(g, r, 6)
}
