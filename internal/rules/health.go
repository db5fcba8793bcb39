package rules

import (
	"fmt"
	"strings"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Health after the update (strategy.bakeTime).
//
// A real Basics Station (2.0.6, DESIGN.md section 3) polls CUPS at every
// start, then only after CUPS_OKSYNC_INTV (24 h by default) while its
// network-server connection (TC) is up. When TC cannot be established it
// gives up on it and comes back to CUPS early, at a steady spacing: every
// CUPS_RESYNC_INTV (60 s) when the network server rejects the router, every
// 450 s (11 TC attempts with backoff, then 60 s) when nothing listens. So,
// with a bake time, a station that reported the rollout's package is:
//
//   - Failed Unhealthy as soon as the polls of one sequence (the CUPS
//     server's Report: the first report, then the later polls still on the
//     package) show two consecutive gaps of the same length, within
//     max(20%, 2 s): a steady spacing. A single irregular early poll (an
//     operator's or a watchdog's restart) is not enough. The CUPS server
//     starts a new sequence after an answer that sent the station anything
//     (URIs, credentials, firmware) or that it knows failed, because the
//     station's next poll is its reaction to that answer;
//   - Failed RolledBack when, after the package, it reported its previous
//     package again (the CUPS server records the refusal RolledBack and
//     does not send the update again);
//   - Updated once the bake time has passed since its first report;
//   - until then InProgress and Baking (never TimedOut), with the bake's
//     end as its Deadline.
//
// Limits, by design:
//
//   - A station configured with a short CUPS_OKSYNC_INTV polls at a steady
//     spacing too (its own interval), and the station does not report its
//     setting: keep bakeTime below twice that interval, or such stations
//     fail Unhealthy although they are healthy. The default 24 h allows any
//     bake time up to the API's limit of 168h only if stations keep it;
//     with 24 h, a bake time under 48h is safe.
//   - A network-server outage unrelated to the update makes updated
//     stations fail Unhealthy just the same. Telling the two apart would
//     mean comparing with stations not updated; that is not built.
//   - A station whose packets to the network server are dropped comes back
//     only about every 30 min, and one whose radio fails after router_config
//     never comes back early: a bake time shorter than an hour sees the
//     first rarely and the second never.

// Tolerance of "the same gap": the larger of a fraction of the gap and a
// floor for the jitter of a station's timers and of the network.
const (
	healthGapTolerance = 0.2
	healthGapFloor     = 2 * time.Second
)

// SteadyGap returns the gap of the first two consecutive equal gaps
// (within max(20%, 2 s) of the larger) between the times of seq, and the
// number of polls after the first, and false when there are none.
func SteadyGap(seq []time.Time) (time.Duration, int, bool) {
	for i := 0; i+2 < len(seq); i++ {
		a, b := seq[i+1].Sub(seq[i]), seq[i+2].Sub(seq[i+1])
		tol := time.Duration(float64(max(a, b)) * healthGapTolerance)
		tol = max(tol, healthGapFloor)
		if d := a - b; d <= tol && d >= -tol {
			return b, len(seq) - 1, true
		}
	}
	return 0, 0, false
}

// baked is the outcome, with a bake time, of a station that reports the
// rollout's package: see the comment on health after the update.
func baked(s Station, p Params) Outcome {
	r := s.Report
	if r == nil || r.Package != p.Package {
		// No record of the first report (a CUPS server older than the bake
		// time wrote the observation): counted as without a bake time, so
		// that the rollout does not wait for a record that never comes.
		return Outcome{State: fwv1.OutcomeUpdated}
	}
	if _, _, ok := SteadyGap(r.Polls); ok {
		return failed(fwv1.FailureUnhealthy, s, p)
	}
	end := r.At.Add(p.BakeTime)
	if !p.Now.Before(end) {
		return Outcome{State: fwv1.OutcomeUpdated}
	}
	return Outcome{State: fwv1.OutcomeInProgress, Baking: true, Deadline: end,
		Message: fmt.Sprintf("reported %q at %s; baking until %s", r.Package, clock(r.At), clock(end))}
}

// unhealthyMessage says what a station that kept coming back did.
func unhealthyMessage(s Station, p Params) string {
	r := s.Report
	if r == nil {
		return fmt.Sprintf("reported %q, then came back to CUPS at a steady spacing within the bake time: it cannot reach its network server", p.Package)
	}
	gap, n, ok := SteadyGap(r.Polls)
	if !ok {
		return fmt.Sprintf("reported %q at %s, then came back to CUPS at a steady spacing within the bake time: it cannot reach its network server",
			r.Package, clock(r.At))
	}
	return fmt.Sprintf("reported %q at %s, then came back to CUPS %d times every %s within the bake time (%s): it cannot reach its network server",
		r.Package, clock(r.At), n, ShortDuration(gap), ShortDuration(p.BakeTime))
}

// rolledBackMessage says what a station that fell back did.
func rolledBackMessage(s Station, p Params) string {
	r := s.Report
	if r == nil || r.Back == "" || r.BackAt == nil {
		return fmt.Sprintf("reported %q, then its previous package %q: the firmware fell back to its old image", p.Package, s.Package)
	}
	return fmt.Sprintf("reported %q at %s, then its previous package %q at %s: the firmware fell back to its old image",
		r.Package, clock(r.At), r.Back, clock(*r.BackAt))
}

// clock formats a time of day in UTC, as in status messages.
func clock(t time.Time) string { return t.UTC().Format("15:04:05Z") }

// ShortDuration formats d to the second without zero units: 60s, 7m30s,
// 1h, 1h30m.
func ShortDuration(d time.Duration) string {
	if d > 0 && d < time.Second {
		// Scaled-down schedules (tests, the demo) poll sub-second.
		return d.Round(time.Millisecond).String()
	}
	d = d.Round(time.Second)
	if d < 2*time.Minute {
		return fmt.Sprintf("%ds", int(d/time.Second))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// scopedReport is the station's Report when it belongs to the rollout uid.
func scopedReport(ob *twin.Observation, uid string) *twin.Report {
	if ob == nil || ob.Report == nil || ob.Report.Rollout != uid {
		return nil
	}
	return ob.Report
}
