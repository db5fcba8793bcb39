package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/stationsim"
)

// TestHealthAfterTheUpdate: with a bake time, stations that report the new
// package are baking (InProgress) and count Updated only once the bake time
// passed; one whose update breaks its network-server connection comes back
// to CUPS at a steady spacing and ends Failed Unhealthy (rejected: every R;
// unreachable: every 450 s, scaled), one whose firmware falls back to the
// previous package ends Failed RolledBack. The status counts, the failures
// list, `kubectl get fwr` and `kubectl stationfleet status` say so.
//
// The stations follow a real station's schedule at 1/600 (R = 100 ms, an
// unreachable network server every 750 ms) and check in every 2 s; the bake
// time is 3 s, under two check-ins, as the API documents.
func TestHealthAfterTheUpdate(t *testing.T) {
	g := NewWithT(t)
	const (
		stations    = 8
		rejected    = 2
		unreachable = 4
		fellBack    = 6
		checkIn     = 2 * time.Second
		bake        = 3 * time.Second
		fallBack    = time.Second
	)
	// The kubectl plugin builds while the rollout runs.
	plugin := buildPlugin(t)
	sched := stationsim.DefaultSchedule().Scale(1.0 / 600)
	// When each station first reported the new package (its session's
	// start: the CUPS server saw it a moment later).
	var mu sync.Mutex
	reported := map[int]time.Time{}
	w := newWorld(t, worldOptions{stations: stations, checkIn: checkIn, schedule: sched,
		tweak: func(i int, sp *embedded.StationSpec) {
			switch i {
			case rejected:
				sp.Behavior.TCAfterUpdate = stationsim.TCRejected
			case unreachable:
				sp.Behavior.TCAfterUpdate = stationsim.TCUnreachable
			case fellBack:
				sp.Behavior.FallBackAfter = fallBack
			}
		},
		onResult: func(s *stationsim.Station, res stationsim.Result) {
			if res.PackageBefore != newPackage {
				return
			}
			i := int(s.EUI() - embedded.BaseEUI) // FleetSpec numbers them from BaseEUI
			mu.Lock()
			defer mu.Unlock()
			if _, ok := reported[i]; !ok {
				reported[i] = time.Now().Add(-res.Duration)
			}
		}})
	healthy := func(i int) bool { return i != rejected && i != unreachable && i != fellBack }

	r := w.rollout("r")
	r.Spec.Strategy.BakeTime = &metav1.Duration{Duration: bake}
	r.Spec.Strategy.MaxFailures = ptr.To(intstr.FromInt32(3))
	w.create(r)

	// Follow the status as the controller moves it.
	type snapshot struct {
		at time.Time
		st fwv1.FirmwareRolloutStatus
	}
	var seen []snapshot
	g.Eventually(func() fwv1.RolloutPhase {
		cur := w.get("r")
		seen = append(seen, snapshot{time.Now(), cur.Status})
		return cur.Status.Phase
	}, 45*time.Second, 50*time.Millisecond).Should(Equal(fwv1.PhaseCompleted), func() string { return statusString(w.get("r")) })
	final := w.get("r")

	// Baking before the bake time: stations in progress, none Updated yet.
	mu.Lock()
	first := time.Time{}
	for i, at := range reported {
		if healthy(i) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	g.Expect(reported).To(HaveLen(stations), "every station reported the new package once")
	mu.Unlock()
	bakingSeen := false
	for _, s := range seen {
		if s.st.Baking > 0 && s.st.Updated == 0 {
			bakingSeen = true
			g.Expect(s.st.InProgress).To(BeNumerically(">=", s.st.Baking), "baking stations count in inProgress")
		}
		if s.st.Updated > 0 {
			g.Expect(s.at.Sub(first)).To(BeNumerically(">=", bake),
				"a station counted Updated %s after the first report, before the bake time of %s", s.at.Sub(first), bake)
			break
		}
	}
	g.Expect(bakingSeen).To(BeTrue(), "the status showed baking stations and none Updated before the bake time")

	// How it ended: five Updated, two Unhealthy, one RolledBack.
	st := final.Status
	g.Expect(st.Targets).To(BeNumerically("==", stations))
	g.Expect(st.Updated).To(BeNumerically("==", 5), statusString(final))
	g.Expect(st.Failed).To(BeNumerically("==", 3), statusString(final))
	g.Expect(st.Baking+st.InProgress+st.Pending).To(BeZero(), statusString(final))
	g.Expect(st.Progress).To(Equal("5/8"))
	reasons := map[string]fwv1.FailureReason{}
	messages := map[string]string{}
	for _, f := range st.Failures {
		reasons[f.DeviceID], messages[f.DeviceID] = f.Reason, f.Message
	}
	g.Expect(reasons).To(Equal(map[string]fwv1.FailureReason{
		w.id(rejected):    fwv1.FailureUnhealthy,
		w.id(unreachable): fwv1.FailureUnhealthy,
		w.id(fellBack):    fwv1.FailureRolledBack,
	}), statusString(final))
	g.Expect(messages[w.id(rejected)]).To(ContainSubstring("came back to CUPS"))
	g.Expect(messages[w.id(unreachable)]).To(ContainSubstring("came back to CUPS"))
	g.Expect(messages[w.id(fellBack)]).To(And(ContainSubstring(newPackage), ContainSubstring(oldPackage), ContainSubstring("fell back")))
	for i := range stations {
		want := newPackage
		if i == fellBack {
			want = oldPackage
		}
		g.Expect(w.stations[i].Package()).To(Equal(want), "station %d", i)
	}
	g.Expect(w.stations[fellBack].Stats().FallBacks).To(BeEquivalentTo(1))
	g.Expect(w.stations[fellBack].Stats().UpdatesApplied).To(BeEquivalentTo(1), "the update is not sent again after the fallback")

	// Healthy stations stay Updated after their next check-ins.
	g.Consistently(func() int32 { return w.get("r").Status.Updated }, 2500*time.Millisecond, 250*time.Millisecond).Should(BeNumerically("==", 5))

	// kubectl shows the same.
	kubectl := kubectlBinary(t)
	row := getFWR(t, kubectl, w.ns, "r")
	g.Expect(row).To(HaveKeyWithValue("PHASE", "Completed"))
	g.Expect(row).To(HaveKeyWithValue("UPDATED", "5/8"))
	g.Expect(row["FAILED"]).To(failedCell(3), "FAILED column")

	out := kubectlStationfleet(t, kubectl, plugin(), "status", "r", "-n", w.ns)
	g.Expect(out).To(ContainSubstring("5 updated of 8 targets: 3 failed"))
	g.Expect(out).To(MatchRegexp(`%s\s+Unhealthy\s`, w.id(rejected)))
	g.Expect(out).To(MatchRegexp(`%s\s+Unhealthy\s`, w.id(unreachable)))
	g.Expect(out).To(MatchRegexp(`%s\s+RolledBack\s`, w.id(fellBack)))
}

// buildPlugin starts building the CLI as the kubectl plugin
// kubectl-stationfleet; the returned func waits for it and returns the
// directory that holds it.
func buildPlugin(t *testing.T) func() string {
	t.Helper()
	dir := t.TempDir()
	done := make(chan error, 1)
	var out []byte
	go func() {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-stationfleet"), "./cmd/stationfleet")
		build.Dir = moduleRoot
		var err error
		out, err = build.CombinedOutput()
		done <- err
	}()
	t.Cleanup(func() { <-done })
	var err error
	waited := false
	return func() string {
		t.Helper()
		if !waited {
			err, waited = <-done, true
			done <- err // for the cleanup
		}
		if err != nil {
			t.Fatalf("go build ./cmd/stationfleet: %v\n%s", err, out)
		}
		return dir
	}
}

// kubectlStationfleet runs `kubectl stationfleet ARGS` with the plugin in
// dir on kubectl's PATH, and returns its output.
func kubectlStationfleet(t *testing.T, kubectl, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"stationfleet"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+kubeconfigPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl stationfleet %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	t.Logf("kubectl stationfleet %v:\n%s", args, stdout.String())
	return stdout.String()
}
