package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	// The controller's metrics register when the package loads, as in the
	// manager.
	_ "github.com/stationfleet/stationfleet/controllers"
	"github.com/stationfleet/stationfleet/internal/cups"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/rolloutmetrics"
)

const (
	rulesFile     = "config/prometheus/stationfleet.rules.yaml"
	rulesTestFile = "config/prometheus/stationfleet.rules_test.yaml"
	dashboardFile = "config/grafana/stationfleet.json"
)

// promtool returns Prometheus's promtool: $PROMTOOL, or the one on PATH
// (Debian's prometheus package installs /usr/bin/promtool).
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (apt-get install prometheus) or set PROMTOOL")
	}
	return p
}

// TestAlertRulesPromtool checks the alert rules with the real promtool
// (`promtool check rules`) and runs their unit tests (`promtool test
// rules`, stationfleet.rules_test.yaml: each alert fires on the situation
// it names, with its labels and text, and not on its near misses).
func TestAlertRulesPromtool(t *testing.T) {
	root := moduleRoot(t)
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", rulesTestFile},
	} {
		cmd := exec.Command(promtool(t), args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %s", strings.Join(args, " "), out)
		}
	}
}

// TestChartPrometheusRuleIsTheRulesFile: the chart's PrometheusRule
// carries exactly the rules promtool checked, Go templates in annotations
// ({{ $labels.name }}) included, untouched by Helm.
func TestChartPrometheusRuleIsTheRulesFile(t *testing.T) {
	g := NewWithT(t)
	var rules map[string]any
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), rulesFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(yaml.Unmarshal(b, &rules)).To(Succeed())
	var found bool
	for _, u := range helmTemplate(t, "--set", "metrics.prometheusRule.enabled=true") {
		if u.GetKind() == "PrometheusRule" {
			found = true
			g.Expect(u.Object["spec"]).To(Equal(rules))
		}
	}
	g.Expect(found).To(BeTrue(), "no PrometheusRule rendered")
}

// exportedMetrics is what the manager's registry (controller-runtime's
// metrics.Registry) holds once the manager's parts registered their
// collectors: the controller's (at package load), the CUPS server's, the
// IoT Hub client's and the rollout metrics (as cmd/manager does), with one
// rollout on the test API server so that its series exist.
type exportedMetrics struct {
	families map[string]*dto.MetricFamily
}

func gatherExported(t *testing.T) exportedMetrics {
	t.Helper()
	g := NewWithT(t)
	hub, err := iothub.New("HostName=metrics-test.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=c2VjcmV0LW5ldmVyLXVzZWQ=")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = hub.Close() })
	_, err = cups.NewServer(cups.Options{Insecure: true}, hub, nil)
	g.Expect(err).NotTo(HaveOccurred())
	collector := rolloutmetrics.New(testEnv.Client)
	if err := ctrlmetrics.Registry.Register(collector); err != nil {
		var are prometheus.AlreadyRegisteredError
		g.Expect(errors.As(err, &are)).To(BeTrue(), "register the rollout metrics: %v", err)
	}
	sample, err := os.ReadFile(filepath.Join(moduleRoot(t), "config/samples/firmware_v1alpha1_firmwarerollout.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	r := &fwv1.FirmwareRollout{}
	g.Expect(yaml.Unmarshal(sample, r)).To(Succeed())
	r.Namespace = testEnv.Namespace(t)
	g.Expect(testEnv.Client.Create(context.Background(), r)).To(Succeed())
	mfs, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	e := exportedMetrics{families: map[string]*dto.MetricFamily{}}
	for _, mf := range mfs {
		e.families[mf.GetName()] = mf
	}
	g.Expect(e.families).To(HaveKey(rolloutmetrics.PhaseMetric), "the rollout metrics gathered nothing")
	return e
}

// registered says whether the registry holds a metric family of that
// name, with series or not: registering a probe of the same name fails
// when one exists (its help text differs), and succeeds, and is undone,
// when none does. A vector with no series yet (the IoT Hub counters before
// a request) is not gathered, but is exported from its first series on.
func registered(name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "stationfleet metric-name probe"})
	if err := ctrlmetrics.Registry.Register(probe); err != nil {
		return strings.Contains(err.Error(), "previously registered descriptor with the same fully-qualified name")
	}
	ctrlmetrics.Registry.Unregister(probe)
	return false
}

// check returns what is wrong with one use of metric name with matchers
// (label name to the values an equality or simple alternation names).
func (e exportedMetrics) check(name string, matchers map[string][]string) string {
	family, base := name, ""
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suffix); ok && !registered(name) && registered(b) {
			family, base = b, suffix
		}
	}
	if !registered(family) {
		return "not exported"
	}
	mf := e.families[family]
	if mf == nil {
		return "" // exported, no series yet: nothing more to compare
	}
	if base != "" && mf.GetType() != dto.MetricType_HISTOGRAM && mf.GetType() != dto.MetricType_SUMMARY {
		return "is a " + mf.GetType().String() + ", not a histogram"
	}
	seen := map[string]map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if seen[l.GetName()] == nil {
				seen[l.GetName()] = map[string]bool{}
			}
			seen[l.GetName()][l.GetValue()] = true
		}
	}
	if base == "_bucket" {
		seen["le"] = map[string]bool{}
	}
	for label, values := range matchers {
		if seen[label] == nil {
			return "has no label " + label
		}
		for _, v := range values {
			if len(seen[label]) > 0 && !seen[label][v] {
				return "label " + label + " never has the value " + v
			}
		}
	}
	return ""
}

var (
	metricRe   = regexp.MustCompile(`\bstationfleet_[a-zA-Z0-9_]+(\s*\{[^}]*\})?`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	literalAlt = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)
)

