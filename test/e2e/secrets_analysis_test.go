package e2e

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// analysisWithSecret runs an analysis step whose Prometheus needs a bearer
// token from a Secret, first with a token Prometheus refuses (401: the
// analysis errors and halts the rollout), then, after the Secret is fixed
// and the rollout resumed, with the right one (it passes). Both tokens are
// scanned for in the manager's log, the rollouts, the Events and the
// CLI's status view. The Prometheus is a stand-in answering the HTTP API's
// shapes: what is under test is where the token goes, not PromQL.
func (sw *secretsWorld) analysisWithSecret(base *fwv1.FirmwareRollout) {
	sw.t.Helper()
	g := sw.g
	ctx := context.Background()
	good, wrong := randomToken(sw.t), randomToken(sw.t)
	sw.scan.AddText("analysis Prometheus bearer token", good)
	sw.scan.AddText("refused analysis Prometheus bearer token", wrong)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+good)) != 1 {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprint(w, `{"status":"error","errorType":"unauthorized","error":"token refused"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"1"]}]}}`, time.Now().Unix())
	}))
	sw.t.Cleanup(prom.Close)

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: sw.ns, Name: "prometheus-reader"},
		Data:       map[string][]byte{fwv1.AnalysisSecretToken: []byte(wrong)},
	}
	g.Expect(testEnv.Client.Create(ctx, secret)).To(Succeed())
	r := base.DeepCopy()
	r.ObjectMeta = metav1.ObjectMeta{Namespace: sw.ns, Name: "analysis-token"}
	r.Spec.Strategy.Steps = []fwv1.RolloutStep{{Analysis: &fwv1.AnalysisStep{
		Name:                  "forwarding",
		Prometheus:            fwv1.PrometheusSource{Address: prom.URL, SecretRef: &fwv1.LocalObjectReference{Name: secret.Name}},
		Query:                 `sum(rate(stationsim_uplinks_forwarded_total{eui=~"{{stations}}"}[5m]))`,
		SuccessCondition:      "result >= 0.95",
		Interval:              &metav1.Duration{Duration: time.Second},
		Count:                 ptr.To[int32](1),
		ConsecutiveErrorLimit: ptr.To[int32](1),
	}}}
	sw.create(r)
	halted := sw.waitPhase(r.Name, fwv1.PhaseHalted, 30*time.Second)
	g.Expect(halted.Status.Analyses).To(HaveLen(1))
	g.Expect(halted.Status.Analyses[0].Errors).To(BeNumerically("==", 2), "both measurements refused with 401")
	sw.run(0, "status", r.Name, "-n", sw.ns, "--kubeconfig", sw.kubeconfig)
	sw.snapshot("analysis refused by Prometheus")
	sw.step("analysis: token refused, rollout halted")

	secret.Data[fwv1.AnalysisSecretToken] = []byte(good)
	g.Expect(testEnv.Client.Update(ctx, secret)).To(Succeed())
	g.Eventually(func() error { // the manager writes the rollout too: retry on a conflict
		if err := testEnv.Client.Get(ctx, client.ObjectKeyFromObject(r), r); err != nil {
			return err
		}
		r.Annotations = map[string]string{fwv1.ResumeAnnotation: time.Now().Format(time.RFC3339Nano)}
		return testEnv.Client.Update(ctx, r)
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Eventually(func() fwv1.AnalysisPhase {
		if a := sw.get(r.Name).Status.Analyses; len(a) == 1 {
			return a[0].Phase
		}
		return ""
	}, 30*time.Second, 50*time.Millisecond).Should(Equal(fwv1.AnalysisSuccessful), "the right token passes")
	sw.run(0, "status", r.Name, "-n", sw.ns, "--kubeconfig", sw.kubeconfig)
	sw.step("analysis: right token, passed")
}
