package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// The chart and how the tests install it: `helm install stationfleet
// charts/stationfleet -n stationfleet-system` gives config/default's names.
const (
	chartDir     = "charts/stationfleet"
	releaseName  = "stationfleet"
	chartVersion = "0.1.0"
)

// helmLabels are the labels the chart adds to config/default's: Helm's own
// and the release's.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}

// helmBin returns the pinned helm that `make helm` (hack/helm/build.sh)
// links into bin/.
func helmBin(t *testing.T) string {
	t.Helper()
	helm := filepath.Join(moduleRoot(t), "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		t.Fatalf("%s not found: run `make helm`", helm)
	}
	return helm
}

// runHelm runs the pinned helm in the module root and returns its stdout,
// or its error with stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBin(t), args...)
	cmd.Dir = moduleRoot(t)
	// No user configuration, cache or repositories leak into the test.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders the chart as release stationfleet in
// stationfleet-system with extra helm arguments (--set, -f).
func helmTemplate(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", releaseName, chartDir, "--namespace", managerNamespace}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

func decode(t *testing.T, out string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(out, "\n---") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		if len(u.Object) == 0 {
			continue // a comment or an empty document
		}
		objs = append(objs, u)
	}
	return objs
}

// allValues turns on every option of the chart at once.
const allValues = "test/deploy/testdata/chart/all-values.yaml"

// TestChartLint runs `helm lint --strict` on the chart with its defaults
// and with every option on.
func TestChartLint(t *testing.T) {
	for _, args := range [][]string{nil, {"-f", allValues}} {
		out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
			t.Fatalf("helm lint: %s", out)
		}
	}
}

// TestChartMatchesKustomize: with its default values the chart renders the
// objects of config/default; with watchNamespaces those of
// config/namespaced (which watches team-a and team-b); with the
// ServiceMonitor and PrometheusRule on, also those of config/prometheus;
// with networkPolicy on, also those of config/components/networkpolicy.
// What differs by design, and is normalised before comparing:
//   - the chart adds Helm's labels (helmLabels; the ServiceMonitor also
//     selects the release's metrics Service by its instance label);
//   - the chart creates no Namespace (helm install --create-namespace);
//   - the chart keeps its CRD on uninstall (helm.sh/resource-policy: keep);
//   - the chart's PrometheusRule is rendered from the same rules file
//     without its comments;
//   - the order of a role's rules and verbs (config/namespaced's Roles are
//     written by hand).
func TestChartMatchesKustomize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dirs   []string
		values []string
	}{
		{name: "default", dirs: []string{"config/default"}},
		{name: "namespaced", dirs: []string{"config/namespaced"}, values: []string{"--set", "watchNamespaces={team-a,team-b}"}},
		{name: "prometheus", dirs: []string{"config/default", "config/prometheus"},
			values: []string{"--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true"}},
		// config/default with config/components/networkpolicy, as a user's
		// overlay adds it (its NetworkPolicies get no prefix nor labels
		// there: the chart names and labels them as its other objects).
		{name: "networkpolicy", dirs: []string{"test/deploy/testdata/networkpolicy"}, values: []string{"--set", "networkPolicy.enabled=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []*unstructured.Unstructured
			for _, dir := range tc.dirs {
				for _, u := range render(t, dir) {
					if u.GetKind() == "NetworkPolicy" && u.GetLabels() == nil {
						u.SetName("stationfleet-" + u.GetName())
						u.SetLabels(map[string]string{"app.kubernetes.io/name": "stationfleet", "app.kubernetes.io/part-of": "stationfleet"})
					}
					if u.GetKind() != "Namespace" {
						want = append(want, u)
					}
				}
			}
			got := helmTemplate(t, tc.values...)
			if diff := cmp.Diff(index(t, sortRules(want)), index(t, sortRules(normalise(got)))); diff != "" {
				t.Errorf("the chart and kustomize differ (-kustomize +chart):\n%s", diff)
			}
		})
	}
}

// normalise removes from the chart's objects what differs from
// kustomize's by design (see TestChartMatchesKustomize).
func normalise(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, u := range objs {
		u = u.DeepCopy()
		dropLabels(u.Object)
		if ann := u.GetAnnotations(); ann != nil {
			delete(ann, "helm.sh/resource-policy")
			if len(ann) == 0 {
				ann = nil
			}
			u.SetAnnotations(ann)
		}
		out = append(out, u)
	}
	return out
}

