// Package kubetest starts a real kube-apiserver and etcd (envtest) with the
// stationfleet CRDs installed, for any package's TestMain.
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
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Env is a running API server with the CRDs installed.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a controller-runtime client with the stationfleet scheme.
	Client client.Client
	// Scheme knows the Kubernetes and stationfleet types.
	Scheme *runtime.Scheme
	// Environment is the underlying envtest environment.
	Environment *envtest.Environment
}

// ModuleRoot returns the directory of the stationfleet go.mod, found by
// walking up from the working directory (tests run in their package's
// directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "api", "v1alpha1")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("cannot find the stationfleet module root above the working directory")
		}
		dir = parent
	}
}

// NewScheme returns a scheme with the Kubernetes and stationfleet types.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = apiextensionsv1.AddToScheme(s)
	_ = fwv1.AddToScheme(s)
	return s
}

// Start starts etcd and kube-apiserver and installs the CRDs from
// config/crd/bases. Call Stop when done.
func Start() (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools` to build the pinned Kubernetes binaries", b, assets)
		}
	}
	scheme := NewScheme()
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest with binaries from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("client for envtest: %w", err)
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, Environment: env}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	if e == nil || e.Environment == nil {
		return nil
	}
	return e.Environment.Stop()
}

// WriteKubeconfig adds user to env's API server in the system:masters group
// and writes a kubeconfig for it to path, for processes (the manager,
// kubectl) that reach the API server as an administrator. env must be
// started.
func WriteKubeconfig(env *envtest.Environment, user, path string) error {
	u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add envtest user %q: %w", user, err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig of envtest user %q: %w", user, err)
	}
	if _, err := clientcmd.Load(b); err != nil {
		return fmt.Errorf("kubeconfig of envtest user %q: %w", user, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// Main is a TestMain body: it starts the environment into *env, runs the
// tests, stops the environment and returns the exit code.
//
// Controller and CUPS logs are discarded unless STATIONFLEET_TEST_LOG is set
// (to any value), when they go to stderr.
func Main(m *testing.M, env **Env) int {
	if os.Getenv("STATIONFLEET_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
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

// Namespace creates a fresh namespace named after the test and returns its
// name. Namespaces are not deleted (envtest has no namespace controller), so
// every test gets its own.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", time.Now().UnixNano())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}
