package e2e

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/testutil/proc"
)

// TestReportsReachTheManagerThatRunsTheRollout: two managers share one IoT
// Hub and watch different namespaces (--watch-namespaces). The stations
// poll the CUPS server of the manager that does not run their rollout. That
// manager never reconciles the rollout (no reconciler error in its log),
// and the rollout's own manager, whose periodic status resync is ten
// minutes away, still shows each station's outcome within a second of the
// station running the update: the first manager relays the reports through
// the rollout's annotation, a few writes for the whole batch, and the owner
// removes the annotation once it has read them.
func TestReportsReachTheManagerThatRunsTheRollout(t *testing.T) {
	g := NewWithT(t)
	const stations = 3
	elsewhere := testEnv.Namespace(t)
	metricsAddr := proc.FreeAddr(t)
	// w.mgr, which the stations poll, watches another namespace.
	w := newWorld(t, worldOptions{stations: stations, managerArgs: []string{
		"--watch-namespaces=" + elsewhere, "--metrics-bind-address=" + metricsAddr}})
	// The owner watches the rollout's namespace; no station polls it.
	owner := newManager(t, append(slices.Clone(w.args), "--watch-namespaces="+w.ns, "--rollout-status-resync=10m")...)
	owner.start()
	// Cleanups run last-registered first: these run while the owner lives.
	t.Cleanup(w.deleteRollouts)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("owner manager log, last %d lines:\n%s", logTailLines, owner.logTail(logTailLines))
		}
	})

	w.create(w.rollout("r"))
	allRunNew := func() bool {
		for _, s := range w.stations {
			if s.Package() != newPackage {
				return false
			}
		}
		return true
	}
	g.Eventually(allRunNew, 30*time.Second, 2*time.Millisecond).Should(BeTrue(), "the stations never ran %s", newPackage)
	installed := time.Now()
	var r *fwv1.FirmwareRollout
	g.Eventually(func() int32 {
		r = w.get("r")
		return r.Status.Updated
	}, 10*time.Second, 10*time.Millisecond).Should(BeNumerically("==", stations), func() string { return statusString(r) })
	latency := time.Since(installed)
	t.Logf("the last station ran %s; status showed every station Updated %v later", newPackage, latency)
	g.Expect(latency).To(BeNumerically("<=", time.Second), "a station's outcome must reach status within 1 s")
	r = w.waitPhase("r", fwv1.PhaseCompleted, 5*time.Second)

	// The owner took the reports: the annotation is gone.
	g.Eventually(func() map[string]string { return w.get("r").Annotations }, 5*time.Second, 50*time.Millisecond).
		ShouldNot(HaveKey(fwv1.ReportedStationsAnnotation))
	// A few writes for the batch, not one per poll.
	writes := relayWrites(t, metricsAddr)
	t.Logf("relay writes: %v", writes)
	g.Expect(writes["ok"]).To(BeNumerically(">=", 1))
	g.Expect(writes["ok"]).To(BeNumerically("<=", 4*stations), "relay writes for %d stations", stations)

	for _, m := range []*manager{w.mgr, owner} {
		g.Expect(m.logContains("Reconciler error")).To(BeFalse(), "a manager logged a reconciler error:\n%s", m.logTail(logTailLines))
		g.Expect(m.logContains("unknown namespace")).To(BeFalse(), "a manager reconciled outside its namespaces:\n%s", m.logTail(logTailLines))
	}
}

// relayWrites scrapes stationfleet_rollout_report_relay_writes_total by
// result from a manager's metrics endpoint.
func relayWrites(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	const prefix = `stationfleet_rollout_report_relay_writes_total{result="`
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		result, value, ok := strings.Cut(strings.TrimPrefix(line, prefix), `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err == nil {
			out[result] = v
		}
	}
	return out
}
