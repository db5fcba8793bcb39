package cli

import (
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/rules"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// outcomeParams is what the stations table needs to classify twins.
type outcomeParams struct {
	obj *fwv1.FirmwareRollout
	uid string
	pkg string
	now time.Time
	// active holds the UIDs of rollouts that still hold their stations
	// (neither Completed nor Aborted, not being deleted).
	active map[string]bool
}

func newOutcomeParams(obj *fwv1.FirmwareRollout, active map[string]bool, now time.Time) outcomeParams {
	return outcomeParams{obj: obj, uid: string(obj.UID), pkg: obj.Spec.Firmware.Package, now: now, active: active}
}

// evaluateTwin classifies a station with the controller's own rule
// (rules.EvaluateStation), so the table shows what the rollout counts.
func evaluateTwin(t *twin.Twin, p outcomeParams) rules.StationOutcome {
	return rules.EvaluateStation(t, p.obj, p.active, p.now)
}
