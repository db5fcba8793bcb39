package rules

import (
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// StationOutcome is one station's state within a rollout, as the controller
// derives it from the station's twin, with what a person looking at one
// station wants to know.
type StationOutcome struct {
	// State is Pending, InProgress, Updated, Failed or Skipped.
	State fwv1.StationOutcome
	// Reason is the failure or skip reason, empty otherwise.
	Reason string
	// Message explains a failure or skip, for a person.
	Message string
	// Deadline is when an in-progress station times out, or, while it
	// bakes, when its bake time ends.
	Deadline time.Time
	// Baking is true while the station reported the package and its bake
	// time has not passed.
	Baking bool
	// Batch is the step number whose batch wrote the station, 0 when the
	// rollout never wrote it.
	Batch int
	// UpdatesServed is how many times CUPS sent the station this rollout's
	// update.
	UpdatesServed int
	// FromHistory is true when the rollout no longer owns the station and
	// the outcome is the one it counted, kept in the twin's history (a
	// later rollout took the station over, or this one was aborted).
	FromHistory bool
}

// EvaluateStation classifies a station that the rollout obj selects or
// owns, with the controller's own rule, so that tools (the CLI's stations
// command) report exactly what the controller counts:
//
//   - owned by obj: see Evaluate;
//   - no longer owned by obj but in the twin's history of obj: what obj
//     counted when it let the station go (FromHistory);
//   - owned by another rollout whose UID is in active: Skipped;
//   - otherwise: Pending (not yet written).
func EvaluateStation(t *twin.Twin, obj *fwv1.FirmwareRollout, active map[string]bool, now time.Time) StationOutcome {
	uid := string(obj.UID)
	if t.Ownership == nil || t.Ownership.UID != uid {
		if h := twin.Find(t.History, uid); h != nil {
			return HistoryOutcome(t, h)
		}
	}
	s := NewStation(t, uid)
	p := ParamsFor(obj, now)
	o := Classify(s, uid, active, p)
	so := StationOutcome{State: o.State, Reason: o.Reason, Message: o.Message, Deadline: o.Deadline, Baking: o.Baking}
	if s.OwnerUID == uid {
		so.Batch = s.Batch
	}
	if s.ServedPackage == p.Package {
		so.UpdatesServed = s.UpdatesServed
	}
	return so
}

// A rollout's status is its history (DESIGN.md section 5): a station it
// counted Updated or Failed stays counted so after it let the station go.
// The rollout's own counters are frozen once it is Completed or Aborted;
// the per-station fact is kept in the twin's history
// (tags.stationfleet.history), written in the patch that lets the station
// go: a later rollout's takeover, or abort's restore. No extra twin write.

// HistoryEntry is what the rollout obj counted for the station of t, which
// obj still owns, at the moment it lets the station go.
func HistoryEntry(t *twin.Twin, obj *fwv1.FirmwareRollout, now time.Time, restored bool) twin.HistoryEntry {
	uid := string(obj.UID)
	s := NewStation(t, uid)
	p := ParamsFor(obj, now)
	o := Evaluate(s, p)
	e := twin.HistoryEntry{
		Rollout: obj.Namespace + "/" + obj.Name, UID: uid, Batch: s.Batch,
		Outcome: string(o.State), Reason: o.Reason, Restored: restored, At: now.UTC().Truncate(time.Second),
	}
	if s.ServedPackage == p.Package {
		e.UpdatesServed = s.UpdatesServed
	}
	return e
}

// HistoryOutcome is the outcome a rollout that no longer owns the station
// counted for it, as its history entry h records.
func HistoryOutcome(t *twin.Twin, h *twin.HistoryEntry) StationOutcome {
	o := StationOutcome{State: fwv1.StationOutcome(h.Outcome), Reason: h.Reason, Batch: h.Batch,
		UpdatesServed: h.UpdatesServed, FromHistory: true}
	switch {
	case t.Ownership != nil:
		o.Message = "counted " + h.Outcome + " by this rollout; now owned by " + t.Ownership.Rollout
	case h.Restored:
		o.Message = "counted " + h.Outcome + " when the rollout was aborted; its previous firmware was restored"
	default:
		o.Message = "counted " + h.Outcome + " when the rollout let it go"
	}
	if h.Reason != "" {
		o.Message += " (" + h.Reason + ")"
	}
	return o
}
