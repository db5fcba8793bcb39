package rules

import (
	"fmt"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// The API's defaults (kubebuilder defaults of progressDeadline and
// maxUpdateAttempts), for a rollout stored without them.
const (
	DefaultProgressDeadline  = 26 * time.Hour
	DefaultMaxUpdateAttempts = 3
)

// Outcome is a station's state within a rollout, with the reason and
// message for failures and skips.
type Outcome struct {
	State fwv1.StationOutcome
	// Reason is the failure reason (a fwv1.FailureReason) or the skip
	// reason (a fwv1.SkipReason), empty otherwise.
	Reason  string
	Message string
	// Deadline is when an in-progress station times out, or, while it
	// bakes, when its bake time ends.
	Deadline time.Time
	// Baking is true for an InProgress station that reported the package
	// and whose bake time has not passed.
	Baking bool
}

// Params is what outcome evaluation needs from the rollout.
type Params struct {
	Package           string
	MaxUpdateAttempts int
	ProgressDeadline  time.Duration
	// UpgradeFrom is firmware.upgradeFrom: the packages the firmware may be
	// installed over, empty for any.
	UpgradeFrom []string
	// BakeTime is strategy.bakeTime, 0 when off.
	BakeTime time.Duration
	// Halted is true while the rollout is Halted: it writes no station, so
	// a station another rollout owns is Skipped, whether or not that
	// rollout is still active (see Classify).
	Halted bool
	Now    time.Time
}

// ParamsFor returns the evaluation parameters of a rollout at now.
func ParamsFor(obj *fwv1.FirmwareRollout, now time.Time) Params {
	p := Params{Package: obj.Spec.Firmware.Package, MaxUpdateAttempts: DefaultMaxUpdateAttempts,
		ProgressDeadline: DefaultProgressDeadline, Now: now, UpgradeFrom: obj.Spec.Firmware.UpgradeFrom}
	if a := obj.Spec.Strategy.MaxUpdateAttempts; a != nil {
		p.MaxUpdateAttempts = int(*a)
	}
	if d := obj.Spec.Strategy.ProgressDeadline; d != nil {
		p.ProgressDeadline = d.Duration
	}
	if b := obj.Spec.Strategy.BakeTime; b != nil && b.Duration > 0 {
		p.BakeTime = b.Duration
	}
	p.Halted = obj.Status.Phase == fwv1.PhaseHalted
	return p
}

// failureForRefusal is the one table from the reason the CUPS server
// records when it withholds an update (twin.Refusal*) to the failure reason
// the rollout counts (fwv1.Failure*).
var failureForRefusal = map[string]fwv1.FailureReason{
	twin.RefusalKeyMismatch:   fwv1.FailureKeyMismatch,
	twin.RefusalModelMismatch: fwv1.FailureModelMismatch,
	twin.RefusalNotApplied:    fwv1.FailureNotApplied,
	twin.RefusalRolledBack:    fwv1.FailureRolledBack,
}

// FailureForRefusal returns the failure reason for a CUPS refusal, and
// false for a refusal this version does not know (a newer CUPS server's,
// or a hand edit): that one is ignored, and the station stays in progress
// until it reports the package or times out. Counting it under a reason the
// API does not list would make the API server refuse the rollout's status.
func FailureForRefusal(refusal string) (fwv1.FailureReason, bool) {
	f, ok := failureForRefusal[refusal]
	return f, ok
}

// Classify decides a station's outcome for the rollout uid:
//
//   - owned by the rollout: Evaluate;
//   - let go by it after it counted the station Updated or Failed (the
//     twin's history, Station.Counted): that outcome, whoever owns the
//     station now (a rollout's status is its history);
//   - owned by another rollout that holds it (Holds: active, or not known
//     here): Skipped;
//   - owned by another rollout while this one is Halted: Skipped. A halted
//     rollout holds the stations it wrote, not the ones it never wrote: a
//     later rollout may take those (an operator's fixed firmware while the
//     halted one waits for a person), and the halted rollout's status then
//     agrees with the twins. Should the halt be lifted, a station whose
//     owner is no longer active is Pending again, and written;
//   - seen by CUPS on a package off the rollout's upgrade path: Skipped
//     (it is not written);
//   - otherwise Pending (not yet written).
func Classify(s Station, uid string, active map[string]bool, p Params) Outcome {
	switch {
	case s.OwnerUID == uid:
		return Evaluate(s, p)
	case s.Counted != "":
		return counted(s)
	case Holds(active, s.OwnerUID):
		msg := "owned by the active rollout " + s.OwnerName
		if _, known := active[s.OwnerUID]; !known {
			msg = "owned by the rollout " + s.OwnerName + ", which this process cannot read; it keeps its stations"
		}
		return Outcome{State: fwv1.OutcomeSkipped, Reason: string(fwv1.SkipOwnedElsewhere), Message: msg}
	case s.OwnerUID != "" && p.Halted:
		return Outcome{State: fwv1.OutcomeSkipped, Reason: string(fwv1.SkipOwnedElsewhere),
			Message: "owned by the rollout " + s.OwnerName + "; a halted rollout does not take stations over"}
	case OffUpgradePath(s.Seen, s.Package, p.Package, p.UpgradeFrom):
		return notOnUpgradePath(s, p)
	default:
		return Outcome{State: fwv1.OutcomePending}
	}
}

// counted is the outcome a rollout kept for a station it let go.
func counted(s Station) Outcome {
	o := Outcome{State: fwv1.StationOutcome(s.Counted), Reason: s.CountedReason,
		Message: "counted " + s.Counted + " by this rollout before it let the station go"}
	if s.OwnerName != "" {
		o.Message = "counted " + s.Counted + " by this rollout; now owned by " + s.OwnerName
	}
	if s.CountedReason != "" {
		o.Message += " (" + s.CountedReason + ")"
	}
	return o
}

// Evaluate decides the outcome of a station the rollout has written:
//
//   - the ownership record says Failed: Failed with that reason, final (the
//     controller recorded it when it first counted the failure); a reason
//     the API does not list (a newer controller's) is ignored;
//   - the station reports the rollout's package: Updated, or with a bake
//     time, InProgress (Baking) until the bake time passed, and Failed
//     Unhealthy when it kept coming back to CUPS (see health.go);
//   - CUPS withheld the update from it, for this rollout, because of
//     KeyMismatch, ModelMismatch, NotApplied (asked again after
//     maxUpdateAttempts sends) or RolledBack (reported its previous
//     package within the bake time): Failed with that reason;
//   - CUPS withheld the update from it, for this rollout, because it
//     reports a package off firmware.upgradeFrom: Skipped NotOnUpgradePath
//     (the controller then puts its twin back as it was);
//   - progressDeadline passed since it last made progress (ProgressSince:
//     its twin was written, or the update was last sent to it): Failed
//     TimedOut;
//   - else InProgress.
func Evaluate(s Station, p Params) Outcome {
	if r := fwv1.FailureReason(s.Failed); r.Known() {
		return failed(r, s, p)
	}
	refusal, refused := FailureForRefusal(s.Refusal)
	_, skipped := SkipForRefusal(s.Refusal)
	switch {
	case s.Package == p.Package && p.BakeTime > 0:
		return baked(s, p)
	case s.Package == p.Package:
		return Outcome{State: fwv1.OutcomeUpdated}
	case refused && s.RefusedPackage == p.Package:
		return failed(refusal, s, p)
	case skipped && s.RefusedPackage == p.Package:
		return notOnUpgradePath(s, p)
	case s.ServedPackage == p.Package && s.UpdatesServed > p.MaxUpdateAttempts:
		// Recorded by a CUPS server that did not know the limit (an
		// ownership record written before it carried maxUpdateAttempts).
		return failed(fwv1.FailureNotApplied, s, p)
	}
	deadline := ProgressSince(s, p).Add(p.ProgressDeadline)
	if !s.WrittenAt.IsZero() && !p.Now.Before(deadline) {
		return failed(fwv1.FailureTimedOut, s, p)
	}
	return Outcome{State: fwv1.OutcomeInProgress, Deadline: deadline}
}

// ProgressSince is when the station last made progress in the rollout:
// the later of its twin being written and the rollout's update last being
// sent to it (a send counts only when the whole answer went out while the
// station waited for it). The progress deadline runs from it, so that a
// station is not blamed for time it spent waiting on a slow manager, IoT
// Hub or blob store: one served late still has the whole deadline to
// install the update and report it.
func ProgressSince(s Station, p Params) time.Time {
	if s.ServedPackage == p.Package && s.ServedAt.After(s.WrittenAt) {
		return s.ServedAt
	}
	return s.WrittenAt
}

// AttemptsUsedUp reports whether a station that was sent a rollout's
// update served times may not be sent it again: maxUpdateAttempts is the
// number of sends (0: no limit recorded). The CUPS server asks it before
// each send; the station's next ask then records NotApplied.
func AttemptsUsedUp(served, maxUpdateAttempts int) bool {
	return maxUpdateAttempts > 0 && served >= maxUpdateAttempts
}

// failed is the Failed outcome for reason, with a message for a person.
func failed(reason fwv1.FailureReason, s Station, p Params) Outcome {
	o := Outcome{State: fwv1.OutcomeFailed, Reason: string(reason)}
	switch reason {
	case fwv1.FailureKeyMismatch:
		o.Message = "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware"
	case fwv1.FailureModelMismatch:
		o.Message = "the station reports another model than firmware.model; it was not sent the firmware"
	case fwv1.FailureNotApplied:
		n := p.MaxUpdateAttempts
		if s.ServedPackage == p.Package && s.UpdatesServed > 0 {
			n = s.UpdatesServed
		}
		o.Message = fmt.Sprintf("served the update %d times, the station still reports package %q", n, s.Package)
	case fwv1.FailureUnhealthy:
		o.Message = unhealthyMessage(s, p)
	case fwv1.FailureRolledBack:
		o.Message = rolledBackMessage(s, p)
	case fwv1.FailureTimedOut:
		o.Message = fmt.Sprintf("no report of package %q within %s of the twin being written", p.Package, p.ProgressDeadline)
		if ProgressSince(s, p).After(s.WrittenAt) {
			o.Message = fmt.Sprintf("no report of package %q within %s of the update last being sent", p.Package, p.ProgressDeadline)
		}
		if s.Package != "" {
			o.Message += fmt.Sprintf("; last reported %q", s.Package)
		}
	}
	return o
}
