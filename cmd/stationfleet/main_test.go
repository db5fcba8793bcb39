package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/testutil/kubetest"
)

var testEnv *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Main(m, &testEnv))
}

// TestKubectlPlugin builds the binary as kubectl-stationfleet and runs it the
// way users do: through the pinned kubectl's plugin mechanism.
func TestKubectlPlugin(t *testing.T) {
	g := NewWithT(t)
	root, err := kubetest.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	kubectl := filepath.Join(root, "bin", "kubectl")
	g.Expect(kubectl).To(BeAnExistingFile(), "run `make tools` to build the pinned kubectl")

	binDir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(binDir, "kubectl-stationfleet"), ".")
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), string(out))

	user, err := testEnv.Environment.AddUser(envtest.User{Name: "plugin-user", Groups: []string{"system:masters"}}, nil)
	g.Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(kcFile, kc, 0o600)).To(Succeed())

	ns := testEnv.Namespace(t)
	one := intstr.FromInt32(1)
	obj := &fwv1.FirmwareRollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fw-plugin"},
		Spec: fwv1.FirmwareRolloutSpec{
			Firmware: fwv1.FirmwareSpec{Package: "2.0.7", URL: "file:///srv/firmware/station.bin",
				Signature: "MEUCIQDn3kRlb1JzJrZ0YW5kYXJkIGJhc2U2NCBzaWduYXR1cmUgZm9yIHRlc3Rz", KeyChecksum: 1},
			Selector: fwv1.StationSelector{DeviceIDs: []string{"001122FFFE334455"}},
			Strategy: fwv1.RolloutStrategy{Steps: []fwv1.RolloutStep{{Batch: &one}}},
		},
	}
	g.Expect(testEnv.Client.Create(context.Background(), obj)).To(Succeed())

	run := func(args ...string) (string, error) {
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+kcFile)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out2, err := run("plugin", "list")
	g.Expect(err).NotTo(HaveOccurred(), out2)
	g.Expect(out2).To(ContainSubstring("kubectl-stationfleet"))

	// kubectl hands the context and namespace flags over to the plugin.
	status, err := run("stationfleet", "status", "fw-plugin", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred(), status)
	g.Expect(status).To(ContainSubstring("Rollout:    " + ns + "/fw-plugin"))

	pause, err := run("stationfleet", "pause", "fw-plugin", "--namespace", ns)
	g.Expect(err).NotTo(HaveOccurred(), pause)
	g.Expect(pause).To(ContainSubstring("Resume with `kubectl stationfleet resume fw-plugin`"))

	// Failures exit non-zero with a message saying what to do.
	again, err := run("stationfleet", "pause", "fw-plugin", "-n", ns)
	g.Expect(err).To(HaveOccurred())
	g.Expect(again).To(ContainSubstring("error: rollout fw-plugin is already paused"))
	var exit *exec.ExitError
	g.Expect(err).To(BeAssignableToTypeOf(exit))
	g.Expect(strings.TrimSpace(again)).NotTo(BeEmpty())
}
