package cli

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

var testEnv *kubetest.Env

// update rewrites the golden files: go test ./internal/cli -update
var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestMain(m *testing.M) {
	// A fuzz worker runs only the fuzz target, which needs no API server:
	// starting one per worker would cost seconds and hundreds of MiB each.
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(kubetest.Main(m, &testEnv))
}

// testNow is the clock of every golden test.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// result is what one CLI run produced.
type result struct {
	out, errOut string
	code        int
}

// runCLI runs the CLI in-process with args, the fixed clock and no TTY.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	return runCLIWith(t, context.Background(), Options{}, args...)
}

func runCLIWith(t *testing.T, ctx context.Context, opts Options, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	opts.Streams = genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut}
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	if opts.IsTerminal == nil {
		opts.IsTerminal = func(io.Writer) bool { return false }
	}
	code := Execute(ctx, opts, args)
	return result{out: out.String(), errOut: errOut.String(), code: code}
}

// kubeconfig writes a kubeconfig for an administrator of the test API
// server and returns its path, so tests pass --kubeconfig as a user would.
func kubeconfig(t *testing.T) string {
	t.Helper()
	user, err := testEnv.Environment.AddUser(envtest.User{Name: "cli-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("add envtest user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	g := NewWithT(t)
	p := filepath.Join("testdata", name)
	if *update {
		g.Expect(os.MkdirAll("testdata", 0o755)).To(Succeed())
		g.Expect(os.WriteFile(p, []byte(got), 0o644)).To(Succeed())
		return
	}
	want, err := os.ReadFile(p)
	g.Expect(err).NotTo(HaveOccurred(), "golden file missing: run go test ./internal/cli -update")
	g.Expect(got).To(Equal(string(want)), "output differs from %s (rerun with -update after checking the change)", p)
}
