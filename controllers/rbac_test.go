package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

// runAsManagerAccount restarts the world's manager as a service account
// that holds only the rules of config/rbac/role.yaml (generated from the
// controller's RBAC markers), bound in the world's namespace, as
// config/namespaced grants them.
func (w *world) runAsManagerAccount() {
	g := NewWithT(w.t)
	ctx := context.Background()
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	b, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	g.Expect(yaml.Unmarshal(b, role)).To(Succeed())
	role.ObjectMeta = metav1.ObjectMeta{Name: "stationfleet-manager-" + w.ns}
	g.Expect(testEnv.Client.Create(ctx, role)).To(Succeed())
	w.t.Cleanup(func() { _ = testEnv.Client.Delete(context.Background(), role) })
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "manager"}}
	g.Expect(testEnv.Client.Create(ctx, sa)).To(Succeed())
	g.Expect(testEnv.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: w.ns}},
	})).To(Succeed())

	w.killManager()
	w.cfg = rest.CopyConfig(testEnv.Config)
	w.cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + w.ns + ":" + sa.Name}
	w.startManager()
}

// TestManagerRunsWithItsOwnRBAC: a manager that holds only the permissions
// it ships with (no Secrets; ConfigMaps get only) reads the publicKeyRef
// ConfigMap, verifies the signature and completes the rollout. Reading the
// ConfigMap through the cache would need list and watch on every ConfigMap
// and leave the rollout waiting forever.
func TestManagerRunsWithItsOwnRBAC(t *testing.T) {
	g := NewWithT(t)
	w := newWorld(t, 3, nil)
	w.runAsManagerAccount()
	g.Expect(testEnv.Client.Create(context.Background(), configMapWithKey(w.ns, "fw-signing", w.signer.SigKey))).To(Succeed())
	r := w.rollout("r")
	r.Spec.Firmware.PublicKeyRef = &fwv1.ConfigMapKeySelector{Name: "fw-signing", Key: "sig-0.key"}
	w.create(r)
	got := w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)
	verified := meta.FindStatusCondition(got.Status.Conditions, fwv1.ConditionFirmwareVerified)
	g.Expect(verified).NotTo(BeNil())
	g.Expect(verified.Message).To(Equal("the firmware blob exists and its signature verifies with the given key"))
	g.Expect(got.Status.Updated).To(BeNumerically("==", 3))
}
