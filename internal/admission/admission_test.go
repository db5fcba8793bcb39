package admission_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stationfleet/stationfleet/internal/controlplane"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

var env *controlplane.Env

// TestMain starts a real API server with the webhook installed and served
// from this process, as the manager serves it in a cluster.
func TestMain(m *testing.M) {
	kubetest.SetupLogging()
	e, err := controlplane.Start(controlplane.Options{Admission: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: %v\n", err)
		os.Exit(1)
	}
	env = e
	code := m.Run()
	_ = e.Stop()
	os.Exit(code)
}

// rollout is a valid rollout with one analysis step whose fields are
// analysis (YAML lines indented for the step).
func rollout(name, analysis string) *unstructured.Unstructured {
	doc := `
apiVersion: firmware.stationfleet.io/v1alpha1
kind: FirmwareRollout
metadata: {name: ` + name + `}
spec:
  firmware:
    package: "2.0.7"
    url: azblob://firmware/basicstation/2.0.7/update.bin
    signature: MEUCIDueCaqDd/sJvPB3Iha0SPwCLyTqMj+cPtYmJPv383H0AiEAl7foOrYX2u1hfrEPl3wa7ZAnBScagvhAQuTR+b7svsM=
    keyChecksum: 4101823099
  selector:
    tags: {region: eu-west}
  strategy:
    steps:
    - batch: 1
    - analysis:
` + analysis + `
    - batch: 100%
`
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		panic(fmt.Sprintf("decode %s: %v", doc, err))
	}
	return u
}

// good is an analysis step the API server accepts; cases replace lines.
var good = []string{
	`        prometheus: {address: "http://prometheus.monitoring:9090"}`,
	`        query: 'sum(rate(uplinks_forwarded_total{eui=~"{{stations}}"}[5m])) / sum(rate(uplinks_received_total{eui=~"{{stations}}"}[5m]))'`,
	`        successCondition: "result >= 0.95"`,
	`        interval: 1m`,
	`        count: 5`,
	`        failureLimit: 1`,
}

func with(replace map[int]string) string {
	lines := append([]string(nil), good...)
	for i, l := range replace {
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// TestAnalysisStepsRefused: the API server refuses an analysis step whose
// condition does not compile (with CEL's own message), whose query is not
// a template over the analysis variables, or whose fields are out of
// bounds, and accepts a good one.
func TestAnalysisStepsRefused(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		step    string
		message []string
	}{
		{"condition that does not compile", with(map[int]string{2: `        successCondition: "result >="`}),
			[]string{"spec.strategy.steps[1].analysis.successCondition", "successCondition does not compile", "Syntax error"}},
		{"condition over an unknown variable", with(map[int]string{2: `        successCondition: "value > 0.9"`}),
			[]string{"successCondition does not compile", "undeclared reference to 'value'"}},
		{"condition that is not a bool", with(map[int]string{2: `        successCondition: "1 + 2"`}),
			[]string{"successCondition must be a bool expression, not int"}},
		{"query with a broken template", with(map[int]string{1: `        query: 'up{eui=~"{{stations"}'`}),
			[]string{"spec.strategy.steps[1].analysis.query", "query template"}},
		{"query naming an unknown variable", with(map[int]string{1: `        query: 'up{eui=~"{{station}}"}'`}),
			[]string{"function \"station\" not defined"}},
		{"address with credentials", with(map[int]string{0: `        prometheus: {address: "http://admin:secret@prometheus:9090"}`}),
			[]string{"must not carry user info"}},
		{"address not http", with(map[int]string{0: `        prometheus: {address: "ftp://prometheus:9090"}`}),
			[]string{"analysis.prometheus.address must start with http:// or https://"}},
		{"failureLimit not below count", with(map[int]string{5: `        failureLimit: 5`}),
			[]string{"analysis.failureLimit must be less than analysis.count"}},
		{"interval too short", with(map[int]string{3: `        interval: 100ms`}),
			[]string{"analysis.interval must be from 1s to 24h"}},
		{"unknown field in the step", with(map[int]string{3: `        intervall: 1m`}),
			[]string{`unknown field "spec.strategy.steps[1].analysis.intervall"`}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ns, err := env.CreateNamespace(ctx, "t")
			g.Expect(err).NotTo(HaveOccurred())
			u := rollout(fmt.Sprintf("bad-%d", i), tc.step)
			u.SetNamespace(ns)
			// Strict, as kubectl apply sends it: unknown fields are refused.
			err = env.Client.Create(ctx, u, client.FieldValidation("Strict"))
			g.Expect(err).To(HaveOccurred(), "the API server accepted %s", tc.name)
			for _, m := range tc.message {
				g.Expect(err.Error()).To(ContainSubstring(m))
			}
		})
	}
	t.Run("good analysis step", func(t *testing.T) {
		g := NewWithT(t)
		ns, err := env.CreateNamespace(ctx, "t")
		g.Expect(err).NotTo(HaveOccurred())
		u := rollout("good", with(nil))
		u.SetNamespace(ns)
		g.Expect(env.Client.Create(ctx, u, client.FieldValidation("Strict"))).To(Succeed())
	})
}

// TestStepKindsExclusive: a step with both a batch and an analysis is
// refused by the CRD's rule.
func TestStepKindsExclusive(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, err := env.CreateNamespace(ctx, "t")
	g.Expect(err).NotTo(HaveOccurred())
	u := rollout("both", with(nil))
	steps, _, _ := unstructured.NestedSlice(u.Object, "spec", "strategy", "steps")
	steps[1].(map[string]any)["batch"] = int64(1)
	g.Expect(unstructured.SetNestedSlice(u.Object, steps, "spec", "strategy", "steps")).To(Succeed())
	u.SetNamespace(ns)
	err = env.Client.Create(ctx, u)
	g.Expect(err).To(MatchError(ContainSubstring("each step must be exactly one of batch, pause or analysis")))
}

// TestUpdateRefusedOnlyWhenStepsChange: changing a good condition into one
// that does not compile is refused; an update that leaves the steps alone
// is not checked again (ratcheting).
func TestUpdateRefusedOnlyWhenStepsChange(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, err := env.CreateNamespace(ctx, "t")
	g.Expect(err).NotTo(HaveOccurred())
	u := rollout("upd", with(nil))
	u.SetNamespace(ns)
	g.Expect(env.Client.Create(ctx, u)).To(Succeed())

	steps, _, _ := unstructured.NestedSlice(u.Object, "spec", "strategy", "steps")
	steps[1].(map[string]any)["analysis"].(map[string]any)["successCondition"] = "result >>= 1"
	bad := u.DeepCopy()
	g.Expect(unstructured.SetNestedSlice(bad.Object, steps, "spec", "strategy", "steps")).To(Succeed())
	g.Expect(env.Client.Update(ctx, bad)).To(MatchError(ContainSubstring("successCondition does not compile")))

	u.SetLabels(map[string]string{"team": "lorawan"})
	g.Expect(env.Client.Update(ctx, u)).To(Succeed())
}
