package rules

import (
	"hash/fnv"
	"sort"
	"time"
	"unique"

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
	Batch     int       // step number that wrote it (when owned)
	WrittenAt time.Time // when it was written (when owned)
	Failed    string    // the Failed reason the owner recorded in the ownership record

	// From the CUPS server's observation, scoped to the rollout the
	// Station was built for.
	Package        string // the package the station last reported
	ServedPackage  string
	UpdatesServed  int
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
	if ob := t.Observation; ob != nil {
		s.Package = Intern(ob.Package)
		// Served counts and refusals belong to the rollout that owned the
		// station when CUPS recorded them: another rollout's (an aborted
		// one's KeyMismatch, say) say nothing about this one.
		if ob.ServedRollout == rolloutUID {
			s.ServedPackage, s.UpdatesServed = Intern(ob.ServedPackage), ob.UpdatesServed
		}
		if ob.RefusedRollout == rolloutUID {
			s.Refusal, s.RefusedPackage = Intern(ob.Refusal), Intern(ob.RefusedPackage)
		}
		s.Report = scopedReport(ob, rolloutUID)
	}
	return s
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
