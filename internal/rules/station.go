package rules

import (
	"hash/fnv"
	"sort"
	"time"
	"unique"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Station is the compact per-station record a rollout is planned with: a
// few dozen bytes, so that a 100,000-station rollout fits easily in memory.
// It is rebuilt from the twins; nothing here is the source of truth.
type Station struct {
	ID    string
	Order uint64 // deterministic spread order for the rollout (SpreadOrder)

	OwnerUID  string    // ownership record's rollout UID, "" when unowned
	OwnerName string    // ownership record's "namespace/name"
	Batch     int       // step number that wrote it (when owned or Counted)
	WrittenAt time.Time // when it was written (when owned); when it was let go (when Counted)
	Failed    string    // the Failed reason the owner recorded in the ownership record

	// Counted and CountedReason are what the rollout the Station was built
	// for counted the station (Updated, or Failed with its reason) when it
	// let it go, from the twin's history; empty while it owns the station
	// or never counted it so.
	Counted       string
	CountedReason string

	// From the CUPS server's observation, scoped to the rollout the
	// Station was built for.
	Package        string // the package the station last reported
	Seen           bool   // the CUPS server has seen the station (Package may be "": no version.txt)
	ServedPackage  string
	UpdatesServed  int
	ServedAt       time.Time // when the update was last sent, zero when unknown
	Refusal        string
	RefusedPackage string
	// Report is the CUPS server's record after the station first reported
	// this rollout's package (nil when none): its health while it bakes.
	Report *twin.Report
}

// NewStation builds the record of the station of t as the rollout
// rolloutUID sees it.
func NewStation(t *twin.Twin, rolloutUID string) Station {
	s := Station{ID: t.DeviceID, Order: SpreadOrder(rolloutUID, t.DeviceID)}
	// The same few values (rollout UIDs and names, packages, reasons)
	// repeat across a fleet: intern them, so that 100,000 stations hold one
	// copy of each instead of 100,000.
	if o := t.Ownership; o != nil {
		s.OwnerUID, s.OwnerName, s.Batch, s.WrittenAt = Intern(o.UID), Intern(o.Rollout), o.Batch, o.WrittenAt
		s.Failed = Intern(o.Failed)
	}
	if s.OwnerUID != rolloutUID {
		if s.Counted, s.CountedReason = CountedBefore(t, rolloutUID); s.Counted != "" {
			h := twin.Find(t.History, rolloutUID)
			s.Batch, s.WrittenAt = h.Batch, h.At
		}
	}
	if ob := t.Observation; ob != nil {
		s.Package, s.Seen = Intern(ob.Package), true
		// Served counts and refusals belong to the rollout that owned the
		// station when CUPS recorded them: another rollout's (an aborted
		// one's KeyMismatch, say) say nothing about this one.
		if ob.ServedRollout == rolloutUID {
			s.ServedPackage, s.UpdatesServed = Intern(ob.ServedPackage), ob.UpdatesServed
			if ob.ServedAt != nil {
				s.ServedAt = *ob.ServedAt
			}
		}
		if ob.RefusedRollout == rolloutUID {
			s.Refusal, s.RefusedPackage = Intern(ob.Refusal), Intern(ob.RefusedPackage)
		}
		s.Report = scopedReport(ob, rolloutUID)
	}
	return s
}

// CountedBefore is what the rollout uid counted the station of t when it
// let it go (the twin's history entry of uid): Updated, or Failed with the
// reason; empty when it has no such entry, or the entry is a skip or an
// outcome it had not reached (a skip is not final: the station may become
// eligible again). A rollout's status is its history (DESIGN.md section
// 5): the controller counts these stations so, whoever owns them now.
func CountedBefore(t *twin.Twin, uid string) (outcome, reason string) {
	h := twin.Find(t.History, uid)
	if h == nil {
		return "", ""
	}
	switch fwv1.StationOutcome(h.Outcome) {
	case fwv1.OutcomeUpdated:
		return Intern(h.Outcome), ""
	case fwv1.OutcomeFailed:
		if fwv1.FailureReason(h.Reason).Known() {
			return Intern(h.Outcome), Intern(h.Reason)
		}
	}
	return "", ""
}

// Intern returns the canonical copy of s, so that repeated values share
// memory.
func Intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// SpreadOrder orders stations deterministically for one rollout: stable
// across restarts, but spread across the fleet rather than alphabetical, so
// that a canary batch is not always the same few stations of one site.
func SpreadOrder(rolloutUID, deviceID string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(rolloutUID))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(deviceID))
	return h.Sum64()
}

// SortStations sorts by spread order, then id (hash collisions stay
// stable).
func SortStations(ss []Station) {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].Order != ss[j].Order {
			return ss[i].Order < ss[j].Order
		}
		return ss[i].ID < ss[j].ID
	})
}