// uses returns every stationfleet_ metric an expression names, with the
// label values its = and =~ matchers name (those that are literal values
// or alternations of them; dashboard variables like $namespace are not).
func uses(expr string) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for _, m := range metricRe.FindAllString(expr, -1) {
		name, sel, _ := strings.Cut(m, "{")
		name = strings.TrimSpace(name)
		if out[name] == nil {
			out[name] = map[string][]string{}
		}
		for _, mm := range matcherRe.FindAllStringSubmatch(sel, -1) {
			label, op, value := mm[1], mm[2], mm[3]
			if _, ok := out[name][label]; !ok {
				out[name][label] = nil
			}
			if (op == "=" || op == "=~") && literalAlt.MatchString(value) {
				out[name][label] = append(out[name][label], strings.Split(value, "|")...)
			}
		}
	}
	return out
}

// dashboardExprs returns every query of the Grafana dashboard: its panels'
// targets and its template variables.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	exprs := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			exprs["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		exprs["variable "+v.Name] = v.Definition
	}
	return exprs
}

// ruleExprs returns every rule's expression by alert name.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `json:"alert"`
				Record string `json:"record"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	exprs := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	return exprs
}

// TestDashboardAndRulesUseExportedMetrics: every stationfleet_ metric a
// Grafana panel, a dashboard variable or an alert rule names is one the
// manager exports (histograms with their _bucket, _sum and _count series),
// every label a selector names is one of its labels, and every literal
// value it matches is one the manager writes (where the registry holds
// series: the CUPS outcomes, the rollout phases). A renamed metric or
// value fails here instead of leaving an empty panel or a silent alert.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	exported := gatherExported(t)
	exprs := dashboardExprs(t)
	for k, v := range ruleExprs(t) {
		exprs[k] = v
	}
	var problems []string
	used := map[string]bool{}
	for where, expr := range exprs {
		for name, matchers := range uses(expr) {
			used[name] = true
			if p := exported.check(name, matchers); p != "" {
				problems = append(problems, where+": "+name+" "+p)
			}
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Errorf("the dashboard or the rules name what the manager does not export:\n%s", strings.Join(problems, "\n"))
	}
	// The panels and alerts are there.
	for _, name := range []string{rolloutmetrics.PhaseMetric, "stationfleet_rollout_stations", "stationfleet_cups_requests_total",
		"stationfleet_cups_request_duration_seconds_bucket", "stationfleet_iothub_throttled_total", "stationfleet_cups_bytes_streamed_total",
		rolloutmetrics.LastProgressMetric, rolloutmetrics.DeadlineMetric} {
		if !used[name] {
			t.Errorf("nothing uses %s", name)
		}
	}
}

// TestMetricNameCheckCatchesMistakes: the comparison above fails on an
// unknown metric, a counter used as a histogram, an unknown label and an
// outcome the CUPS server never writes.
func TestMetricNameCheckCatchesMistakes(t *testing.T) {
	exported := gatherExported(t)
	for expr, want := range map[string]string{
		`rate(stationfleet_cups_request_total[5m])`:                                              "not exported",
		`rate(stationfleet_cups_requests_total_bucket[5m])`:                                      "not a histogram",
		`stationfleet_rollout_phase{stage="Halted"}`:                                             "has no label stage",
		`rate(stationfleet_cups_requests_total{outcome="serverError"}[5m])`:                      "never has the value serverError",
		`stationfleet_rollout_phase{phase=~"Halted|Stopped"}`:                                    "never has the value Stopped",
		`histogram_quantile(0.9, rate(stationfleet_iothub_request_duration_seconds_bucket[5m]))`: "",
	} {
		var got []string
		for name, matchers := range uses(expr) {
			if p := exported.check(name, matchers); p != "" {
				got = append(got, p)
			}
		}
		if want == "" {
			if len(got) > 0 {
				t.Errorf("%s: %v, want no problem", expr, got)
			}
			continue
		}
		if len(got) != 1 || !strings.Contains(got[0], want) {
			t.Errorf("%s: %v, want %q", expr, got, want)
		}
	}
}

// TestDashboardLayout: the Grafana dashboard imports as a whole: unique
// panel ids, panels inside the 24-column grid that never overlap, every
// query on the dashboard's data source variable (so it works with any
// Prometheus data source name), and a query in every panel.
func TestDashboardLayout(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), dashboardFile))
	g.Expect(err).NotTo(HaveOccurred())
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	g.Expect(json.Unmarshal(b, &d)).To(Succeed())
	g.Expect(d.UID).To(Equal("stationfleet"))
	ids := map[int]bool{}
	cells := map[[2]int]string{}
	for _, p := range d.Panels {
		g.Expect(ids).NotTo(HaveKey(p.ID), "panel id %d twice", p.ID)
		ids[p.ID] = true
		gp := p.GridPos
		g.Expect(gp.W).To(BeNumerically(">", 0), p.Title)
		g.Expect(gp.H).To(BeNumerically(">", 0), p.Title)
		g.Expect(gp.X+gp.W).To(BeNumerically("<=", 24), "%s leaves the grid", p.Title)
		for x := gp.X; x < gp.X+gp.W; x++ {
			for y := gp.Y; y < gp.Y+gp.H; y++ {
				g.Expect(cells).NotTo(HaveKey([2]int{x, y}), "%s overlaps %s", p.Title, cells[[2]int{x, y}])
				cells[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		g.Expect(p.Datasource.UID).To(Equal("${datasource}"), p.Title)
		g.Expect(p.Targets).NotTo(BeEmpty(), p.Title)
		for _, tg := range p.Targets {
			g.Expect(tg.Expr).To(ContainSubstring("stationfleet_"), p.Title)
			g.Expect(tg.Datasource.UID).To(Equal("${datasource}"), p.Title)
		}
	}
}
