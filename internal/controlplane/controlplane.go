// Package controlplane starts a local Kubernetes control plane (etcd and
// kube-apiserver through controller-runtime's envtest) with the stationfleet
// CRDs installed, for the programs that need one of their own: the demo, the
// bench and, through internal/testutil/kubetest, the tests.
//
// It does not import Go's testing package, so the demo and bench binaries
// do not link it; the helpers that take a *testing.T stay in kubetest.
//
// The binaries come from Options.AssetsDir, else KUBEBUILDER_ASSETS, else the
// module's bin/ directory where `make tools` links them. Nothing is
// downloaded: when they are missing, Start fails with a message that says to
// run `make tools`.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// Default timeouts. A cold kube-apiserver on a loaded two-core machine
// takes well over envtest's own default of 20 s to report healthy; two
// minutes is what the test suites have always used.
const (
	DefaultStartTimeout = 2 * time.Minute
	DefaultStopTimeout  = time.Minute
)

// Binaries are the control-plane programs Start needs in the assets
// directory.
var Binaries = []string{"kube-apiserver", "etcd"}

// ErrBinaryMissing is returned (wrapped) by Start when kube-apiserver or
// etcd is not in the assets directory.
var ErrBinaryMissing = errors.New("control-plane binary missing")

// Options say where the binaries are and where etcd keeps its data.
type Options struct {
	// ModuleRoot is the stationfleet checkout: the CRDs are read from its
	// config/crd/bases. Empty means found with ModuleRoot.
	ModuleRoot string
	// AssetsDir holds kube-apiserver and etcd. Empty means
	// KUBEBUILDER_ASSETS, or <ModuleRoot>/bin when that is unset.
	AssetsDir string
	// EtcdDataDir, when set, is where etcd keeps its data, so it outlives
	// the process (the demo's --keep-state). Empty means a temporary
	// directory removed by Stop.
	EtcdDataDir string
	// Admission installs the FirmwareRollout validating webhook
	// (config/webhook) and serves it from this process
	// (internal/admission), as the manager does in a cluster: an analysis
	// step whose condition does not compile is then refused by the API
	// server.
	Admission bool
	// StartTimeout and StopTimeout bound the control plane's start and
	// stop; zero means DefaultStartTimeout and DefaultStopTimeout.
	StartTimeout, StopTimeout time.Duration
}

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

	stopped     bool
	stopWebhook context.CancelFunc
}

// ModuleRoot returns the directory of the stationfleet go.mod, found by
// walking up from the working directory (tests run in their package's
// directory, the demo and bench from the checkout).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "api", "v1alpha1")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the stationfleet module root above the working directory")
		}
		dir = parent
	}
}

// NewScheme returns a scheme with the Kubernetes, CRD and stationfleet types.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// The AddToScheme functions of generated and kubebuilder packages only
	// fail on a conflicting registration, which these three never have.
	_ = clientgoscheme.AddToScheme(s)
	_ = apiextensionsv1.AddToScheme(s)
	_ = fwv1.AddToScheme(s)
	return s
}

// AssetsDir returns where Start looks for the binaries given o: o.AssetsDir,
// else KUBEBUILDER_ASSETS, else <root>/bin.
func AssetsDir(o Options, root string) string {
	switch {
	case o.AssetsDir != "":
		return o.AssetsDir
	case os.Getenv("KUBEBUILDER_ASSETS") != "":
		return os.Getenv("KUBEBUILDER_ASSETS")
	default:
		return filepath.Join(root, "bin")
	}
}

// Start starts etcd and kube-apiserver and installs the CRDs from
// config/crd/bases. Call Stop when done.
func Start(o Options) (*Env, error) {
	root := o.ModuleRoot
	if root == "" {
		var err error
		if root, err = ModuleRoot(); err != nil {
			return nil, err
		}
	}
	assets := AssetsDir(o, root)
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%w: %s not found in %s: run `make tools` to build the pinned Kubernetes binaries", ErrBinaryMissing, b, assets)
		}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	scheme := NewScheme()
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: o.StartTimeout,
		ControlPlaneStopTimeout:  o.StopTimeout,
	}
	if o.Admission {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook")}}
	}
	if o.EtcdDataDir != "" {
		if err := os.MkdirAll(o.EtcdDataDir, 0o700); err != nil {
			return nil, fmt.Errorf("etcd data directory: %w", err)
		}
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: o.EtcdDataDir}
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
	e := &Env{Config: cfg, Client: c, Scheme: scheme, Environment: env}
	if o.Admission {
		if err := e.serveAdmission(); err != nil {
			_ = env.Stop()
			return nil, err
		}
	}
	return e, nil
}

// Stop stops the API server and etcd. It is safe on a nil Env, and a
// no-op after the first call.
func (e *Env) Stop() error {
	if e == nil || e.Environment == nil || e.stopped {
		return nil
	}
	e.stopped = true
	if e.stopWebhook != nil {
		e.stopWebhook()
	}
	return e.Environment.Stop()
}

// WriteKubeconfig adds user to the API server in the system:masters group
// and writes a kubeconfig for it to path (mode 0600), for processes (the
// manager, kubectl) that reach the API server as an administrator.
func (e *Env) WriteKubeconfig(user, path string) error {
	return WriteKubeconfig(e.Environment, user, path)
}

// WriteKubeconfig is Env.WriteKubeconfig for an envtest environment started
// elsewhere. env must be started.
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

// CreateNamespace creates a namespace with a fresh name starting with prefix
// and returns the name. envtest runs no namespace controller, so a deleted
// namespace never goes away; callers use a new one each time.
func (e *Env) CreateNamespace(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("%s%d", prefix, time.Now().UnixNano())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("create namespace %s: %w", name, err)
	}
	return name, nil
}
