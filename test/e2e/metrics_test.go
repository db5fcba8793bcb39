package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
	"github.com/stationfleet/stationfleet/internal/testutil/testpki"
)

// metricsProbe is a metric every manager exposes from its start (a plain
// counter, so it is there before any rollout).
const metricsProbe = "stationfleet_rollout_twin_writes_total"

// TestMetricsServedOnlyToAuthorizedScrapers runs the manager as a user
// deploys it: the metrics flags of config/manager (HTTPS, authentication and
// authorization by default, no --metrics-secure flag), its identity a token
// of the ServiceAccount config/default ships, with nothing but the RBAC
// config/default ships. Its metrics endpoint
//   - answers no plain HTTP request with metrics,
//   - refuses a request without a token with 401, and one with a token the
//     API server does not know with 500 (controller-runtime's filter),
//   - refuses a ServiceAccount's token not bound to the metrics-reader
//     ClusterRole with 403,
//   - serves the stationfleet_ metrics to a token of a ServiceAccount bound
//     to metrics-reader, as a Prometheus scraper is,
//
// with the self-signed certificate it makes when given none (the scraper
// skips verification, as with a ServiceMonitor's insecureSkipVerify), and
// with a certificate mounted in --metrics-cert-path (as from cert-manager),
// which the scraper verifies with its CA.
func TestMetricsServedOnlyToAuthorizedScrapers(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	shipped := applyShippedRBAC(t)
	cs, err := kubernetes.NewForConfig(testEnv.Config)
	g.Expect(err).NotTo(HaveOccurred())

	// The scrapers: one bound to the shipped metrics-reader ClusterRole,
	// as the README tells users to bind Prometheus, and one not.
	ns := testEnv.Namespace(t)
	for _, sa := range []string{"prometheus", "stranger"} {
		g.Expect(testEnv.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}})).To(Succeed())
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-prometheus-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: shipped.metricsReader},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "prometheus"}},
	}
	g.Expect(testEnv.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() { _ = testEnv.Client.Delete(context.Background(), binding) })
	readerToken := serviceAccountToken(t, cs, ns, "prometheus")
	strangerToken := serviceAccountToken(t, cs, ns, "stranger")

	// The manager's own identity: a token of the shipped ServiceAccount.
	kubeconfig := serviceAccountKubeconfig(t, cs, shipped.namespace, shipped.serviceAccount)
	hub := hubsim.Start(t, hubsim.Options{})
	csFile := filepath.Join(t.TempDir(), "iothub-connection-string")
	g.Expect(os.WriteFile(csFile, []byte(hub.ConnectionString()+"\n"), 0o600)).To(Succeed())

	ca, err := testpki.NewCA("metrics CA")
	g.Expect(err).NotTo(HaveOccurred())
	serving, err := ca.IssueServer(testpki.LoopbackHosts...)
	g.Expect(err).NotTo(HaveOccurred())
	certDir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(certDir, "tls.crt"), serving.CertPEM(), 0o600)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(certDir, "tls.key"), serving.KeyPEM(), 0o600)).To(Succeed())
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	cases := []struct {
		name string
		// args are the manager's metrics flags beyond the bind address.
		args []string
		// tls is how the scraper checks the server's certificate.
		tls *tls.Config
	}{{
		name: "self-signed certificate",
		tls:  &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the self-signed default, as insecureSkipVerify
	}, {
		name: "certificate from --metrics-cert-path",
		args: []string{"--metrics-cert-path=" + certDir},
		tls:  &tls.Config{RootCAs: roots, ServerName: "localhost"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			metricsAddr, probeAddr := proc.FreeAddr(t), proc.FreeAddr(t)
			args := append([]string{
				"--kubeconfig=" + kubeconfig,
				"--metrics-bind-address=" + metricsAddr,
				"--health-probe-bind-address=" + probeAddr,
				"--iothub-connection-string-file=" + csFile,
				"--iothub-ca-file=" + hub.CAFile(),
				"--iothub-endpoint=" + hub.Addr(),
				"--cups-bind-address=" + proc.FreeAddr(t),
				"--cups-insecure",
				"--firmware-dir=" + t.TempDir(),
				"--zap-encoder=console",
			}, tc.args...)
			mgr := proc.New(t, "manager", managerBin, args, func() bool { return proc.HTTPOK("http://" + probeAddr + "/readyz") })
			mgr.Dir = t.TempDir()
			mgr.Start()
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("manager log, last %d lines:\n%s", logTailLines, mgr.LogTail(logTailLines))
				}
			})
			url := "https://" + metricsAddr + "/metrics"
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.tls}}

			// The reader is served: first wait for the server (it starts
			// with the manager, next to the probes).
			var body string
			g.Eventually(func() (int, error) {
				code, b, err := scrapeMetrics(client, url, readerToken)
				body = b
				return code, err
			}, 20*time.Second, 100*time.Millisecond).Should(Equal(http.StatusOK), func() string { return body })
			g.Expect(body).To(ContainSubstring(metricsProbe))

			for _, c := range []struct {
				who, token string
				want       int
			}{
				{"no token", "", http.StatusUnauthorized},
				// controller-runtime's filter answers a token the
				// TokenReview rejects with 500 "Authentication failed"
				// (README, "Metrics").
				{"a token the API server does not know", "not-a-token", http.StatusInternalServerError},
				{"a ServiceAccount without metrics-reader", strangerToken, http.StatusForbidden},
				{"a ServiceAccount bound to metrics-reader", readerToken, http.StatusOK},
			} {
				code, body, err := scrapeMetrics(client, url, c.token)
				g.Expect(err).NotTo(HaveOccurred(), c.who)
				g.Expect(code).To(Equal(c.want), "%s: %s", c.who, body)
				if c.want == http.StatusOK {
					g.Expect(body).To(ContainSubstring(metricsProbe), c.who)
				} else {
					g.Expect(body).NotTo(ContainSubstring("stationfleet_"), c.who)
				}
			}

			// Plain HTTP on the metrics port gets no metrics.
			resp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				g.Expect(resp.StatusCode).NotTo(Equal(http.StatusOK), "plain HTTP served: %s", b)
				g.Expect(string(b)).NotTo(ContainSubstring("stationfleet_"))
			}

			// The shipped RBAC is all the manager needs: its controller
			// started, and the API server refused it nothing.
			g.Eventually(func() bool { return mgr.LogContains("Starting workers") }, 30*time.Second, 100*time.Millisecond).
				Should(BeTrue(), "the controller never started")
			g.Expect(mgr.LogContains("forbidden")).To(BeFalse(), "the API server refused the manager something")
			g.Expect(mgr.Alive()).To(BeTrue())
		})
	}
}

