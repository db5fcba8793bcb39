package controllers_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/promtest"
)

// forwardingRatio is the network-server-like query of the analysis tests:
// the share of the uplinks heard by the stations written so far that they
// forwarded, over the last 5 s.
const forwardingRatio = `sum(rate(stationsim_uplinks_forwarded_total{eui=~"{{stations}}"}[5s]))` +
	` / sum(rate(stationsim_uplinks_received_total{eui=~"{{stations}}"}[5s]))`

// startPrometheus serves the world's stations' network metrics and starts
// a real Prometheus scraping them every second.
func (w *world) startPrometheus() (*stationsim.NetworkMetrics, *promtest.Prometheus) {
	g := NewWithT(w.t)
	m := stationsim.NewNetworkMetrics(w.stations, 0)
	ctx, cancel := context.WithCancel(context.Background())
	w.t.Cleanup(cancel)
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	p := promtest.Start(w.t, addr)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	g.Expect(p.WaitScraped(wctx, 1)).To(Succeed())
	return m, p
}

// analysis is an analysis step over forwardingRatio: three measurements a
// second apart, after 6 s (the 5 s rate window then holds only samples
// taken after the batch completed).
func analysis(url string, onFailure fwv1.FailurePolicy) fwv1.RolloutStep {
	return fwv1.RolloutStep{Analysis: &fwv1.AnalysisStep{
		Name:             "forwarding",
		Prometheus:       fwv1.PrometheusSource{Address: url},
		Query:            forwardingRatio,
		SuccessCondition: "result >= 0.9",
		Interval:         &metav1.Duration{Duration: time.Second},
		InitialDelay:     &metav1.Duration{Duration: 6 * time.Second},
		Count:            ptr.To[int32](3),
		OnFailure:        onFailure,
	}}
}

// TestAnalysisPassesGoodFirmware: a firmware after which the stations
// forward every uplink passes its analysis against a real Prometheus and
// the rollout completes, with the measurements in status.
func TestAnalysisPassesGoodFirmware(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 6, nil)
	_, prom := w.startPrometheus()
	w.create(w.rollout("r", batch("3"), analysis(prom.URL, ""), batch("100%")))

	r := w.waitPhase("r", fwv1.PhaseCompleted, 90*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 6))
	g.Expect(r.Status.Analyses).To(HaveLen(1))
	a := r.Status.Analyses[0]
	g.Expect(a.Step).To(BeNumerically("==", 2))
	g.Expect(a.Phase).To(Equal(fwv1.AnalysisSuccessful))
	g.Expect(a.Successful).To(BeNumerically("==", 3))
	g.Expect(a.Failed + a.Errors).To(BeNumerically("==", 0))
	g.Expect(a.Measurements).To(HaveLen(3))
	for _, m := range a.Measurements {
		g.Expect(m.Phase).To(Equal(fwv1.MeasurementSuccessful))
		g.Expect(m.Value).To(Equal("1"))
	}
}

