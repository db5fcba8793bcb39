package rules

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// after returns at plus each offset in seconds.
func after(at time.Time, secs ...float64) []time.Time {
	out := make([]time.Time, len(secs))
	for i, s := range secs {
		out[i] = at.Add(time.Duration(s * float64(time.Second)))
	}
	return out
}

// TestEvaluateHealthAfterTheUpdate: the cases of DESIGN.md section 3, with a
// bake time of one hour and the station's first report of "v2" at 10:02:03.
func TestEvaluateHealthAfterTheUpdate(t *testing.T) {
	written := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := time.Date(2026, 12, 1, 10, 2, 3, 0, time.UTC)
	bake := time.Hour
	params := func(now time.Time) Params {
		return Params{Package: "v2", MaxUpdateAttempts: 3, ProgressDeadline: 26 * time.Hour, BakeTime: bake, Now: now}
	}
	report := func(restarts int, polls ...time.Time) *twin.Report {
		if restarts == 0 {
			polls = append([]time.Time{at}, polls...) // the first sequence starts with the report
		}
		return &twin.Report{Rollout: "uid", Package: "v2", At: at, Polls: polls, Restarts: restarts}
	}
	station := func(pkg string, r *twin.Report) Station {
		return Station{Package: pkg, WrittenAt: written, OwnerUID: "uid", Report: r}
	}
	backAt := at.Add(90 * time.Second)
	cases := []struct {
		name    string
		s       Station
		now     time.Time
		state   fwv1.StationOutcome
		reason  fwv1.FailureReason
		baking  bool
		message string
	}{
		{"rejected by the network server: at once, then every 60 s",
			station("v2", report(0, after(at, 0.3, 60.3, 120.3)...)), at.Add(121 * time.Second),
			fwv1.OutcomeFailed, fwv1.FailureUnhealthy, false,
			`reported "v2" at 10:02:03Z, then came back to CUPS 3 times every 60s within the bake time (1h): it cannot reach its network server`},
		{"rejected, only the immediate poll and one more so far: not yet",
			station("v2", report(0, after(at, 0.3, 60.3)...)), at.Add(61 * time.Second),
			fwv1.OutcomeInProgress, "", true, ""},
		{"nothing listening: every 450 s",
			station("v2", report(0, after(at, 450, 900.4)...)), at.Add(901 * time.Second),
			fwv1.OutcomeFailed, fwv1.FailureUnhealthy, false,
			`reported "v2" at 10:02:03Z, then came back to CUPS 2 times every 7m30s within the bake time (1h): it cannot reach its network server`},
		{"a single irregular early poll (a restart) is not enough",
			station("v2", report(0, after(at, 700)...)), at.Add(50 * time.Minute),
			fwv1.OutcomeInProgress, "", true, ""},
		{"two restarts at irregular times are not enough",
			station("v2", report(0, after(at, 300, 1500)...)), at.Add(50 * time.Minute),
			fwv1.OutcomeInProgress, "", true, ""},
		{"polls after a credential or URI answer start a new sequence",
			// The server sent new credentials at 10:03:03 (a poll a minute
			// after the report); the reconnect 60 s later starts anew.
			station("v2", report(1, after(at, 120)...)), at.Add(3 * time.Minute),
			fwv1.OutcomeInProgress, "", true, ""},
		{"a restarted sequence that keeps a steady spacing is unhealthy",
			station("v2", report(1, after(at, 120, 180, 240)...)), at.Add(5 * time.Minute),
			fwv1.OutcomeFailed, fwv1.FailureUnhealthy, false, ""},
		{"fell back to the previous package",
			Station{Package: "v1", WrittenAt: written, OwnerUID: "uid", Refusal: twin.RefusalRolledBack, RefusedPackage: "v2",
				Report: &twin.Report{Rollout: "uid", Package: "v2", At: at, Back: "v1", BackAt: &backAt}},
			at.Add(2 * time.Minute), fwv1.OutcomeFailed, fwv1.FailureRolledBack, false,
			`reported "v2" at 10:02:03Z, then its previous package "v1" at 10:03:33Z: the firmware fell back to its old image`},
		{"healthy, one second before the bake ends: baking",
			station("v2", report(0)), at.Add(bake - time.Second), fwv1.OutcomeInProgress, "", true, ""},
		{"healthy, exactly at the bake's end: Updated",
			station("v2", report(0)), at.Add(bake), fwv1.OutcomeUpdated, "", false, ""},
		{"a baking station is not TimedOut",
			station("v2", report(0)), written.Add(26*time.Hour + time.Minute), fwv1.OutcomeUpdated, "", false, ""},
		{"counted Unhealthy earlier: final, with the message",
			Station{Package: "v2", WrittenAt: written, OwnerUID: "uid", Failed: string(fwv1.FailureUnhealthy),
				Report: report(0, after(at, 60, 120)...)}, at.Add(2 * bake),
			fwv1.OutcomeFailed, fwv1.FailureUnhealthy, false,
			`reported "v2" at 10:02:03Z, then came back to CUPS 2 times every 60s within the bake time (1h): it cannot reach its network server`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := Evaluate(tc.s, params(tc.now))
			g.Expect(o.State).To(Equal(tc.state), o.Message)
			g.Expect(o.Reason).To(Equal(string(tc.reason)))
			g.Expect(o.Baking).To(Equal(tc.baking))
			if tc.baking {
				g.Expect(o.Deadline).To(Equal(at.Add(bake)), "a baking station's deadline is the end of its bake time")
			}
			if tc.message != "" {
				g.Expect(o.Message).To(Equal(tc.message))
			}
		})
	}
}

