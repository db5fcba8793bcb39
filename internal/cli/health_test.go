package cli

import (
	"bytes"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
)

// TestStatusShowsBaking: the status view says how many stations bake and
// what the bake time does.
func TestStatusShowsBaking(t *testing.T) {
	g := NewWithT(t)
	obj := newRollout("ns", "fw-2-0-7")
	obj.Spec.Strategy.BakeTime = &metav1.Duration{Duration: time.Hour}
	obj.Status = progressingStatus()
	obj.Status.Baking = 2
	var out bytes.Buffer
	printer{now: testNow, cmd: "stationfleet"}.renderStatus(&out, obj)
	g.Expect(out.String()).To(ContainSubstring("Stations:   3 updated of 50 targets: 1 failed, 2 in progress (2 baking), 44 pending, 0 skipped"))
	g.Expect(out.String()).To(ContainSubstring("Bake time:  1h: a station is Updated that long after it reports the package, unless it keeps coming back to CUPS (Unhealthy) or falls back (RolledBack)"))
}

// TestStationsShowBaking: the stations view shows a baking station as such,
// with until when, and an Unhealthy one with what it did.
func TestStationsShowBaking(t *testing.T) {
	g := NewWithT(t)
	until := testNow.Add(40 * time.Minute)
	rows := []stationRow{
		{id: "00000000000000A1", batch: 1, pkg: "2.0.7", served: 1, lastSeen: testNow.Add(-20 * time.Minute),
			outcome: rules.StationOutcome{State: fwv1.OutcomeInProgress, Baking: true, Deadline: until,
				Message: `reported "2.0.7" at 14:49:26Z; baking until 15:49:26Z`}},
		{id: "00000000000000A2", batch: 1, pkg: "2.0.7", served: 1, lastSeen: testNow.Add(-time.Minute),
			outcome: rules.StationOutcome{State: fwv1.OutcomeFailed, Reason: string(fwv1.FailureUnhealthy),
				Message: `reported "2.0.7" at 14:49:26Z, then came back to CUPS 3 times every 60s within the bake time (1h): it cannot reach its network server`}},
	}
	var out bytes.Buffer
	writeStations(&out, rows, "", true, printer{now: testNow})
	g.Expect(out.String()).To(MatchRegexp(`00000000000000A1  1 +InProgress  baking until 2026-03-14T15:49:26Z  2\.0\.7 +1 +20m ago +reported "2\.0\.7" at 14:49:26Z; baking until 15:49:26Z: Updated in 40m if it does not come back to CUPS or fall back`))
	g.Expect(out.String()).To(MatchRegexp(`00000000000000A2  1 +Failed +Unhealthy +2\.0\.7 .*came back to CUPS 3 times every 60s`))
}
