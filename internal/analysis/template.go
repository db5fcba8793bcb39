package analysis

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// Vars are what a query template can name (see api/v1alpha1.AnalysisStep).
type Vars struct {
	// Stations are the device ids of the stations the rollout wrote so far.
	Stations []string
	// Batch is the number of the last batch written; Step the analysis
	// step's 1-based index.
	Batch, Step int
	// Rollout, Namespace and Package are the rollout's name, namespace and
	// firmware package.
	Rollout, Namespace, Package string
	// Labels are the rollout's labels.
	Labels map[string]string
}

// noStations is what {{stations}} expands to when no station was written:
// a regular expression that matches no device id (they are hex digits).
const noStations = "^$"

// funcs are the template's functions; sample values serve ParseQuery.
func funcs(v Vars) template.FuncMap {
	return template.FuncMap{
		"stations":  func() string { return stationsRegex(v.Stations) },
		"batch":     func() string { return strconv.Itoa(v.Batch) },
		"step":      func() string { return strconv.Itoa(v.Step) },
		"rollout":   func() string { return v.Rollout },
		"namespace": func() string { return v.Namespace },
		"package":   func() string { return v.Package },
		"label": func(k string) (string, error) {
			val, ok := v.Labels[k]
			if !ok {
				return "", fmt.Errorf("the rollout has no label %q", k)
			}
			return val, nil
		},
	}
}

// ParseQuery checks that q is a template over the analysis variables:
// {{stations}}, {{batch}}, {{step}}, {{rollout}}, {{namespace}},
// {{package}} and {{label "key"}}.
func ParseQuery(q string) error {
	_, err := parse(q, Vars{})
	return err
}

func parse(q string, v Vars) (*template.Template, error) {
	t, err := template.New("query").Option("missingkey=error").Funcs(funcs(v)).Parse(q)
	if err != nil {
		return nil, fmt.Errorf("query template: %w", err)
	}
	return t, nil
}

// RenderQuery expands the template q with v.
func RenderQuery(q string, v Vars) (string, error) {
	t, err := parse(q, v)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("query template: %w", err)
	}
	return b.String(), nil
}

// stationsRegex is an RE2 alternation of the device ids, each quoted, for
// a PromQL =~ matcher (which anchors it).
func stationsRegex(ids []string) string {
	if len(ids) == 0 {
		return noStations
	}
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = regexp.QuoteMeta(id)
	}
	return strings.Join(q, "|")
}
