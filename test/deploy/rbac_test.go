package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// The manager's service account, as config/default names it.
const (
	managerNamespace = "stationfleet-system"
	managerAccount   = "stationfleet-controller-manager"
	managerUser      = "system:serviceaccount:" + managerNamespace + ":" + managerAccount
)

// render runs the pinned kubectl's kustomize over dir (relative to the
// module root) and decodes the objects.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	root := moduleRoot(t)
	kubectl := filepath.Join(root, "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s not found: run `make tools`", kubectl)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(root, dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("decode %s: %v", dir, err)
		}
		objs = append(objs, u)
	}
	return objs
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := os.Getwd() // test/deploy
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "..", "..")
}

// ensureNamespaces creates the namespaces that do not exist yet (envtest
// runs no namespace controller: a namespace is never deleted).
func ensureNamespaces(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := testEnv.Client.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", n, err)
		}
	}
}

// dryRunApply applies every object with a server-side dry run.
func dryRunApply(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	for _, u := range objs {
		if u.GetKind() == "Namespace" {
			ensureNamespaces(t, u.GetName())
		}
	}
	for _, u := range objs {
		err := testEnv.Client.Patch(context.Background(), u.DeepCopy(), client.Apply, client.DryRunAll, client.FieldOwner("deploy-test"), client.ForceOwnership)
		g.Expect(err).NotTo(HaveOccurred(), "%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
}

// isRBAC says whether u is part of the manager's permissions.
func isRBAC(u *unstructured.Unstructured) bool {
	switch u.GetKind() {
	case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
		return true
	}
	return false
}

// applyRBAC creates the service account, roles and bindings of objs for
// real, and deletes them when the test ends, so that the next test starts
// from an account with no permissions.
func applyRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	for _, u := range objs {
		if !isRBAC(u) {
			continue
		}
		obj := u.DeepCopy()
		g.Expect(testEnv.Client.Patch(ctx, obj, client.Apply, client.FieldOwner("deploy-test"), client.ForceOwnership)).
			To(Succeed(), "%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		t.Cleanup(func() { _ = testEnv.Client.Delete(context.Background(), obj) })
	}
}

// asManager is a clientset that reaches the API server as the manager's
// service account, through impersonation from the administrator.
func asManager(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cfg := rest.CopyConfig(testEnv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: managerUser}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// access is one question to the API server's authorizer.
type access struct {
	verb, group, resource, subresource, namespace string
}

func (a access) String() string {
	r := a.resource
	if a.group != "" {
		r += "." + a.group
	}
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	ns := a.namespace
	if ns == "" {
		ns = "<all namespaces>"
	}
	return a.verb + " " + r + " in " + ns
}

// can asks, as the manager, whether it may do a (SelfSubjectAccessReview).
func can(t *testing.T, cs *kubernetes.Clientset, a access) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("access review %s: %v", a, err)
	}
	return r.Status.Allowed
}

func checkAccess(t *testing.T, cs *kubernetes.Clientset, allowed, denied []access) {
	t.Helper()
	for _, a := range allowed {
		if !can(t, cs, a) {
			t.Errorf("the manager may not %s, which the controller needs", a)
		}
	}
	for _, a := range denied {
		if can(t, cs, a) {
			t.Errorf("the manager may %s, which it must not", a)
		}
	}
}

const fwGroup = "firmware.stationfleet.io"

// controllerNeeds is what the controller does in a namespace whose
// rollouts it runs: the cache lists and watches rollouts, the reconciler
// updates their finalizers, annotations and status, reads the publicKeyRef
// ConfigMap, and records Events.
func controllerNeeds(ns string) []access {
	return []access{
		{"get", fwGroup, "firmwarerollouts", "", ns}, {"list", fwGroup, "firmwarerollouts", "", ns},
		{"watch", fwGroup, "firmwarerollouts", "", ns}, {"patch", fwGroup, "firmwarerollouts", "", ns},
		{"update", fwGroup, "firmwarerollouts", "", ns}, {"patch", fwGroup, "firmwarerollouts", "status", ns},
		{"update", fwGroup, "firmwarerollouts", "finalizers", ns}, {"get", "", "configmaps", "", ns},
		{"create", "events.k8s.io", "events", "", ns},
	}
}

// neverInNamespace is what the manager must not do in any namespace:
// Secrets (its own are mounted files), listing ConfigMaps (it reads one by
// name), creating or deleting rollouts (people and Git do that).
func neverInNamespace(ns string) []access {
	var out []access
	for _, v := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
		out = append(out, access{v, "", "secrets", "", ns})
	}
	return append(out,
		access{"list", "", "configmaps", "", ns}, access{"watch", "", "configmaps", "", ns}, access{"update", "", "configmaps", "", ns},
		access{"create", fwGroup, "firmwarerollouts", "", ns}, access{"delete", fwGroup, "firmwarerollouts", "", ns},
		access{"get", "", "pods", "", ns}, access{"create", "", "pods", "", ns})
}

