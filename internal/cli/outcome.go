package cli

import (
	"fmt"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Defaults of the API (the kubebuilder defaults of progressDeadline and
// maxUpdateAttempts), used when a rollout was stored without them.
const (
	defaultProgressDeadline  = 26 * time.Hour
	defaultMaxUpdateAttempts = 3
)

// stationOutcome is one station's state within a rollout, as the controller
// derives it from the station's twin.
type stationOutcome struct {
	// State is Pending, InProgress, Updated, Failed or Skipped.
	State fwv1.StationOutcome
	// Reason is the failure or skip reason, empty otherwise.
	Reason string
	// Message explains a failure or skip.
	Message string
	// Deadline is when an in-progress station times out.
	Deadline time.Time
}

// outcomeParams is what the outcome rule needs from the rollout.
type outcomeParams struct {
	uid               string
	pkg               string
	maxUpdateAttempts int
	progressDeadline  time.Duration
	now               time.Time
	// active holds the UIDs of rollouts that still hold their stations
	// (neither Completed nor Aborted, not being deleted), and names them.
	active map[string]bool
}

func newOutcomeParams(obj *fwv1.FirmwareRollout, active map[string]bool, now time.Time) outcomeParams {
	p := outcomeParams{uid: string(obj.UID), pkg: obj.Spec.Firmware.Package, maxUpdateAttempts: defaultMaxUpdateAttempts,
		progressDeadline: defaultProgressDeadline, now: now, active: active}
	if a := obj.Spec.Strategy.MaxUpdateAttempts; a != nil {
		p.maxUpdateAttempts = int(*a)
	}
	if d := obj.Spec.Strategy.ProgressDeadline; d != nil {
		p.progressDeadline = d.Duration
	}
	return p
}

// evaluateTwin classifies a station the rollout selects or owns, following
// the controller's rule (controllers.evaluate and loadStations) exactly:
//
//   - owned by this rollout: Updated when it reports the rollout's package;
//     Failed KeyMismatch / ModelMismatch when CUPS withheld this package for
//     that reason; Failed NotApplied when served more than maxUpdateAttempts
//     times and still on another package; Failed TimedOut once
//     progressDeadline passed since its twin was written; else InProgress;
//   - owned by another active rollout: Skipped (OwnedByAnotherRollout);
//   - otherwise: Pending (not yet written).
func evaluateTwin(t *twin.Twin, p outcomeParams) stationOutcome {
	own := t.Ownership
	switch {
	case own == nil || own.UID == "":
		return stationOutcome{State: fwv1.OutcomePending}
	case own.UID != p.uid && p.active[own.UID]:
		return stationOutcome{State: fwv1.OutcomeSkipped, Reason: fwv1.SkipOwnedElsewhere, Message: "owned by the active rollout " + own.Rollout}
	case own.UID != p.uid:
		return stationOutcome{State: fwv1.OutcomePending}
	}
	var ob twin.Observation
	if t.Observation != nil {
		ob = *t.Observation
	}
	switch {
	case ob.Package == p.pkg:
		return stationOutcome{State: fwv1.OutcomeUpdated}
	case ob.Refusal == twin.RefusalKeyMismatch && ob.RefusedPackage == p.pkg:
		return stationOutcome{State: fwv1.OutcomeFailed, Reason: fwv1.FailureKeyMismatch,
			Message: "the station has no sig-N.key whose CRC is the rollout's keyChecksum; it was not sent the firmware"}
	case ob.Refusal == twin.RefusalModelMismatch && ob.RefusedPackage == p.pkg:
		return stationOutcome{State: fwv1.OutcomeFailed, Reason: fwv1.FailureModelMismatch,
			Message: "the station reports another model than firmware.model; it was not sent the firmware"}
	case ob.ServedPackage == p.pkg && ob.UpdatesServed > p.maxUpdateAttempts:
		return stationOutcome{State: fwv1.OutcomeFailed, Reason: fwv1.FailureNotApplied,
			Message: fmt.Sprintf("served the update %d times, the station still reports package %q", p.maxUpdateAttempts, ob.Package)}
	}
	deadline := own.WrittenAt.Add(p.progressDeadline)
	if !own.WrittenAt.IsZero() && !p.now.Before(deadline) {
		msg := fmt.Sprintf("no report of package %q within %s of the twin being written", p.pkg, p.progressDeadline)
		if ob.Package != "" {
			msg += fmt.Sprintf("; last reported %q", ob.Package)
		}
		return stationOutcome{State: fwv1.OutcomeFailed, Reason: fwv1.FailureTimedOut, Message: msg}
	}
	return stationOutcome{State: fwv1.OutcomeInProgress, Deadline: deadline}
}
