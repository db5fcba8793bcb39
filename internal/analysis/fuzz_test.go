package analysis_test

import (
	"testing"

	"github.com/prometheus/common/model"

	"github.com/stationfleet/stationfleet/internal/analysis"
)

// FuzzCondition: any user string compiles or is refused, and a compiled
// condition evaluates or errs over a result: never a panic.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"result >= 0.95", "results.all(r, r.value > 0)", "result >=", "size(results) > 1 && result[0].value > 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := analysis.CompileCondition(expr)
		if err != nil {
			return
		}
		_, _ = c.Eval(&model.Scalar{Value: 1})
		_, _ = c.Eval(model.Vector{{Metric: model.Metric{"eui": "A"}, Value: 1}, {Metric: model.Metric{}, Value: 2}})
	})
}

// FuzzRenderQuery: any user template parses or is refused, and renders or
// errs: never a panic.
func FuzzRenderQuery(f *testing.F) {
	for _, s := range []string{`up{eui=~"{{stations}}"}`, `{{label "region"}}`, `{{stations`, `{{range .}}{{end}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if analysis.ParseQuery(q) != nil {
			return
		}
		_, _ = analysis.RenderQuery(q, analysis.Vars{Stations: []string{"0011223344556677"}, Labels: map[string]string{"region": "x"}})
	})
}