// scrapeMetrics GETs url with token as the bearer token (none when empty)
// and returns the status code and body.
func scrapeMetrics(client *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// shippedRBAC names what applyShippedRBAC applied.
type shippedRBAC struct {
	// namespace and serviceAccount are the manager's ServiceAccount.
	namespace, serviceAccount string
	// metricsReader is the ClusterRole a scraper is bound to.
	metricsReader string
}

// rbacKinds are the kinds of config/default that applyShippedRBAC applies.
var rbacKinds = map[string]bool{
	"Namespace": true, "ServiceAccount": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true,
}

// applyShippedRBAC renders config/default with the pinned kubectl, as `kubectl
// apply -k config/default` does, and applies its Namespace, ServiceAccount
// and RBAC objects (not the Deployment, which nothing runs here, nor the CRD
// the test API server has) with kubectl as an administrator. It returns
// their names as rendered (with the kustomize name prefix and namespace).
func applyShippedRBAC(t *testing.T) shippedRBAC {
	t.Helper()
	g := NewWithT(t)
	kubectl := kubectlBinary(t)
	var stderr bytes.Buffer
	render := exec.Command(kubectl, "kustomize", filepath.Join(moduleRoot, "config", "default"))
	render.Stderr = &stderr
	out, err := render.Output()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl kustomize config/default: %s", stderr.String())

	var s shippedRBAC
	var keep []string
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		g.Expect(yaml.Unmarshal([]byte(doc), &obj)).To(Succeed())
		if !rbacKinds[obj.Kind] {
			continue
		}
		keep = append(keep, doc)
		switch {
		case obj.Kind == "ServiceAccount":
			s.namespace, s.serviceAccount = obj.Metadata.Namespace, obj.Metadata.Name
		case obj.Kind == "ClusterRole" && len(obj.Rules) == 1 && len(obj.Rules[0].NonResourceURLs) == 1 &&
			obj.Rules[0].NonResourceURLs[0] == "/metrics":
			s.metricsReader = obj.Metadata.Name
		}
	}
	g.Expect(s.serviceAccount).NotTo(BeEmpty(), "config/default ships no ServiceAccount")
	g.Expect(s.metricsReader).NotTo(BeEmpty(), "config/default ships no ClusterRole that allows GET /metrics only")

	apply := exec.Command(kubectl, "--kubeconfig="+kubeconfigPath, "apply", "--server-side", "--force-conflicts", "-f", "-")
	apply.Stdin = strings.NewReader(strings.Join(keep, "\n---\n"))
	b, err := apply.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl apply: %s", b)
	return s
}

// serviceAccountToken returns a token of the ServiceAccount ns/name from the
// TokenRequest API, valid for an hour.
func serviceAccountToken(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of ServiceAccount %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// serviceAccountKubeconfig writes a kubeconfig that reaches the test API
// server with a token of the ServiceAccount ns/name, as the manager's pod
// does, and returns its path.
func serviceAccountKubeconfig(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: testEnv.Config.Host, CertificateAuthorityData: testEnv.Config.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: serviceAccountToken(t, cs, ns, name)}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name, Namespace: ns}
	cfg.CurrentContext = name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("write kubeconfig of %s/%s: %v", ns, name, err)
	}
	return path
}
