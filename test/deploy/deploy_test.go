// Package deploy checks the deployable manifests: what `kubectl kustomize
// config/default` renders is accepted by a real API server.
package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

var testEnv *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, &testEnv))
}

// TestDefaultRendersAndApplies renders config/default with the pinned
// kubectl and applies every object to the API server with a server-side
// dry run: a typo in a field, a wrong API version or an invalid object fails.
func TestDefaultRendersAndApplies(t *testing.T) {
	g := NewWithT(t)
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	kubectl := filepath.Join(root, "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s not found: run `make tools`", kubectl)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", "default"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	g.Expect(err).NotTo(HaveOccurred(), stderr.String())

	ctx := context.Background()
	kinds := map[string]int{}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		g.Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
		kinds[u.GetKind()]++
		objs = append(objs, u)
	}
	g.Expect(kinds).To(HaveKeyWithValue("Namespace", 1))
	g.Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Service", 2))
	g.Expect(kinds).To(HaveKey("ClusterRole"))

	// The namespace must exist for the namespaced dry runs; the CRD is
	// already installed by envtest, so it is dry-run too.
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			ensureNamespaces(t, u.GetName())
		}
	}
	for _, u := range objs {
		err := testEnv.Client.Patch(ctx, u, client.Apply, client.DryRunAll, client.FieldOwner("deploy-test"), client.ForceOwnership)
		g.Expect(err).NotTo(HaveOccurred(), "%s %s", u.GetKind(), u.GetName())
	}

	// The Deployment is the one the README describes: 2 replicas, leader
	// election, non-root, probes, and the CUPS port of the starter kit.
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		replicas, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
		g.Expect(replicas).To(BeNumerically("==", 2))
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		g.Expect(containers).To(HaveLen(1))
		c := containers[0].(map[string]any)
		g.Expect(c["args"]).To(ContainElement("--leader-elect"))
		g.Expect(c).To(HaveKey("livenessProbe"))
		g.Expect(c).To(HaveKey("readinessProbe"))
		nonRoot, _, _ := unstructured.NestedBool(u.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot")
		g.Expect(nonRoot).To(BeTrue())
		// Metrics over HTTPS with authentication and authorization: the
		// default, never turned off here.
		g.Expect(c["args"]).To(ContainElement("--metrics-bind-address=:8443"))
		g.Expect(c["args"]).NotTo(ContainElement(HavePrefix("--metrics-secure")))
		g.Expect(c["ports"]).To(ContainElement(And(HaveKeyWithValue("name", "metrics"), HaveKeyWithValue("containerPort", BeNumerically("==", 8443)))))
	}
}