// sortRules puts the rules of every Role and ClusterRole, and the verbs of
// each rule, in one order: a role grants the same whatever their order
// (config/namespaced lists them by hand, the chart as controller-gen does).
func sortRules(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, u := range objs {
		u = u.DeepCopy()
		if rules, ok := u.Object["rules"].([]any); ok && (u.GetKind() == "Role" || u.GetKind() == "ClusterRole") {
			for _, r := range rules {
				if verbs, ok := r.(map[string]any)["verbs"].([]any); ok {
					sort.Slice(verbs, func(i, j int) bool { return fmt.Sprint(verbs[i]) < fmt.Sprint(verbs[j]) })
				}
			}
			sort.Slice(rules, func(i, j int) bool { return fmt.Sprint(rules[i]) < fmt.Sprint(rules[j]) })
		}
		out = append(out, u)
	}
	return out
}

// dropLabels deletes helmLabels from every map in v: labels, selectors,
// matchLabels. No other field of these objects uses such a key.
func dropLabels(v any) {
	switch v := v.(type) {
	case map[string]any:
		for _, l := range helmLabels {
			delete(v, l)
		}
		for _, c := range v {
			dropLabels(c)
		}
	case []any:
		for _, c := range v {
			dropLabels(c)
		}
	}
}

// index keys objects by kind, namespace and name, after a JSON round trip
// so that numbers compare alike (0400 and 256).
func index(t *testing.T, objs []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	m := map[string]map[string]any{}
	for _, u := range objs {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(b, &obj); err != nil {
			t.Fatal(err)
		}
		key := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
		if _, dup := m[key]; dup {
			t.Fatalf("two objects %s", key)
		}
		m[key] = obj
	}
	return m
}

