package soak

import (
	"os"
	"testing"

	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

var (
	// testEnv is the real API server the managers and the test share.
	testEnv *kubetest.Env
	// kubeconfigPath is a system:masters kubeconfig for the manager processes.
	kubeconfigPath string
	// managerBin is the manager binary built from this tree.
	managerBin string
)

func TestMain(m *testing.M) {
	if burnIfAsked() {
		os.Exit(0)
	}
	os.Exit(kubetest.ManagerMain(m, "soak", func(h kubetest.Harness) {
		testEnv, kubeconfigPath, managerBin = h.Env, h.Kubeconfig, h.ManagerBin
	}))
}