// TestAnalysisHaltsDegradingFirmware: stations that run the new firmware
// forward only 30% of their uplinks; the analysis fails, the rollout halts
// before the second batch with a Warning Event per failed measurement, and
// a resume runs the analysis again, and an abort during the halt restores
// every station.
func TestAnalysisHaltsDegradingFirmware(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 6, nil)
	metrics, prom := w.startPrometheus()
	metrics.Degrade(w.fw.Package, 0.3)
	w.create(w.rollout("r", batch("3"), analysis(prom.URL, ""), batch("100%")))

	r := w.waitPhase("r", fwv1.PhaseHalted, 90*time.Second)
	c := meta.FindStatusCondition(r.Status.Conditions, fwv1.ConditionReady)
	g.Expect(c.Reason).To(Equal(fwv1.ReasonAnalysisFailed))
	g.Expect(c.Message).To(ContainSubstring("analysis forwarding (step 2) failed"))
	g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, fwv1.ConditionStalled)).To(BeTrue())
	g.Expect(r.Status.Updated).To(BeNumerically("==", 3))
	g.Expect(r.Status.Pending).To(BeNumerically("==", 3), "the second batch must not be written")
	a := r.Status.Analyses[0]
	g.Expect(a.Phase).To(Equal(fwv1.AnalysisFailed))
	g.Expect(a.Failed).To(BeNumerically("==", 1))
	last := a.Measurements[len(a.Measurements)-1]
	g.Expect(last.Phase).To(Equal(fwv1.MeasurementFailed))
	g.Expect(last.Value).To(HavePrefix("0.3"))
	g.Eventually(func() []string { return w.eventReasons("r") }, 10*time.Second, 100*time.Millisecond).
		Should(ContainElements(fwv1.ReasonMeasurementFailed, fwv1.ReasonAnalysisFailed))
	g.Consistently(func() int32 { return w.get("r").Status.Pending }, 2*time.Second, 200*time.Millisecond).Should(BeNumerically("==", 3))

	// A resume runs the analysis again, from scratch: it fails again.
	firstRun := a.StartTime.Time
	w.patch("r", func(r *fwv1.FirmwareRollout) {
		r.Annotations = map[string]string{fwv1.ResumeAnnotation: time.Now().Format(time.RFC3339Nano)}
	})
	g.Eventually(func() bool { return w.get("r").Status.Analyses[0].StartTime.After(firstRun) }, 10*time.Second, 100*time.Millisecond).Should(BeTrue())
	r = w.waitPhase("r", fwv1.PhaseHalted, 30*time.Second)
	g.Expect(r.Status.Analyses[0].Failed).To(BeNumerically("==", 1), "the second run counts afresh")
	g.Expect(r.Status.Pending).To(BeNumerically("==", 3))

	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Abort = true })
	w.waitPhase("r", fwv1.PhaseAborted, 30*time.Second)
	w.expectRestored()
}

// TestAnalysisAbortsOnFailure: with onFailure Abort a failed analysis
// aborts the rollout by itself and restores every station it wrote.
func TestAnalysisAbortsOnFailure(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 6, nil)
	metrics, prom := w.startPrometheus()
	metrics.Degrade(w.fw.Package, 0.3)
	w.create(w.rollout("r", batch("3"), analysis(prom.URL, fwv1.FailurePolicyAbort), batch("100%")))

	r := w.waitPhase("r", fwv1.PhaseAborted, 90*time.Second)
	g.Expect(r.Status.AbortReason).To(Equal(fwv1.ReasonAnalysisAborted))
	g.Expect(r.Status.AbortMessage).To(ContainSubstring("analysis forwarding (step 2) failed"))
	g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, fwv1.ConditionStalled)).To(BeTrue())
	g.Expect(r.Status.Analyses[0].Phase).To(Equal(fwv1.AnalysisFailed))
	w.expectRestored()
}

// TestAnalysisSurvivesManagerRestart: the manager stops in the middle of an
// analysis and starts again; the analysis goes on from its status, with
// every measurement taken once.
func TestAnalysisSurvivesManagerRestart(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 4, nil)
	_, prom := w.startPrometheus()
	step := analysis(prom.URL, "")
	step.Analysis.InitialDelay = nil
	step.Analysis.Count = ptr.To[int32](5)
	w.create(w.rollout("r", batch("2"), step, batch("100%")))

	g.Eventually(func() int32 {
		if as := w.get("r").Status.Analyses; len(as) > 0 {
			return as[0].Successful + as[0].Failed + as[0].Errors
		}
		return 0
	}, 60*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", 2))
	w.killManager()
	before := w.get("r").Status.Analyses[0]
	time.Sleep(3 * time.Second)
	w.startManager()

	r := w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	a := r.Status.Analyses[0]
	// An error (no data yet at the first measurement) is not a verdict and
	// does not count towards count.
	g.Expect(a.Successful+a.Failed).To(BeNumerically("==", 5), "every measurement counted once: %+v", a)
	g.Expect(a.Measurements).To(HaveLen(5))
	for k := 1; k < len(a.Measurements); k++ {
		g.Expect(a.Measurements[k].ScheduledAt.Sub(a.Measurements[k-1].Time.Time)).To(BeNumerically(">=", 0))
		g.Expect(a.Measurements[k].Time.Sub(a.Measurements[k-1].Time.Time)).To(BeNumerically(">=", 900*time.Millisecond),
			"measurements %d and %d", k-1, k)
	}
	// What was recorded before the restart is still there, as it was.
	kept := before.Measurements[len(before.Measurements)-1]
	g.Expect(a.Measurements).To(ContainElement(kept))
}