// TestDefaultRBACLeastPrivilege applies the RBAC of config/default to the
// API server for real and asks, as the manager's service account, what it
// may do: everything the controller needs on rollouts, ConfigMaps (one by
// name) and Events in any namespace, leases in its own namespace only, and
// no access to Secrets at all, neither cluster-wide nor in any namespace.
func TestDefaultRBACLeastPrivilege(t *testing.T) {
	objs := render(t, "config/default")
	tenant := "tenant-default-rbac"
	ensureNamespaces(t, managerNamespace, tenant)
	applyRBAC(t, objs)
	cs := asManager(t)

	allowed := append(controllerNeeds(tenant), controllerNeeds("")...)
	allowed = append(allowed,
		access{"get", "coordination.k8s.io", "leases", "", managerNamespace},
		access{"update", "coordination.k8s.io", "leases", "", managerNamespace},
		access{"create", "coordination.k8s.io", "leases", "", managerNamespace})
	denied := append(neverInNamespace(""), neverInNamespace(tenant)...)
	denied = append(denied, neverInNamespace(managerNamespace)...)
	denied = append(denied,
		access{"get", "coordination.k8s.io", "leases", "", tenant},
		access{"list", "", "configmaps", "", ""},
		access{"create", "rbac.authorization.k8s.io", "rolebindings", "", tenant},
		access{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", ""},
		access{"impersonate", "", "serviceaccounts", "", tenant})
	checkAccess(t, cs, allowed, denied)
	checkNoSecretRule(t, cs, tenant, managerNamespace)
}

// TestNamespacedRBACStaysInItsNamespaces applies the RBAC of
// config/namespaced for real: the manager may do what the controller needs
// in the watched namespaces (team-a, team-b) and nothing outside them, and
// has no cluster-wide grant on rollouts, ConfigMaps, Events or Secrets.
func TestNamespacedRBACStaysInItsNamespaces(t *testing.T) {
	objs := render(t, "config/namespaced")
	watched := watchNamespaces(t, objs)
	NewWithT(t).Expect(watched).To(Equal([]string{"team-a", "team-b"}))
	other := "tenant-not-watched"
	ensureNamespaces(t, append([]string{managerNamespace, other}, watched...)...)
	applyRBAC(t, objs)
	cs := asManager(t)

	var allowed, denied []access
	for _, ns := range watched {
		allowed = append(allowed, controllerNeeds(ns)...)
		denied = append(denied, neverInNamespace(ns)...)
	}
	allowed = append(allowed, access{"update", "coordination.k8s.io", "leases", "", managerNamespace})
	denied = append(denied, controllerNeeds(other)...)
	denied = append(denied, controllerNeeds("")...) // nothing cluster-wide
	denied = append(denied, neverInNamespace(other)...)
	denied = append(denied, neverInNamespace("")...)
	checkAccess(t, cs, allowed, denied)
	checkNoSecretRule(t, cs, append(watched, other, managerNamespace)...)
}

// checkNoSecretRule lists, as the manager, every rule it holds in each
// namespace (SelfSubjectRulesReview): none may name Secrets or a wildcard.
func checkNoSecretRule(t *testing.T, cs *kubernetes.Clientset, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(),
			&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("rules review in %s: %v", ns, err)
		}
		for _, rule := range r.Status.ResourceRules {
			if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "*") ||
				slices.Contains(rule.Verbs, "*") {
				t.Errorf("in %s the manager holds %v", ns, rule)
			}
		}
	}
}

// watchNamespaces returns the sorted --watch-namespaces of the rendered
// Deployment.
func watchNamespaces(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, a := range containers[0].(map[string]any)["args"].([]any) {
			if v, ok := strings.CutPrefix(a.(string), "--watch-namespaces="); ok {
				ns := strings.Split(v, ",")
				sort.Strings(ns)
				return ns
			}
		}
	}
	t.Fatal("no --watch-namespaces in the Deployment")
	return nil
}

