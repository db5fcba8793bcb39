package analysis

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/prometheus/common/model"
)

// Names of the variables a success condition sees.
const (
	varResult  = "result"
	varResults = "results"
)

// costLimit bounds the work of one evaluation (CEL's own cost units):
// enough for a check over every sample of a 10,000-station vector, not for
// a runaway comprehension.
const costLimit = 10_000_000

// Condition is a compiled success condition.
type Condition struct {
	prg cel.Program
}

var env = mustEnv()

func mustEnv() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable(varResult, cel.DynType),
		cel.Variable(varResults, cel.ListType(cel.MapType(cel.StringType, cel.DynType))),
	)
	if err != nil {
		panic(fmt.Sprintf("analysis: CEL environment: %v", err))
	}
	return e
}

// CompileCondition compiles a success condition. It must be a CEL
// expression of type bool (or dyn, checked at evaluation) over result and
// results; the error is the compiler's message.
func CompileCondition(expr string) (*Condition, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("successCondition does not compile: %w", iss.Err())
	}
	if t := ast.OutputType(); t != cel.BoolType && t != cel.DynType {
		return nil, fmt.Errorf("successCondition must be a bool expression, not %s", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit))
	if err != nil {
		return nil, fmt.Errorf("successCondition: %w", err)
	}
	return &Condition{prg: prg}, nil
}

// Eval evaluates the condition over a query result.
func (c *Condition) Eval(v model.Value) (bool, error) {
	result, results, err := celValues(v)
	if err != nil {
		return false, err
	}
	out, _, err := c.prg.Eval(map[string]any{varResult: result, varResults: results})
	if err != nil {
		return false, fmt.Errorf("evaluate successCondition: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("successCondition gave %v (%s), not a bool", out.Value(), out.Type().TypeName())
	}
	return b, nil
}

// ErrNoData is the error of a query whose result has no sample.
var ErrNoData = errors.New("the query returned no data")

// celValues turns a query result into result and results.
func celValues(v model.Value) (any, []map[string]any, error) {
	switch v := v.(type) {
	case *model.Scalar:
		f := float64(v.Value)
		return f, []map[string]any{{"metric": map[string]string{}, "value": f}}, nil
	case model.Vector:
		if len(v) == 0 {
			return nil, nil, ErrNoData
		}
		list := make([]map[string]any, len(v))
		for i, s := range v {
			m := make(map[string]string, len(s.Metric))
			for k, lv := range s.Metric {
				m[string(k)] = string(lv)
			}
			list[i] = map[string]any{"metric": m, "value": float64(s.Value)}
		}
		if len(list) == 1 {
			return list[0]["value"], list, nil
		}
		return list, list, nil
	case nil:
		return nil, nil, ErrNoData
	default:
		return nil, nil, fmt.Errorf("the query returned a %s: it must return a scalar or an instant vector", v.Type())
	}
}

// maxValueLen bounds the text of a result kept in status.
const maxValueLen = 256

// FormatValue is the text of a result for status: a number for a scalar or
// a one-sample vector, else the samples' values in label order, truncated.
func FormatValue(v model.Value) string {
	switch v := v.(type) {
	case *model.Scalar:
		return formatFloat(float64(v.Value))
	case model.Vector:
		if len(v) == 1 {
			return formatFloat(float64(v[0].Value))
		}
		s := append(model.Vector(nil), v...)
		sort.Slice(s, func(i, j int) bool { return s[i].Metric.String() < s[j].Metric.String() })
		parts := make([]string, len(s))
		for i, x := range s {
			parts[i] = formatFloat(float64(x.Value))
		}
		return truncate(fmt.Sprintf("%d samples: [%s]", len(s), strings.Join(parts, ", ")), maxValueLen)
	case nil:
		return ""
	default:
		return truncate(v.String(), maxValueLen)
	}
}

func formatFloat(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', 6, 64)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