// TestEvaluateWithoutBakeTime: without a bake time a station is Updated at
// its first report, whatever its polls.
func TestEvaluateWithoutBakeTime(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 2, 3, 0, time.UTC)
	s := Station{Package: "v2", OwnerUID: "uid", WrittenAt: at,
		Report: &twin.Report{Rollout: "uid", Package: "v2", At: at, Polls: after(at, 0, 60, 120)}}
	o := Evaluate(s, Params{Package: "v2", ProgressDeadline: time.Hour, Now: at})
	g.Expect(o.State).To(Equal(fwv1.OutcomeUpdated))
}

// TestNewStationScopesReport: another rollout's report is not this one's.
func TestNewStationScopesReport(t *testing.T) {
	g := NewWithT(t)
	r := &twin.Report{Rollout: "old", Package: "v2"}
	tw := &twin.Twin{DeviceID: "0000000000000001", Observation: &twin.Observation{Package: "v2", Report: r}}
	g.Expect(NewStation(tw, "new").Report).To(BeNil())
	g.Expect(NewStation(tw, "old").Report).To(Equal(r))
}

func TestSteadyGapAndShortDuration(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	_, _, ok := SteadyGap(after(at, 0, 60, 119))
	g.Expect(ok).To(BeTrue(), "1 s of jitter on a minute is the same gap")
	_, _, ok = SteadyGap(after(at, 0, 60, 150))
	g.Expect(ok).To(BeFalse())
	_, _, ok = SteadyGap(after(at, 0, 0.2, 60.2))
	g.Expect(ok).To(BeFalse(), "the start poll and the immediate poll after a rejection are not a spacing")
	g.Expect(ShortDuration(60 * time.Second)).To(Equal("60s"))
	g.Expect(ShortDuration(450 * time.Second)).To(Equal("7m30s"))
	g.Expect(ShortDuration(100*time.Millisecond)).To(Equal("100ms"), "a scaled-down schedule is not shown as 0s")
	g.Expect(ShortDuration(time.Hour)).To(Equal("1h"))
	g.Expect(ShortDuration(90 * time.Minute)).To(Equal("1h30m"))
	g.Expect(ShortDuration(10 * time.Minute)).To(Equal("10m"))
}
