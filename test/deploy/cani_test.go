package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrintCanIList prints what the manager's service account may do, as
// `kubectl auth can-i --list` shows it against the test API server, for the
// kustomize directory in $STATIONFLEET_CAN_I (for example config/default,
// config/namespaced, or an older checkout's config/default). It only prints,
// so it is skipped unless that variable is set:
//
//	STATIONFLEET_CAN_I=config/default go test -run TestPrintCanIList -v ./test/deploy
func TestPrintCanIList(t *testing.T) {
	dir := os.Getenv("STATIONFLEET_CAN_I")
	if dir == "" {
		t.Skip("set STATIONFLEET_CAN_I to a kustomize directory to print the manager's permissions")
	}
	if filepath.IsAbs(dir) {
		rel, err := filepath.Rel(moduleRoot(t), dir)
		if err != nil {
			t.Fatal(err)
		}
		dir = rel
	}
	objs := render(t, dir)
	namespaces := []string{managerNamespace, "team-a", "elsewhere"}
	ensureNamespaces(t, append(namespaces, "team-b")...) // the namespaces config/namespaced watches
	applyRBAC(t, objs)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := testEnv.WriteKubeconfig("can-i-admin", kubeconfig); err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(moduleRoot(t), "bin", "kubectl")
	var report strings.Builder
	for _, ns := range namespaces {
		cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "auth", "can-i", "--list", "--as="+managerUser, "-n", ns)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl auth can-i: %v\n%s", err, out)
		}
		report.WriteString("$ kubectl auth can-i --list --as=" + managerUser + " -n " + ns + "\n")
		report.Write(out)
		report.WriteString("\n")
	}
	t.Logf("%s (%s):\n%s", dir, strings.Join(namespaces, ", "), report.String())
}
