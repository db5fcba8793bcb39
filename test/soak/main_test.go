package soak

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

var (
	// testEnv is the real API server the managers and the test share.
	testEnv *kubetest.Env
	// kubeconfigPath is a system:masters kubeconfig for the manager processes.
	kubeconfigPath string
	// managerBin is the manager binary built from this tree.
	managerBin string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctrl.SetLogger(logr.Discard())
	tmp, err := os.MkdirTemp("", "stationfleet-soak-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	root, err := kubetest.ModuleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	managerBin = filepath.Join(tmp, "manager")
	build := exec.Command("go", "build", "-o", managerBin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: build the manager: %v\n%s", err, out)
		return 1
	}

	env, err := kubetest.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	testEnv = env
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "soak: stop envtest: %v\n", err)
		}
	}()
	user, err := env.Environment.AddUser(envtest.User{Name: "soak", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: add envtest user: %v\n", err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: kubeconfig: %v\n", err)
		return 1
	}
	kubeconfigPath = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kc, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 1
	}
	return m.Run()
}
