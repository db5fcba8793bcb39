package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// Harness is what the tests of a package that runs the manager binary as a
// child process share (test/e2e, test/soak).
type Harness struct {
	// Env is the API server with the CRDs installed.
	Env *Env
	// ModuleRoot is the stationfleet module's directory.
	ModuleRoot string
	// Kubeconfig is a kubeconfig file for an administrator (system:masters)
	// of Env, as the manager and kubectl read it.
	Kubeconfig string
	// ManagerBin is the manager binary built from ./cmd/manager.
	ManagerBin string
}

// ManagerMain is a TestMain body for such a package: it builds the manager
// (first: a compile error should not wait for the API server), starts the
// environment, writes a kubeconfig for an administrator named name, hands
// all that to setup, runs the tests, stops the environment and removes its
// files. It returns the exit code; what fails is printed to stderr after
// name.
//
// The test process's own clients log nowhere; the manager logs to its file.
func ManagerMain(m *testing.M, name string, setup func(Harness)) int {
	ctrl.SetLogger(logr.Discard())
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	var h Harness
	root, err := ModuleRoot()
	if err != nil {
		return fail(err)
	}
	h.ModuleRoot = root
	tmp, err := os.MkdirTemp("", "stationfleet-"+name+"-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	if h.ManagerBin, err = proc.BuildManager(root, tmp); err != nil {
		return fail(err)
	}
	if h.Env, err = Start(); err != nil {
		return fail(err)
	}
	defer func() {
		if err := h.Env.Stop(); err != nil {
			fail(fmt.Errorf("stop envtest: %w", err))
		}
	}()
	h.Kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := WriteKubeconfig(h.Env.Environment, name, h.Kubeconfig); err != nil {
		return fail(err)
	}
	setup(h)
	return m.Run()
}
