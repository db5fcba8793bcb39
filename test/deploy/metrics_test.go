package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

// TestMetricsObjects checks what the metrics endpoint's authentication and
// authorization need in config/default: the metrics Service on 8443, the
// manager's ServiceAccount bound to a ClusterRole that may create
// TokenReviews and SubjectAccessReviews, and the scrapers' metrics-reader
// ClusterRole, which allows GET /metrics and nothing else.
// TestMetricsServedOnlyToAuthorizedScrapers (test/e2e) runs the manager
// with these objects.
func TestMetricsObjects(t *testing.T) {
	g := NewWithT(t)
	byName := map[string]*unstructured.Unstructured{}
	for _, u := range kustomize(t, "default") {
		byName[u.GetKind()+"/"+u.GetName()] = u
	}
	svc := byName["Service/stationfleet-metrics"]
	g.Expect(svc).NotTo(BeNil(), "no metrics Service")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	g.Expect(ports).To(ConsistOf(And(HaveKeyWithValue("port", BeNumerically("==", 8443)), HaveKeyWithValue("targetPort", "metrics"))))

	reader := byName["ClusterRole/stationfleet-metrics-reader"]
	g.Expect(reader).NotTo(BeNil(), "no metrics-reader ClusterRole")
	rules, _, _ := unstructured.NestedSlice(reader.Object, "rules")
	g.Expect(rules).To(ConsistOf(map[string]any{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}}))

	auth := byName["ClusterRole/stationfleet-metrics-auth-role"]
	g.Expect(auth).NotTo(BeNil(), "no metrics-auth-role ClusterRole")
	rules, _, _ = unstructured.NestedSlice(auth.Object, "rules")
	g.Expect(rules).To(ConsistOf(
		map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"tokenreviews"}, "verbs": []any{"create"}},
		map[string]any{"apiGroups": []any{"authorization.k8s.io"}, "resources": []any{"subjectaccessreviews"}, "verbs": []any{"create"}},
	))
	binding := byName["ClusterRoleBinding/stationfleet-metrics-auth-rolebinding"]
	g.Expect(binding).NotTo(BeNil(), "metrics-auth-role is not bound")
	roleName, _, _ := unstructured.NestedString(binding.Object, "roleRef", "name")
	g.Expect(roleName).To(Equal(auth.GetName()))
	subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
	g.Expect(subjects).To(ConsistOf(map[string]any{"kind": "ServiceAccount", "name": "stationfleet-controller-manager", "namespace": "stationfleet-system"}))
}

// TestServiceMonitorSelectsTheMetricsService: the optional ServiceMonitor
// of config/prometheus lives in the manager's namespace, selects the
// metrics Service of config/default and no other, and scrapes its port
// over HTTPS with a bearer token.
func TestServiceMonitorSelectsTheMetricsService(t *testing.T) {
	g := NewWithT(t)
	var monitors []*unstructured.Unstructured
	for _, u := range kustomize(t, "prometheus") {
		if u.GetKind() == "ServiceMonitor" {
			monitors = append(monitors, u)
		}
	}
	g.Expect(monitors).To(HaveLen(1))
	m := monitors[0]
	g.Expect(m.GetKind()).To(Equal("ServiceMonitor"))
	g.Expect(m.GetNamespace()).To(Equal("stationfleet-system"))
	matchLabels, _, _ := unstructured.NestedStringMap(m.Object, "spec", "selector", "matchLabels")
	g.Expect(matchLabels).NotTo(BeEmpty())
	endpoints, _, _ := unstructured.NestedSlice(m.Object, "spec", "endpoints")
	g.Expect(endpoints).To(HaveLen(1))
	ep := endpoints[0].(map[string]any)
	g.Expect(ep).To(HaveKeyWithValue("scheme", "https"))
	g.Expect(ep).To(HaveKeyWithValue("bearerTokenFile", "/var/run/secrets/kubernetes.io/serviceaccount/token"))
	// The rollout metrics' namespace label is the rollout's: kept, not
	// renamed exported_namespace.
	g.Expect(ep).To(HaveKeyWithValue("honorLabels", true))

	var selected []string
	for _, u := range kustomize(t, "default") {
		if u.GetKind() != "Service" || u.GetNamespace() != m.GetNamespace() || !labels.SelectorFromSet(matchLabels).Matches(labels.Set(u.GetLabels())) {
			continue
		}
		selected = append(selected, u.GetName())
		ports, _, _ := unstructured.NestedSlice(u.Object, "spec", "ports")
		g.Expect(ports).To(ContainElement(HaveKeyWithValue("name", ep["port"])), "Service %s has no port %v", u.GetName(), ep["port"])
	}
	g.Expect(selected).To(ConsistOf("stationfleet-metrics"))
}

// kustomize renders config/<dir> with the pinned kubectl and returns its
// objects.
func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	g := NewWithT(t)
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	kubectl := filepath.Join(root, "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s not found: run `make tools`", kubectl)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl kustomize config/%s: %s", dir, stderr.String())
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		g.Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
		objs = append(objs, u)
	}
	return objs
}