// eventReasons returns the reasons of the Events about the rollout name.
func (w *world) eventReasons(name string) []string {
	var list eventsv1.EventList
	if err := testEnv.Client.List(context.Background(), &list, client.InNamespace(w.ns)); err != nil {
		w.t.Fatalf("list events: %v", err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// expectRestored checks that no station is owned any more and every one is
// back on the old firmware.
func (w *world) expectRestored() {
	g := NewWithT(w.t)
	for i := range w.specs {
		tw := w.twinOf(w.id(i))
		g.Expect(tw.Ownership).To(BeNil(), "station %d still owned", i)
		g.Expect(tw.CUPS.Firmware.Package).To(Equal(w.old.Package), "station %d not restored", i)
	}
}

// measured is how many measurements the rollout's first analysis took.
func (w *world) measured(name string) int32 {
	if as := w.get(name).Status.Analyses; len(as) > 0 {
		return as[0].Successful + as[0].Failed + as[0].Errors
	}
	return 0
}

// TestAnalysisPauseAndDelete: spec.paused stops an analysis (no
// measurement while paused) and unpausing goes on; deleting the rollout in
// the middle of an analysis releases its stations as during a pause.
func TestAnalysisPauseAndDelete(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 4, nil)
	_, prom := w.startPrometheus()
	step := analysis(prom.URL, "")
	step.Analysis.InitialDelay = nil
	step.Analysis.Count = ptr.To[int32](30)
	w.create(w.rollout("r", batch("2"), step, batch("100%")))

	g.Eventually(func() int32 { return w.measured("r") }, 60*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", 2))
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Paused = true })
	w.waitPhase("r", fwv1.PhasePaused, 10*time.Second)
	held := w.measured("r")
	g.Consistently(func() int32 { return w.measured("r") }, 3*time.Second, 200*time.Millisecond).Should(Equal(held))
	w.patch("r", func(r *fwv1.FirmwareRollout) { r.Spec.Paused = false })
	g.Eventually(func() int32 { return w.measured("r") }, 10*time.Second, 100*time.Millisecond).Should(BeNumerically(">", held))

	g.Expect(testEnv.Client.Delete(context.Background(), w.get("r"))).To(Succeed())
	g.Eventually(func() bool {
		err := testEnv.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: "r"}, &fwv1.FirmwareRollout{})
		return apierrors.IsNotFound(err)
	}, 30*time.Second, 100*time.Millisecond).Should(BeTrue())
	for i := range w.specs {
		g.Expect(w.twinOf(w.id(i)).Ownership).To(BeNil(), "station %d still owned", i)
	}
}

