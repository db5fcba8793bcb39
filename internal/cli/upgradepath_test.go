package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/iothub/hubsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestUpgradePathShown: `status` shows a rollout's firmware.upgradeFrom and
// how many stations were skipped as not on the upgrade path; `stations`
// shows each one Skipped NotOnUpgradePath with what it reports, the one the
// rollout never wrote and the one it wrote and put back alike.
func TestUpgradePathShown(t *testing.T) {
	g := NewWithT(t)
	ns := testEnv.Namespace(t)
	obj := newRollout(ns, "fw-2-0-7")
	obj.Spec.Firmware.UpgradeFrom = []string{"2.0.6", "2.0.6-hotfix"}
	st := completedStatus()
	msg := "47 of 50 stations updated, 1 failed, 2 skipped; 2 skipped as not on the upgrade path (firmware.upgradeFrom)"
	st.Conditions[1].Message = msg
	st.Updated, st.Skipped, st.SkippedNotOnUpgradePath, st.Progress = 47, 2, 2, "47/50"
	st.Batches[2].Size, st.Batches[2].Updated = 42, 42
	obj = createRollout(t, obj, st)
	kc := kubeconfig(t)

	r := runCLIWith(t, context.Background(), Options{}, "status", obj.Name, "--kubeconfig", kc, "-n", ns)
	g.Expect(r.code).To(Equal(0), r.errOut)
	golden(t, "status-upgrade-path.golden", strings.ReplaceAll(r.out, ns, "NAMESPACE"))

	hub := hubsim.Start(t, hubsim.Options{})
	uid := string(obj.UID)
	canary := map[string]any{"ring": "canary"}
	seen := &twin.Observation{LastSeen: testNow.Add(-time.Minute), Model: "linux", Package: "2.0.5", Keys: []uint32{testKeyCRC}}
	// Seen on 2.0.5 before the rollout: never written.
	seedStation(t, hub, "00000000000000F1", canary, nil, seen)
	// Written before CUPS saw it, refused, put back.
	refused := *seen
	refused.Refusal, refused.RefusedPackage, refused.RefusedRollout = twin.RefusalNotOnUpgradePath, "2.0.7", uid
	seedStation(t, hub, "00000000000000F2", canary, nil, &refused, twin.HistoryEntry{Rollout: ns + "/" + obj.Name, UID: uid, Batch: 2,
		Outcome: "Skipped", Reason: "NotOnUpgradePath", Restored: true, At: testNow.Add(-time.Hour)})
	// On the path, updated.
	seedStation(t, hub, "00000000000000F3", canary, &twin.Ownership{Rollout: ns + "/" + obj.Name, UID: uid, Batch: 1, WrittenAt: testNow.Add(-2 * time.Hour)},
		&twin.Observation{LastSeen: testNow.Add(-time.Minute), Model: "linux", Package: "2.0.7", Keys: []uint32{testKeyCRC}})
	connFile := filepath.Join(t.TempDir(), "iothub-connection-string")
	g.Expect(os.WriteFile(connFile, []byte(hub.ConnectionString()+"\n"), 0o600)).To(Succeed())

	r = runCLI(t, "stations", obj.Name, "--kubeconfig", kc, "-n", ns, "-o", "wide",
		"--iothub-connection-string-file", connFile, "--iothub-ca-file", hub.CAFile(), "--iothub-endpoint", hub.Addr())
	g.Expect(r.code).To(Equal(0), r.errOut)
	golden(t, "stations-upgrade-path.golden", strings.ReplaceAll(r.out, ns, "NAMESPACE"))
	g.Expect(r.out).NotTo(ContainSubstring("Failed"))
}

// TestPublishUpgradeFrom: publish --upgrade-from writes firmware.upgradeFrom
// into a manifest the API server accepts, and refuses, before uploading,
// what the API server would refuse, with the same words.
func TestPublishUpgradeFrom(t *testing.T) {
	g := NewWithT(t)
	keyDir, fw, _ := publishKeys(t)
	key := filepath.Join(keyDir, "sig-0.private.pem")
	dir := t.TempDir()
	publish := func(extra ...string) result {
		return runCLI(t, append([]string{"publish", fw, "--to", "file://" + dir + "/station.bin", "--key", key, "--package", "2.0.7", "--tag", "a=b"}, extra...)...)
	}
	for _, bad := range []struct{ args []string }{
		{[]string{"--upgrade-from", "2.0.6 "}},
		{[]string{"--upgrade-from", "2.0.6", "--upgrade-from", "2.0.7"}},
	} {
		r := publish(bad.args...)
		g.Expect(r.code).To(Equal(1))
		entries, err := os.ReadDir(dir)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(entries).To(BeEmpty(), "nothing is uploaded when the flags are wrong")
		if bad.args[1] == "2.0.6 " {
			g.Expect(r.errOut).To(ContainSubstring(`--upgrade-from: firmware.upgradeFrom[0] "2.0.6 ": firmware.upgradeFrom entries must not start or end with white space`))
		} else {
			g.Expect(r.errOut).To(ContainSubstring("--upgrade-from: firmware.upgradeFrom must not contain firmware.package"))
		}
	}
	r := publish("--upgrade-from", "2.0.6", "--upgrade-from", "2.0.6-hotfix,1")
	g.Expect(r.code).To(Equal(0), r.errOut)
	obj := applyManifest(t, []byte(r.out))
	g.Expect(obj.Spec.Firmware.UpgradeFrom).To(Equal([]string{"2.0.6", "2.0.6-hotfix,1"}))
}
