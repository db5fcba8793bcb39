// Package imports checks the direction of the module's imports with
// `go list -deps`: the shipped binaries do not link Go's testing package,
// and adapters do not depend on the controller that consumes them
// (docs/interfaces.md). A failure names the import chain that broke the
// rule.
package imports

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/stationfleet/stationfleet"

// rule forbids the packages in from depending, directly or not, on the
// package forbidden.
type rule struct {
	name      string
	from      []string
	forbidden string
	why       string
}

var rules = []rule{{
	name:      "binaries do not link testing",
	from:      []string{"cmd/manager", "cmd/stationfleet", "cmd/demo", "cmd/stationfleet-bench", "cmd/iothub-emulator"},
	forbidden: "testing",
	why:       "test helpers belong in _test.go files and internal/testutil; a program that needs a control plane uses internal/controlplane",
}, {
	name: "adapters, the CLI and the shared rules do not import the controller",
	from: []string{"internal/iothub", "internal/iothub/hubsim", "internal/cups", "internal/twin", "internal/stationsim", "internal/controlplane",
		"internal/firmware", "internal/firmware/azblob", "internal/firmware/local", "internal/firmware/stores",
		"internal/cli", "cmd/stationfleet", "internal/rules", "internal/dashboard", "internal/analysis", "internal/admission", "internal/promserver"},
	forbidden: module + "/controllers",
	why:       "interfaces are declared by their consumer and asserted where the adapters are wired (internal/app); the rules the controller, CUPS and the CLI share are in internal/rules",
}, {
	name:      "the shared rules do not import internal/iothub",
	from:      []string{"internal/rules"},
	forbidden: module + "/internal/iothub",
	why:       "internal/rules imports the API types and internal/twin only: no adapter",
}, {
	name:      "the shared rules do not import internal/cups",
	from:      []string{"internal/rules"},
	forbidden: module + "/internal/cups",
	why:       "internal/rules imports the API types and internal/twin only: no adapter",
}, {
	name:      "the shared rules do not import internal/firmware",
	from:      []string{"internal/rules"},
	forbidden: module + "/internal/firmware",
	why:       "internal/rules imports the API types and internal/twin only: no adapter",
}, {
	name:      "the shared rules do not import internal/cli",
	from:      []string{"internal/rules"},
	forbidden: module + "/internal/cli",
	why:       "internal/rules imports the API types and internal/twin only: no adapter",
}, {
	name:      "the dashboard server does not import the CLI",
	from:      []string{"internal/dashboard"},
	forbidden: module + "/internal/cli",
	why:       "internal/dashboard declares Controller and StationSource; internal/cli implements them and wires the command",
}, {
	name:      "the dashboard server does not import IoT Hub",
	from:      []string{"internal/dashboard"},
	forbidden: module + "/internal/iothub",
	why:       "the dashboard reads stations through its StationSource, which internal/cli implements over the registry",
}}

func TestImportDirection(t *testing.T) {
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			var roots []string
			for _, p := range r.from {
				roots = append(roots, module+"/"+p)
			}
			graph := importGraph(t, roots)
			for _, root := range roots {
				if chain := findChain(graph, root, r.forbidden); chain != nil {
					t.Errorf("%s depends on %s: %s\n(%s)", root, r.forbidden, strings.Join(chain, " -> "), r.why)
				}
			}
		})
	}
}

// TestFindChain checks the chain search on a small graph, so that the rules
// above cannot pass because the search never finds anything.
func TestFindChain(t *testing.T) {
	g := map[string][]string{
		"a": {"b", "c"},
		"b": {"d"},
		"c": {"d", "testing"},
		"d": nil,
	}
	if got, want := findChain(g, "a", "testing"), []string{"a", "c", "testing"}; !slices.Equal(got, want) {
		t.Errorf("findChain(a, testing) = %v, want %v", got, want)
	}
	if got := findChain(g, "b", "testing"); got != nil {
		t.Errorf("findChain(b, testing) = %v, want none", got)
	}
}

// importGraph returns, for every package the roots depend on (the roots
// included), the packages it imports, as `go list -deps` reports them for
// the default build (no test files).
func importGraph(t *testing.T, roots []string) map[string][]string {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}"}, roots...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	g := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	for _, r := range roots {
		if _, ok := g[r]; !ok {
			t.Fatalf("go list did not report %s: does the package still exist?", r)
		}
	}
	return g
}

// findChain returns the shortest import chain from root to target in g,
// both ends included, or nil when root does not depend on target.
func findChain(g map[string][]string, root, target string) []string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == target {
			var chain []string
			for ; p != ""; p = parent[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, q := range g[p] {
			if _, seen := parent[q]; !seen {
				parent[q] = p
				queue = append(queue, q)
			}
		}
	}
	return nil
}
