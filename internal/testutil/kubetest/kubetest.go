// Package kubetest is the test side of internal/controlplane: a TestMain
// body that starts a real kube-apiserver and etcd (envtest) with the
// stationfleet CRDs installed, and helpers that take a *testing.T.
//
// Programs that are not tests (the demo, the bench) use controlplane
// directly, so they do not link Go's testing package.
//
// The binaries come from KUBEBUILDER_ASSETS, or from the module's bin/
// directory where `make tools` links them. Nothing is downloaded: when they
// are missing, Start fails with a message that says to run `make tools`.
//
//	var testEnv *kubetest.Env
//
//	func TestMain(m *testing.M) {
//		os.Exit(kubetest.Main(m, &testEnv))
//	}
package kubetest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/stationfleet/stationfleet/internal/controlplane"
)

// Env is a running API server with the CRDs installed: a controlplane.Env
// (Config, Client, Scheme, Environment) with the test helpers on top.
type Env struct {
	*controlplane.Env
}

// ModuleRoot returns the directory of the stationfleet go.mod (see
// controlplane.ModuleRoot).
func ModuleRoot() (string, error) { return controlplane.ModuleRoot() }

// NewScheme returns a scheme with the Kubernetes and stationfleet types.
func NewScheme() *runtime.Scheme { return controlplane.NewScheme() }

// Start starts etcd and kube-apiserver and installs the CRDs from
// config/crd/bases. Call Stop when done.
func Start() (*Env, error) {
	e, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		return nil, err
	}
	return &Env{Env: e}, nil
}

// Stop stops the API server and etcd. It is safe on a nil Env.
func (e *Env) Stop() error {
	if e == nil {
		return nil
	}
	return e.Env.Stop()
}

// WriteKubeconfig adds user to env's API server in the system:masters group
// and writes a kubeconfig for it to path (see controlplane.WriteKubeconfig).
func WriteKubeconfig(env *envtest.Environment, user, path string) error {
	return controlplane.WriteKubeconfig(env, user, path)
}

// Main is a TestMain body: it starts the environment into *env, runs the
// tests, stops the environment and returns the exit code.
//
// Controller and CUPS logs are discarded unless STATIONFLEET_TEST_LOG is set
// (to any value), when they go to stderr.
func Main(m *testing.M, env **Env) int {
	SetupLogging()
	e, err := Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %v\n", err)
		return 1
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: stop: %v\n", err)
	}
	return code
}

// SetupLogging discards controller and CUPS logs unless
// STATIONFLEET_TEST_LOG is set, when they go to stderr.
func SetupLogging() {
	if os.Getenv("STATIONFLEET_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
}

// Lazy is an environment started by the first test that needs it, so that
// the tests of a package that need none (unit tests over fakes) run
// without an API server. Use it from TestMain with LazyMain.
type Lazy struct {
	once sync.Once
	env  *Env
	err  error
}

// Get starts the environment on first use and returns it, or fails t.
func (l *Lazy) Get(t testing.TB) *Env {
	t.Helper()
	l.once.Do(func() { l.env, l.err = Start() })
	if l.err != nil {
		t.Fatalf("start the API server: %v", l.err)
	}
	return l.env
}

// LazyMain is a TestMain body for a Lazy environment: it runs the tests and
// stops the environment if one started, and returns the exit code.
func LazyMain(m *testing.M, l *Lazy) int {
	SetupLogging()
	code := m.Run()
	if l.env != nil {
		if err := l.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stop: %v\n", err)
		}
	}
	return code
}

// Namespace creates a fresh namespace named after the test and returns its
// name. Namespaces are not deleted (envtest has no namespace controller), so
// every test gets its own.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name, err := e.CreateNamespace(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	return name
}
