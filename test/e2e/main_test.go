package e2e

import (
	"os"
	"testing"

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

// TestMain builds the manager, starts the API server and writes its
// kubeconfig, runs the tests and stops the API server.
func TestMain(m *testing.M) {
	os.Exit(kubetest.ManagerMain(m, "e2e", func(h kubetest.Harness) {
		testEnv, moduleRoot, kubeconfigPath, managerBin = h.Env, h.ModuleRoot, h.Kubeconfig, h.ManagerBin
	}))
}