// TestChartRendersAndApplies dry-runs what the chart renders, with its
// defaults and with every option on, against the test API server: a typo
// in a field, a wrong API version or an invalid object fails. The
// ServiceMonitor and PrometheusRule are not applied (the test API server
// has no Prometheus Operator CRDs); TestChartMatchesKustomize and the
// promtool tests check them.
func TestChartRendersAndApplies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		check  func(g Gomega, byKey map[string]*unstructured.Unstructured)
	}{
		{name: "defaults", check: func(g Gomega, byKey map[string]*unstructured.Unstructured) {
			d := byKey["Deployment/stationfleet-controller-manager"]
			g.Expect(d).NotTo(BeNil())
			replicas, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas")
			g.Expect(replicas).To(BeNumerically("==", 2))
			c := container(g, d)
			g.Expect(c["args"]).To(ContainElement("--leader-elect"))
			g.Expect(c["image"]).To(Equal("ghcr.io/stationfleet/stationfleet:v0.1.0"))
			g.Expect(byKey).To(HaveKey("CustomResourceDefinition/firmwarerollouts.firmware.stationfleet.io"))
			g.Expect(byKey).NotTo(HaveKey("PodDisruptionBudget/stationfleet-controller-manager"))
		}},
		{name: "all values", values: []string{"-f", allValues}, check: func(g Gomega, byKey map[string]*unstructured.Unstructured) {
			d := byKey["Deployment/stationfleet-controller-manager"]
			g.Expect(d).NotTo(BeNil())
			replicas, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas")
			g.Expect(replicas).To(BeNumerically("==", 3))
			c := container(g, d)
			g.Expect(c["image"]).To(Equal("registry.example.com/stationfleet@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
			g.Expect(c["args"]).To(ContainElements("--watch-namespaces=team-a,team-b", "--iothub-read-rate=160",
				"--azblob-auth=azure-ad", "--iothub-connection-string-file=/etc/stationfleet/iothub/cs",
				"--metrics-cert-path=/etc/stationfleet/metrics-tls", "--metrics-bind-address=:9443"))
			g.Expect(c["args"]).NotTo(ContainElement(HavePrefix("--azblob-account-key-file")))
			spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
			g.Expect(spec["nodeSelector"]).To(Equal(map[string]any{"kubernetes.io/os": "linux", "pool": "system"}))
			g.Expect(spec["tolerations"]).To(ConsistOf(HaveKeyWithValue("key", "dedicated")))
			g.Expect(spec["affinity"]).To(HaveKey("nodeAffinity"))
			g.Expect(spec["volumes"]).To(ConsistOf(
				HaveKeyWithValue("name", "iothub"), HaveKeyWithValue("name", "cups-tls"),
				HaveKeyWithValue("name", "metrics-tls"), HaveKeyWithValue("name", "scratch")))
			ann, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations")
			g.Expect(ann).To(HaveKeyWithValue("example.com/team", "fleet"))
			cups := byKey["Service/stationfleet-cups"]
			g.Expect(cups).NotTo(BeNil())
			g.Expect(cups.Object["spec"]).To(And(HaveKeyWithValue("type", "NodePort"),
				HaveKeyWithValue("ports", ConsistOf(And(HaveKeyWithValue("port", BeNumerically("==", 443)), HaveKeyWithValue("nodePort", BeNumerically("==", 30502)))))))
			g.Expect(byKey).NotTo(HaveKey("ClusterRole/stationfleet-manager-role"))
			g.Expect(byKey).To(HaveKey("Role/stationfleet-manager"))
			g.Expect(byKey).To(HaveKey("PodDisruptionBudget/stationfleet-controller-manager"))
			g.Expect(byKey).To(HaveKey("ConfigMap/stationfleet-grafana-dashboard"))
			cupsIngress := byKey["NetworkPolicy/stationfleet-cups-ingress"]
			g.Expect(cupsIngress).NotTo(BeNil())
			g.Expect(cupsIngress.Object["spec"]).To(HaveKeyWithValue("ingress", ConsistOf(HaveKeyWithValue("from", ConsistOf(HaveKey("ipBlock"))))))
			g.Expect(byKey).NotTo(HaveKey("CustomResourceDefinition/firmwarerollouts.firmware.stationfleet.io"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := helmTemplate(t, tc.values...)
			byKey := map[string]*unstructured.Unstructured{}
			var apply []*unstructured.Unstructured
			for _, u := range objs {
				byKey[u.GetKind()+"/"+u.GetName()] = u
				if u.GetAPIVersion() != "monitoring.coreos.com/v1" {
					apply = append(apply, u)
				}
				if u.GetNamespace() != "" {
					ensureNamespaces(t, u.GetNamespace())
				}
			}
			ensureNamespaces(t, managerNamespace)
			dryRunApply(t, apply)
			tc.check(g, byKey)
		})
	}
}

func container(g Gomega, d *unstructured.Unstructured) map[string]any {
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	g.Expect(containers).To(HaveLen(1))
	return containers[0].(map[string]any)
}

// TestChartRefusesBadValues: values that would install a broken manager,
// or that the chart does not know (a typo), fail the render with a message
// that says what to change.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		set, want string
	}{
		{set: "leaderElection.enabled=false", want: "leaderElection.enabled=false needs replicas: 1"},
		// values.schema.json: a closed set, a misspelt key, a wrong type.
		{set: "azblob.auth=sas", want: "value must be one of 'shared-key', 'azure-ad'"},
		{set: "replica=3", want: "additional properties 'replica' not allowed"},
		{set: "replicas=two", want: "/replicas': got string, want integer"},
		{set: "cups.service.type=ExternalName", want: "/cups/service/type': value must be one of"},
		{set: "azblob.account=", want: "azblob.account (the storage account holding the firmware) is required"},
	} {
		_, err := runHelm(t, "template", releaseName, chartDir, "--namespace", managerNamespace, "--set", tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: got %v, want an error saying %q", tc.set, err, tc.want)
		}
	}
	if _, err := runHelm(t, "template", releaseName, chartDir, "--set", "leaderElection.enabled=false,replicas=1"); err != nil {
		t.Errorf("one replica without leader election: %v", err)
	}
}

// TestChartCopiesInSync: the chart's copies of the CRD, the manager's
// RBAC rules, the alert rules and the Grafana dashboard, and config/prometheus's PrometheusRule, are
// those of their sources (`make chart-sync` refreshes them; `make
// manifests` runs it).
func TestChartCopiesInSync(t *testing.T) {
	g := NewWithT(t)
	root := moduleRoot(t)
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(root, p))
		g.Expect(err).NotTo(HaveOccurred())
		return b
	}
	names := func(glob string) []string {
		m, err := filepath.Glob(filepath.Join(root, glob))
		g.Expect(err).NotTo(HaveOccurred())
		var out []string
		for _, p := range m {
			out = append(out, filepath.Base(p))
		}
		sort.Strings(out)
		return out
	}
	crds := names("config/crd/bases/*.yaml")
	g.Expect(crds).NotTo(BeEmpty())
	g.Expect(names(chartDir+"/files/crds/*.yaml")).To(Equal(crds), "the chart's CRDs are not config/crd/bases': run make chart-sync")
	for _, f := range crds {
		g.Expect(string(read(chartDir+"/files/crds/"+f))).To(Equal(string(read("config/crd/bases/"+f))), "%s differs: run make chart-sync", f)
	}
	for src, copy := range map[string]string{
		"config/prometheus/stationfleet.rules.yaml": chartDir + "/files/stationfleet.rules.yaml",
		"config/grafana/stationfleet.json":          chartDir + "/files/stationfleet.json",
		"config/rbac/role.yaml":                     chartDir + "/files/manager-role.yaml",
	} {
		g.Expect(string(read(copy))).To(Equal(string(read(src))), "%s differs from %s: run make chart-sync", copy, src)
	}

	var rules, rule map[string]any
	g.Expect(yaml.Unmarshal(read("config/prometheus/stationfleet.rules.yaml"), &rules)).To(Succeed())
	g.Expect(yaml.Unmarshal(read("config/prometheus/prometheusrule.yaml"), &rule)).To(Succeed())
	g.Expect(rule["spec"]).To(Equal(rules), "config/prometheus/prometheusrule.yaml differs from stationfleet.rules.yaml: run make chart-sync")
}

