package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// TestHaltedRolloutAlertFiresOnTheManagersMetrics: a rollout halts on the
// real manager (stations that never install the update); what the manager
// serves on /metrics then, given to promtool as the input of a rule unit
// test, makes the FirmwareRolloutHalted expression of
// config/prometheus/stationfleet.rules.yaml return that rollout, by its
// namespace and name, and the no-progress expression not return it (but
// join the manager's series on namespace and name as it should). The
// alerts work on the manager's own series and labels, not only on the
// hand-written ones of stationfleet.rules_test.yaml.
func TestHaltedRolloutAlertFiresOnTheManagersMetrics(t *testing.T) {
	g := NewWithT(t)
	promtool, err := exec.LookPath("promtool")
	if p := os.Getenv("PROMTOOL"); p != "" {
		promtool, err = p, nil
	}
	g.Expect(err).NotTo(HaveOccurred(), "promtool not found: install Debian's prometheus package or set PROMTOOL")

	metricsAddr := proc.FreeAddr(t)
	w := newWorld(t, worldOptions{stations: 6, managerArgs: []string{"--metrics-bind-address=" + metricsAddr},
		tweak: func(i int, sp *embedded.StationSpec) { sp.Behavior.NeverApply = i%2 == 0 }})
	r := w.rollout("r", batch("3"), batch("3"))
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(0))
	w.create(r)
	w.waitPhase("r", fwv1.PhaseHalted, 60*time.Second)

	// The manager's series of this test's namespace (the API server is
	// shared with the other tests) and those of no rollout.
	var series []string
	g.Eventually(func() []string {
		series = scrapeSeries(t, "http://"+metricsAddr+"/metrics", w.ns)
		return series
	}, 10*time.Second, 200*time.Millisecond).Should(ContainElement(
		fmt.Sprintf(`stationfleet_rollout_phase{name="r",namespace="%s",phase="Halted"} 1x20`, w.ns)))

	rules := map[string]string{}
	b, err := os.ReadFile(filepath.Join(moduleRoot, "config/prometheus/stationfleet.rules.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var f struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string } `json:"rules"`
		} `json:"groups"`
	}
	g.Expect(yaml.Unmarshal(b, &f)).To(Succeed())
	for _, grp := range f.Groups {
		for _, rule := range grp.Rules {
			rules[rule.Alert] = rule.Expr
		}
	}
	g.Expect(rules).To(HaveKey("FirmwareRolloutHalted"))
	g.Expect(rules).To(HaveKey("FirmwareRolloutNoProgress"))

	type sample struct {
		Labels string  `json:"labels"`
		Value  float64 `json:"value"`
	}
	type exprTest struct {
		Expr       string   `json:"expr"`
		EvalTime   string   `json:"eval_time"`
		ExpSamples []sample `json:"exp_samples"`
	}
	type inputSeries struct {
		Series string `json:"series"`
		Values string `json:"values"`
	}
	noProgress := rules["FirmwareRolloutNoProgress"]
	g.Expect(noProgress).To(ContainSubstring(`phase=~"Pending|Progressing|Aborting"`))
	last := valueOf(g, series, "stationfleet_rollout_last_progress_timestamp_seconds{")
	deadline := valueOf(g, series, "stationfleet_rollout_progress_deadline_seconds{")
	strategy := w.get("r").Spec.Strategy
	want := strategy.ProgressDeadline.Duration
	if strategy.BakeTime != nil {
		want += strategy.BakeTime.Duration
	}
	g.Expect(deadline).To(Equal(want.Seconds()), "progressDeadline plus bakeTime")
	now := strconv.FormatFloat(last+deadline+3600, 'f', -1, 64)
	var inputs []inputSeries
	for _, s := range series {
		name, values, _ := strings.Cut(s, " ")
		inputs = append(inputs, inputSeries{Series: name, Values: values})
	}
	test := map[string]any{
		"tests": []map[string]any{{
			"interval":     "1m",
			"input_series": inputs,
			"promql_expr_test": []exprTest{
				{Expr: rules["FirmwareRolloutHalted"], EvalTime: "5m",
					ExpSamples: []sample{{Labels: fmt.Sprintf(`{name="r", namespace="%s"}`, w.ns), Value: 1}}},
				// An hour past its deadline, a halted rollout does not also
				// alert as making no progress (the halted alert covers it)...
				{Expr: strings.ReplaceAll(noProgress, "time()", now), EvalTime: "5m"},
				// ...though the expression joins the manager's three series
				// on the rollout's namespace and name: with Halted among the
				// phases it names, it returns the rollout, an hour late.
				{Expr: strings.ReplaceAll(strings.ReplaceAll(noProgress, "time()", now), `phase=~"Pending|Progressing|Aborting"`, `phase=~"Halted"`), EvalTime: "5m",
					ExpSamples: []sample{{Labels: fmt.Sprintf(`{name="r", namespace="%s"}`, w.ns), Value: deadline + 3600}}},
			},
		}},
	}
	out, err := yaml.Marshal(test)
	g.Expect(err).NotTo(HaveOccurred())
	file := filepath.Join(t.TempDir(), "manager_test.yaml")
	g.Expect(os.WriteFile(file, out, 0o600)).To(Succeed())
	res, err := exec.Command(promtool, "test", "rules", file).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "promtool test rules:\n%s\n%s", res, out)
}

// scrapeSeries reads a plain-HTTP /metrics and returns each stationfleet_
// series of namespace ns, or of no namespace, in promtool's input notation
// ("name{labels} VALUEx20": the value held for 20 intervals).
func scrapeSeries(t *testing.T, url, ns string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "stationfleet_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name, value := line[:i], line[i+1:]
		if strings.Contains(name, `namespace="`) && !strings.Contains(name, `namespace="`+ns+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out = append(out, name+" "+strconv.FormatFloat(v, 'f', -1, 64)+"x20")
	}
	return out
}

// valueOf returns the value of the series that starts with prefix.
func valueOf(g Gomega, series []string, prefix string) float64 {
	for _, s := range series {
		if strings.HasPrefix(s, prefix) {
			_, v, _ := strings.Cut(s, " ")
			f, err := strconv.ParseFloat(strings.TrimSuffix(v, "x20"), 64)
			g.Expect(err).NotTo(HaveOccurred())
			return f
		}
	}
	g.Expect(series).To(ContainElement(HavePrefix(prefix)))
	return 0
}
