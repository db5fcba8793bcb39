package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	"k8s.io/apimachinery/pkg/api/meta"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/signing"
)

// TestKubectlGetShowsProgress: `kubectl get fwr`, from the real kubectl,
// shows the rollout's phase, updated/targets, failures, current step and
// readiness as they are, while paused and once completed; `kubectl
// annotate` resumes it.
func TestKubectlGetShowsProgress(t *testing.T) {
	g := NewWithT(t)
	kubectl := kubectlBinary(t)
	other, err := signing.GenerateKey()
	g.Expect(err).NotTo(HaveOccurred())
	otherKey, err := signing.MarshalSigKey(&other.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	// Station 1 holds only a key that does not verify the firmware: it
	// fails with KeyMismatch wherever it falls.
	w := newWorld(t, worldOptions{stations: 8, tweak: func(i int, sp *embedded.StationSpec) {
		if i == 1 {
			sp.SigKeys = [][]byte{otherKey}
		}
	}})
	w.create(w.rollout("r", batch("3"), pauseUntilResumed(), batch("100%")))

	r := w.waitPhase("r", fwv1.PhasePaused, 30*time.Second)
	row := getFWR(t, kubectl, w.ns, "r")
	g.Expect(row).To(HaveKeyWithValue("NAME", "r"))
	g.Expect(row).To(HaveKeyWithValue("PHASE", "Paused"))
	g.Expect(row).To(HaveKeyWithValue("UPDATED", fmt.Sprintf("%d/8", r.Status.Updated)))
	g.Expect(row["FAILED"]).To(failedCell(r.Status.Failed), "FAILED column")
	g.Expect(row).To(HaveKeyWithValue("STEP", "2"))
	g.Expect(row).To(HaveKeyWithValue("READY", "False"))
	g.Expect(r.Status.Updated + r.Status.Failed).To(BeNumerically("==", 3))

	// Resume as a person would, with kubectl.
	out, err := exec.Command(kubectl, "--kubeconfig="+kubeconfigPath, "-n", w.ns, "annotate", "fwr", "r",
		fwv1.ResumeAnnotation+"="+time.Now().UTC().Format(time.RFC3339Nano)).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl annotate: %s", out)

	r = w.waitPhase("r", fwv1.PhaseCompleted, 30*time.Second)
	g.Expect(r.Status.Updated).To(BeNumerically("==", 7), statusString(r))
	g.Expect(r.Status.Failed).To(BeNumerically("==", 1), statusString(r))
	g.Expect(r.Status.Failures).To(HaveLen(1))
	g.Expect(r.Status.Failures[0].DeviceID).To(Equal(w.id(1)))
	g.Expect(r.Status.Failures[0].Reason).To(Equal(fwv1.FailureKeyMismatch))
	g.Expect(meta.IsStatusConditionTrue(r.Status.Conditions, fwv1.ConditionReady)).To(BeTrue(), statusString(r))

	row = getFWR(t, kubectl, w.ns, "r")
	g.Expect(row).To(HaveKeyWithValue("PHASE", "Completed"))
	g.Expect(row).To(HaveKeyWithValue("UPDATED", "7/8"))
	g.Expect(row["FAILED"]).To(failedCell(1), "FAILED column")
	g.Expect(row).To(HaveKeyWithValue("STEP", "3"))
	g.Expect(row).To(HaveKeyWithValue("READY", "True"))
	g.Expect(row).To(HaveKey("AGE"))
	age, err := time.ParseDuration(row["AGE"])
	g.Expect(err).NotTo(HaveOccurred(), "AGE %q", row["AGE"])
	g.Expect(age).To(BeNumerically("<", 5*time.Minute))

	// The twins agree with the table: seven hold 2.0.7 and run it, the
	// key-mismatched one desires 2.0.7 but was never sent it.
	for i := range w.specs {
		g.Expect(w.twinOf(i).CUPS.Firmware.Equal(firmwareOf(w.new))).To(BeTrue(), "station %d", i)
		want := newPackage
		if i == 1 {
			want = oldPackage
		}
		g.Expect(w.stations[i].Package()).To(Equal(want), "station %d", i)
	}
	g.Expect(w.twinOf(1).Observation).NotTo(BeNil())
	g.Expect(w.twinOf(1).Observation.Refusal).To(Equal(string(fwv1.FailureKeyMismatch)))
}

// failedCell matches kubectl's FAILED cell for n failed stations: a number,
// 0 included (status.failed is never omitted).
func failedCell(n int32) types.GomegaMatcher {
	return Equal(strconv.Itoa(int(n)))
}

// kubectlBinary returns the kubectl that `make tools` builds: in
// $KUBEBUILDER_ASSETS, else in the module's bin/. It fails the test when
// there is none.
func kubectlBinary(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, dir := range []string{os.Getenv("KUBEBUILDER_ASSETS"), filepath.Join(moduleRoot, "bin")} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "kubectl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		tried = append(tried, p)
	}
	t.Fatalf("kubectl not found (tried %s): run `make tools` to build the pinned kubectl into bin/", strings.Join(tried, ", "))
	return ""
}

// getFWR runs `kubectl get fwr <name>` and returns its one row keyed by the
// column headers.
func getFWR(t *testing.T, kubectl, ns, name string) map[string]string {
	t.Helper()
	cmd := exec.Command(kubectl, "--kubeconfig="+kubeconfigPath, "-n", ns, "get", "fwr", name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl get fwr: %v\n%s", err, stderr.String())
	}
	t.Logf("kubectl get fwr %s:\n%s", name, out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get fwr printed %d lines, want a header and one row:\n%s", len(lines), out)
	}
	// kubectl aligns every cell under its header, and prints an empty cell
	// for a field the object lacks: cut the row at the headers' offsets.
	header, line := lines[0], lines[1]
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	row := map[string]string{}
	for k, start := range starts {
		end := len(line)
		if k+1 < len(starts) {
			end = min(starts[k+1], len(line))
		}
		name := strings.Fields(header[start:])[0]
		cell := ""
		if start < len(line) {
			cell = strings.TrimSpace(line[start:end])
		}
		row[name] = cell
	}
	return row
}