// TestAnalysisCredentialsFromSecret, with the manager holding only the RBAC
// it ships with: a secretRef the manager may not read makes each
// measurement an error that says what to grant, and the analysis fails
// past consecutiveErrorLimit; granted the one Secret by name (the README's
// Role) but with the Secret absent, the error names the missing Secret;
// once it exists, a resume runs the analysis again and it passes. The
// token never reaches the status.
func TestAnalysisCredentialsFromSecret(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	w := newWorld(t, 4, nil)
	w.runAsManagerAccount() // the RBAC it ships with: no Secrets at all
	_, prom := w.startPrometheus()
	step := analysis(prom.URL, "")
	step.Analysis.InitialDelay = &metav1.Duration{Duration: 4 * time.Second}
	step.Analysis.ConsecutiveErrorLimit = ptr.To[int32](1)
	step.Analysis.Prometheus.SecretRef = &fwv1.LocalObjectReference{Name: "prometheus-reader"}
	w.create(w.rollout("r", batch("2"), step, batch("100%")))
	resume := func() {
		w.patch("r", func(r *fwv1.FirmwareRollout) {
			r.Annotations = map[string]string{fwv1.ResumeAnnotation: time.Now().Format(time.RFC3339Nano)}
		})
		g.Eventually(func() fwv1.AnalysisPhase { return w.get("r").Status.Analyses[0].Phase }, 10*time.Second, 50*time.Millisecond).
			ShouldNot(Equal(fwv1.AnalysisFailed))
	}

	// Not granted: the measurement says what to grant.
	r := w.waitPhase("r", fwv1.PhaseHalted, 60*time.Second)
	a := r.Status.Analyses[0]
	g.Expect(a.Errors).To(BeNumerically("==", 2))
	g.Expect(a.Message).To(ContainSubstring("the manager may not read the Secret prometheus-reader in namespace " + w.ns))

	// Granted by name (the README's Role), but absent.
	g.Expect(testEnv.Client.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "analysis-secret"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"prometheus-reader"}, Verbs: []string{"get"}}},
	})).To(Succeed())
	g.Expect(testEnv.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "analysis-secret"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "analysis-secret"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "manager", Namespace: w.ns}},
	})).To(Succeed())
	resume()
	r = w.waitPhase("r", fwv1.PhaseHalted, 60*time.Second)
	g.Expect(r.Status.Analyses[0].Message).To(ContainSubstring("no Secret prometheus-reader in namespace " + w.ns))

	const token = "analysis-bearer-token-42"
	g.Expect(testEnv.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "prometheus-reader"},
		Data:       map[string][]byte{fwv1.AnalysisSecretToken: []byte(token)},
	})).To(Succeed())
	resume()
	r = w.waitPhase("r", fwv1.PhaseCompleted, 60*time.Second)
	g.Expect(r.Status.Analyses[0].Phase).To(Equal(fwv1.AnalysisSuccessful))
	b, err := json.Marshal(r.Status)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).NotTo(ContainSubstring(token))
}

// TestAnalysisInvalidConditionStallsBeforeAnyWrite: without the admission
// webhook (this suite's API server has none), a condition that does not
// compile reaches the manager; the rollout stalls Pending with the
// compiler's message before batch 1 writes any twin, and fixing the
// condition lets it go on.
func TestAnalysisInvalidConditionStallsBeforeAnyWrite(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 3, nil)
	bad := analysis("http://127.0.0.1:9", "")
	bad.Analysis.SuccessCondition = "result >="
	w.create(w.rollout("r", batch("1"), bad, batch("100%")))
	g.Eventually(func() bool {
		return meta.IsStatusConditionTrue(w.get("r").Status.Conditions, fwv1.ConditionStalled)
	}, 20*time.Second, 100*time.Millisecond).Should(BeTrue())
	got := w.get("r")
	stalled := meta.FindStatusCondition(got.Status.Conditions, fwv1.ConditionStalled)
	g.Expect(stalled.Reason).To(Equal(fwv1.ReasonInvalidStrategy))
	g.Expect(stalled.Message).To(ContainSubstring("analysis forwarding (step 2)"))
	g.Expect(stalled.Message).To(ContainSubstring("Syntax error"))
	g.Expect(got.Status.Phase).To(Equal(fwv1.PhasePending))
	g.Consistently(func() int { return len(w.hub.RolloutWrites(string(got.UID))) }, time.Second, 200*time.Millisecond).Should(BeZero())

	w.patch("r", func(r *fwv1.FirmwareRollout) {
		r.Spec.Strategy.Steps[1].Analysis.SuccessCondition = "result >= 0.9"
	})
	g.Eventually(func() int { return len(w.hub.RolloutWrites(string(got.UID))) }, 20*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 1))
}
