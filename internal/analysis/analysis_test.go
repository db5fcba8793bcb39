package analysis_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/common/model"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/analysis"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/testutil/promtest"
)

func sample(eui string, v float64) *model.Sample {
	return &model.Sample{Metric: model.Metric{"eui": model.LabelValue(eui)}, Value: model.SampleValue(v)}
}

// TestCondition evaluates conditions over the shapes a query returns.
func TestCondition(t *testing.T) {
	two := model.Vector{sample("A", 0.99), sample("B", 0.5)}
	cases := []struct {
		name, cond string
		value      model.Value
		want       bool
		err        string
	}{
		{"scalar", "result >= 0.95", &model.Scalar{Value: 0.97}, true, ""},
		{"one sample is a number", "result >= 0.95", model.Vector{sample("A", 0.9)}, false, ""},
		{"every sample", "results.all(r, r.value >= 0.95)", two, false, ""},
		{"some sample by label", "results.exists(r, r.metric.eui == 'A' && r.value > 0.95)", two, true, ""},
		{"list result", "size(result) == 2", two, true, ""},
		{"no data", "result >= 0.95", model.Vector{}, false, "the query returned no data"},
		{"number compared with a list", "result >= 0.95", two, false, "evaluate successCondition"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c, err := analysis.CompileCondition(tc.cond)
			g.Expect(err).NotTo(HaveOccurred())
			got, err := c.Eval(tc.value)
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

// TestCompileConditionRefuses returns the compiler's message.
func TestCompileConditionRefuses(t *testing.T) {
	g := NewWithT(t)
	_, err := analysis.CompileCondition("result >=")
	g.Expect(err).To(MatchError(ContainSubstring("Syntax error")))
	_, err = analysis.CompileCondition("'a' + 'b'")
	g.Expect(err).To(MatchError(ContainSubstring("must be a bool expression, not string")))
}

// TestRenderQuery expands the template variables.
func TestRenderQuery(t *testing.T) {
	g := NewWithT(t)
	v := analysis.Vars{Stations: []string{"0011223344556677", "00112233445566AA"}, Batch: 2, Step: 3,
		Rollout: "fw", Namespace: "ns", Package: "2.0.7", Labels: map[string]string{"region": "eu-west"}}
	q, err := analysis.RenderQuery(`up{eui=~"{{stations}}",region="{{label "region"}}"} # {{batch}} {{step}} {{rollout}} {{namespace}} {{package}}`, v)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(q).To(Equal(`up{eui=~"0011223344556677|00112233445566AA",region="eu-west"} # 2 3 fw ns 2.0.7`))
	q, err = analysis.RenderQuery(`up{eui=~"{{stations}}"}`, analysis.Vars{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(q).To(Equal(`up{eui=~"^$"}`), "no station written matches none")
	_, err = analysis.RenderQuery(`{{label "ring"}}`, v)
	g.Expect(err).To(MatchError(ContainSubstring(`the rollout has no label "ring"`)))
}

// TestCredentials: the bearer token, or basic auth, and the CA reach a
// Prometheus over https; a failed measurement's message never holds them.
func TestCredentials(t *testing.T) {
	var gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		if !strings.HasSuffix(r.URL.Path, "/api/v1/query") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.97"]}}`))
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c := analysis.New()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		creds analysis.Credentials
		want  string
	}{
		{"bearer", analysis.Credentials{BearerToken: "s3cret-token", CA: ca}, "Bearer s3cret-token"},
		{"basic", analysis.Credentials{Username: "reader", Password: "pw", CA: ca}, "Basic cmVhZGVyOnB3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			out := c.Measure(ctx, analysis.Request{Address: srv.URL, Credentials: tc.creds, Query: "x", Condition: "result > 0.9", Time: time.Now()})
			g.Expect(out.Phase).To(Equal(fwv1.MeasurementSuccessful), out.Message)
			g.Expect(out.Value).To(Equal("0.97"))
			g.Expect(gotAuth).To(Equal(tc.want))
		})
	}
	t.Run("unknown CA", func(t *testing.T) {
		g := NewWithT(t)
		out := c.Measure(ctx, analysis.Request{Address: srv.URL, Credentials: analysis.Credentials{BearerToken: "s3cret-token"}, Query: "x", Condition: "true"})
		g.Expect(out.Phase).To(Equal(fwv1.MeasurementError))
		g.Expect(out.Message).To(ContainSubstring("certificate"))
		g.Expect(out.Message).NotTo(ContainSubstring("s3cret"))
	})
}

// TestMeasureAgainstPrometheus runs measurements against a real Prometheus
// scraping the station simulator's network metrics: the forwarding ratio is
// 1 before any degradation and 0.3 after; a bad query and an unreachable
// server are errors with Prometheus's or the network's message.
func TestMeasureAgainstPrometheus(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := stationsim.New(stationsim.State{EUI: 0x0011223344556677, Package: "2.0.6"})
	m := stationsim.NewNetworkMetrics([]*stationsim.Station{st}, 10)
	addr, err := m.Serve(ctx, "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	prom := promtest.Start(t, addr)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	g.Expect(prom.WaitScraped(wctx, 1)).To(Succeed())

	q, err := analysis.RenderQuery(`sum(rate(stationsim_uplinks_forwarded_total{eui=~"{{stations}}"}[3s])) / sum(rate(stationsim_uplinks_received_total{eui=~"{{stations}}"}[3s]))`,
		analysis.Vars{Stations: []string{"0011223344556677"}})
	g.Expect(err).NotTo(HaveOccurred())
	c := analysis.New()
	measure := func(cond string) analysis.Outcome {
		return c.Measure(ctx, analysis.Request{Address: prom.URL, Query: q, Condition: cond, Time: time.Now()})
	}
	g.Eventually(func() analysis.Outcome { return measure("result >= 0.95") }, 20*time.Second, 500*time.Millisecond).
		Should(HaveField("Phase", fwv1.MeasurementSuccessful))
	g.Expect(measure("result >= 0.95").Value).To(Equal("1"))

	m.Degrade("2.0.6", 0.3)
	g.Eventually(func() analysis.Outcome { return measure("result >= 0.95") }, 20*time.Second, 500*time.Millisecond).
		Should(And(HaveField("Phase", fwv1.MeasurementFailed), HaveField("Value", HavePrefix("0.3"))))

	bad := c.Measure(ctx, analysis.Request{Address: prom.URL, Query: "sum(rate(x[5m]", Condition: "true", Time: time.Now()})
	g.Expect(bad.Phase).To(Equal(fwv1.MeasurementError))
	g.Expect(bad.Message).To(ContainSubstring("bad_data"))

	none := c.Measure(ctx, analysis.Request{Address: prom.URL, Query: `stationsim_uplinks_received_total{eui="0000000000000000"}`, Condition: "result > 0", Time: time.Now()})
	g.Expect(none.Phase).To(Equal(fwv1.MeasurementError))
	g.Expect(none.Message).To(ContainSubstring("no data"))

	down := c.Measure(ctx, analysis.Request{Address: "http://127.0.0.1:1", Query: "up", Condition: "true", Timeout: 2 * time.Second})
	g.Expect(down.Phase).To(Equal(fwv1.MeasurementError))
	g.Expect(down.Message).To(ContainSubstring("connection refused"))
}