// TestChartInstallUpgradeUninstall moves a manager installed with
// `kubectl apply -k config/default` to the chart, as the README says (label
// and annotate its objects so that Helm adopts them, then helm install),
// upgrades it, and uninstalls it, against the test API server: the
// adoption succeeds (the chart's selectors are config/default's), the
// upgrade changes the replicas, and uninstalling removes the manager and
// its RBAC but keeps the CRD and the rollouts.
func TestChartInstallUpgradeUninstall(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	root := moduleRoot(t)
	kubectl := filepath.Join(root, "bin", "kubectl")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(testEnv.WriteKubeconfig("helm-test", kubeconfig)).To(Succeed())
	run := func(stdin []byte, name string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(name, append(args, "--kubeconfig", kubeconfig)...)
		cmd.Dir = root
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return out
	}
	helm := func(args ...string) {
		t.Helper()
		if _, err := runHelm(t, append(args, "--kubeconfig", kubeconfig, "--namespace", managerNamespace)...); err != nil {
			t.Fatal(err)
		}
	}
	deployment := func() (*appsv1.Deployment, error) {
		d := &appsv1.Deployment{}
		err := testEnv.Client.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "stationfleet-controller-manager"}, d)
		return d, err
	}

	// Installed with kustomize, then handed to Helm (README, "With Helm").
	ensureNamespaces(t, managerNamespace)
	run(nil, kubectl, "apply", "-k", "config/default")
	rendered := run(nil, kubectl, "kustomize", "config/default")
	run(rendered, kubectl, "label", "-f", "-", "--overwrite", "app.kubernetes.io/managed-by=Helm")
	run(rendered, kubectl, "annotate", "-f", "-", "--overwrite", "meta.helm.sh/release-name="+releaseName, "meta.helm.sh/release-namespace="+managerNamespace)

	helm("install", releaseName, chartDir)
	d, err := deployment()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Labels).To(HaveKeyWithValue("helm.sh/chart", "stationfleet-0.1.0"), "the Deployment was not adopted")
	g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))

	sample, err := os.ReadFile(filepath.Join(root, "config/samples/firmware_v1alpha1_firmwarerollout.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	r := &fwv1.FirmwareRollout{}
	g.Expect(yaml.Unmarshal(sample, r)).To(Succeed())
	r.Namespace = testEnv.Namespace(t)
	g.Expect(testEnv.Client.Create(ctx, r)).To(Succeed())

	helm("upgrade", releaseName, chartDir, "--set", "replicas=3")
	d, err = deployment()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))

	helm("uninstall", releaseName)
	_, err = deployment()
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the manager outlived helm uninstall: %v", err)
	role := &rbacv1.ClusterRole{}
	err = testEnv.Client.Get(ctx, client.ObjectKey{Name: "stationfleet-manager-role"}, role)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the manager's ClusterRole outlived helm uninstall: %v", err)
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKey{Name: "firmwarerollouts.firmware.stationfleet.io"}, crd)).To(Succeed(), "helm uninstall deleted the CRD")
	g.Expect(crd.GetDeletionTimestamp()).To(BeNil(), "helm uninstall deletes the CRD")
	g.Expect(testEnv.Client.Get(ctx, client.ObjectKeyFromObject(r), &fwv1.FirmwareRollout{})).To(Succeed(), "the rollout went with the release")
}
