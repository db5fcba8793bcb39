package controlplane

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestStartWithoutBinaries: with no kube-apiserver and etcd where they are
// looked for, Start says which is missing, where, and how to get them.
func TestStartWithoutBinaries(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	_, err := Start(Options{AssetsDir: dir})
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.Is(err, ErrBinaryMissing)).To(BeTrue(), err.Error())
	g.Expect(err.Error()).To(ContainSubstring("kube-apiserver not found in " + dir))
	g.Expect(err.Error()).To(ContainSubstring("make tools"))
}

// TestStartKeepsEtcdDataAndWritesKubeconfig starts the control plane with
// etcd's data in a directory of the caller's (the demo's --keep-state): the
// CRD is installed, the kubeconfig written for an administrator reaches it,
// and a second start on the same directory finds what the first wrote.
func TestStartKeepsEtcdDataAndWritesKubeconfig(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "etcd")

	env, err := Start(Options{EtcdDataDir: data})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() }) // a no-op once stopped
	ns, err := env.CreateNamespace(ctx, "keep")
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(env.WriteKubeconfig("admin", kubeconfig)).To(Succeed())
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	c, err := client.New(cfg, client.Options{Scheme: NewScheme()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.List(ctx, &fwv1.FirmwareRolloutList{}, client.InNamespace(ns))).To(Succeed(), "the CRD is installed and the kubeconfig's user may list rollouts")
	g.Expect(env.Stop()).To(Succeed())

	again, err := Start(Options{EtcdDataDir: data})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = again.Stop() })
	g.Expect(again.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})).To(Succeed(), "the namespace the first start created")
	g.Expect(again.Stop()).To(Succeed())
}
