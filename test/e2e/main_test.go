package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

// Shared by every test of the package; set up once by TestMain.
var (
	// testEnv is the API server (envtest) with the CRDs installed.
	testEnv *kubetest.Env
	// moduleRoot is the stationfleet module's directory.
	moduleRoot string
	// kubeconfigPath is a kubeconfig file for an administrator of testEnv,
	// as the manager and kubectl read it.
	kubeconfigPath string
	// managerBin is the manager binary built from ./cmd/manager.
	managerBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run starts the API server, writes its kubeconfig, builds the manager,
// runs the tests and stops the API server; it returns the exit code.
func run(m *testing.M) int {
	ctrl.SetLogger(logr.Discard()) // the test process's own clients; the manager logs to its file
	root, err := kubetest.ModuleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	moduleRoot = root
	tmp, err := os.MkdirTemp("", "stationfleet-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	// Build first: a compile error should not wait for the API server.
	managerBin = filepath.Join(tmp, "manager")
	build := exec.Command("go", "build", "-o", managerBin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/manager: %v\n%s", err, out)
		return 1
	}

	env, err := kubetest.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	testEnv = env
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stop envtest: %v\n", err)
		}
	}()
	kubeconfigPath = filepath.Join(tmp, "kubeconfig")
	if err := writeKubeconfig(env, kubeconfigPath); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// writeKubeconfig creates a user in system:masters on env's API server and
// writes a kubeconfig for it to path.
func writeKubeconfig(env *kubetest.Env, path string) error {
	user, err := env.Environment.AddUser(envtest.User{Name: "e2e", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add envtest user: %w", err)
	}
	b, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig of the envtest user: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