// TestVariantsRenderAndApply renders each shipped variant and applies it
// with a server-side dry run, and checks what makes each one what it says.
func TestVariantsRenderAndApply(t *testing.T) {
	t.Run("namespaced", func(t *testing.T) {
		g := NewWithT(t)
		objs := render(t, "config/namespaced")
		watched := watchNamespaces(t, objs)
		ensureNamespaces(t, watched...)
		dryRunApply(t, objs)

		// No ClusterRole or ClusterRoleBinding for the controller; one Role
		// and RoleBinding per watched namespace, each granting exactly the
		// rules generated from the controller's markers.
		generated := generatedRules(t)
		var roleNS, bindingNS []string
		for _, u := range objs {
			switch u.GetKind() {
			case "ClusterRoleBinding", "ClusterRole":
				g.Expect(u.GetName()).NotTo(Or(Equal("stationfleet-manager-role"), Equal("stationfleet-manager-rolebinding")),
					"the namespaced variant keeps the controller's cluster-wide grant")
			case "Role":
				if u.GetNamespace() == managerNamespace {
					continue // leader election
				}
				roleNS = append(roleNS, u.GetNamespace())
				var role rbacv1.Role
				g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &role)).To(Succeed())
				g.Expect(normalize(role.Rules)).To(Equal(generated), "Role in %s differs from config/rbac/role.yaml", u.GetNamespace())
			case "RoleBinding":
				if u.GetNamespace() == managerNamespace {
					continue
				}
				bindingNS = append(bindingNS, u.GetNamespace())
				var rb rbacv1.RoleBinding
				g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &rb)).To(Succeed())
				g.Expect(rb.Subjects).To(Equal([]rbacv1.Subject{{Kind: "ServiceAccount", Name: managerAccount, Namespace: managerNamespace}}))
				g.Expect(rb.RoleRef.Kind).To(Equal("Role"))
			}
		}
		sort.Strings(roleNS)
		sort.Strings(bindingNS)
		g.Expect(roleNS).To(Equal(watched), "one Role per namespace of --watch-namespaces")
		g.Expect(bindingNS).To(Equal(watched), "one RoleBinding per namespace of --watch-namespaces")
	})
	t.Run("networkpolicy", func(t *testing.T) {
		g := NewWithT(t)
		objs := render(t, "test/deploy/testdata/networkpolicy")
		dryRunApply(t, objs)
		policies := map[string]*unstructured.Unstructured{}
		for _, u := range objs {
			if u.GetKind() == "NetworkPolicy" {
				g.Expect(u.GetNamespace()).To(Equal(managerNamespace))
				policies[u.GetName()] = u
			}
		}
		g.Expect(policies).To(HaveLen(3))
		// Metrics only from namespaces labelled metrics=enabled.
		from, _, _ := unstructured.NestedSlice(policies["metrics-ingress"].Object, "spec", "ingress")
		g.Expect(from).To(HaveLen(1))
		g.Expect(from[0]).To(HaveKeyWithValue("from", ConsistOf(HaveKeyWithValue("namespaceSelector",
			HaveKeyWithValue("matchLabels", Equal(map[string]any{"metrics": "enabled"}))))))
		// Every named port a policy opens is a port of the manager's container.
		ports := containerPorts(t, objs)
		for _, name := range []string{"cups-ingress", "metrics-ingress"} {
			rules, _, _ := unstructured.NestedSlice(policies[name].Object, "spec", "ingress")
			for _, r := range rules {
				for _, p := range r.(map[string]any)["ports"].([]any) {
					g.Expect(ports).To(ContainElement(p.(map[string]any)["port"]), "%s opens a port the manager does not have", name)
				}
			}
		}
	})
}

// containerPorts returns the names of the manager container's ports.
func containerPorts(t *testing.T, objs []*unstructured.Unstructured) []any {
	t.Helper()
	var names []any
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, p := range containers[0].(map[string]any)["ports"].([]any) {
			names = append(names, p.(map[string]any)["name"])
		}
	}
	return names
}

// generatedRules reads config/rbac/role.yaml (controller-gen's output).
func generatedRules(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &role); err != nil {
		t.Fatal(err)
	}
	return normalize(role.Rules)
}

// normalize flattens rules to sorted "group/resource verb" lines, so that
// rules written in another order or grouping compare equal.
func normalize(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"/"+res+" "+v)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
