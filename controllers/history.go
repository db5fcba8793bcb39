package controllers

import (
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// A rollout's status is its history (DESIGN.md section 5): a station it
// counted Updated or Failed stays counted so after it let the station go.
// The rollout's own counters are frozen once it is Completed or Aborted;
// the per-station fact is kept in the twin's history
// (tags.stationfleet.history), written in the patch that lets the station
// go: a later rollout's takeover, or abort's restore. No extra twin write.

// historyEntry is what the rollout obj counted for the station of t, which
// obj still owns, at the moment it lets the station go.
func historyEntry(t *twin.Twin, obj *fwv1.FirmwareRollout, now time.Time, restored bool) twin.HistoryEntry {
	uid := string(obj.UID)
	s := newStation(t, uid)
	p := paramsFor(obj, now)
	o := evaluate(s, p)
	e := twin.HistoryEntry{
		Rollout: obj.Namespace + "/" + obj.Name, UID: uid, Batch: s.batch,
		Outcome: string(o.state), Reason: o.reason, Restored: restored, At: now.UTC().Truncate(time.Second),
	}
	if s.servedPackage == p.pkg {
		e.UpdatesServed = s.updatesServed
	}
	return e
}

// historyOutcome is the outcome a rollout that no longer owns the station
// counted for it, as its history entry h records.
func historyOutcome(t *twin.Twin, h *twin.HistoryEntry) StationOutcome {
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
