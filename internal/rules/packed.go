package rules

import (
	"time"
	"unique"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// Packed is a Station as a rollout's owned view keeps it between passes:
// 72 bytes instead of Station's 264. The strings a fleet repeats (owner,
// packages, reasons) are one interned record shared by every station with
// the same ones, the times are Unix nanoseconds, the counts 32 bits. A
// million owned stations are then about 100 MB of view rather than 400.
// Station() gives the Station back, equal to the one packed except that its
// times are in UTC without a monotonic reading (the same instants).
type Packed struct {
	ID        string
	Order     uint64
	writtenAt int64 // Unix ns, 0 for the zero time
	servedAt  int64
	batch     int32
	updates   int32
	strs      unique.Handle[stationStrings]
	report    *twin.Report
	seen      bool
}

// stationStrings are a Station's strings other than its ID.
type stationStrings struct {
	OwnerUID, OwnerName, Failed, Counted, CountedReason string
	Package, ServedPackage, Refusal, RefusedPackage     string
}

// Pack returns s packed.
func Pack(s Station) Packed {
	return Packed{ID: s.ID, Order: s.Order, writtenAt: unixNano(s.WrittenAt), servedAt: unixNano(s.ServedAt),
		batch: int32(s.Batch), updates: int32(s.UpdatesServed), report: s.Report, seen: s.Seen,
		strs: unique.Make(stationStrings{OwnerUID: s.OwnerUID, OwnerName: s.OwnerName, Failed: s.Failed,
			Counted: s.Counted, CountedReason: s.CountedReason, Package: s.Package, ServedPackage: s.ServedPackage,
			Refusal: s.Refusal, RefusedPackage: s.RefusedPackage})}
}

// Station returns the station p holds.
func (p Packed) Station() Station {
	s := Station{ID: p.ID, Order: p.Order, Batch: int(p.batch), WrittenAt: fromUnixNano(p.writtenAt),
		Seen: p.seen, UpdatesServed: int(p.updates), ServedAt: fromUnixNano(p.servedAt), Report: p.report}
	if p.strs != (unique.Handle[stationStrings]{}) {
		v := p.strs.Value()
		s.OwnerUID, s.OwnerName, s.Failed, s.Counted, s.CountedReason = v.OwnerUID, v.OwnerName, v.Failed, v.Counted, v.CountedReason
		s.Package, s.ServedPackage, s.Refusal, s.RefusedPackage = v.Package, v.ServedPackage, v.Refusal, v.RefusedPackage
	}
	return s
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// OwnerUID is the ownership record's rollout UID, "" when unowned.
func (p Packed) OwnerUID() string { return p.strings().OwnerUID }

// Failed is the Failed reason the owner recorded.
func (p Packed) Failed() string { return p.strings().Failed }

// Counted is what the rollout counted the station when it let it go.
func (p Packed) Counted() string { return p.strings().Counted }

// Batch is the step number that wrote the station.
func (p Packed) Batch() int { return int(p.batch) }

// WrittenAt is when the station was written (or let go, when Counted).
func (p Packed) WrittenAt() time.Time { return fromUnixNano(p.writtenAt) }

func (p Packed) strings() stationStrings {
	if p.strs == (unique.Handle[stationStrings]{}) {
		return stationStrings{}
	}
	return p.strs.Value()
}

// PackedOutcome is an Outcome as a pass's view keeps it, one per station
// of the rollout: 24 bytes instead of Outcome's 80. The state, reason and
// message, which a fleet repeats (most stations are Pending or InProgress
// with neither), are one interned record; the deadline is Unix
// nanoseconds. Outcome() gives the Outcome back, its deadline in UTC.
type PackedOutcome struct {
	deadline int64
	text     unique.Handle[outcomeText]
	baking   bool
}

type outcomeText struct {
	State           fwv1.StationOutcome
	Reason, Message string
}

// PackOutcome returns o packed.
func PackOutcome(o Outcome) PackedOutcome {
	return PackedOutcome{deadline: unixNano(o.Deadline), baking: o.Baking,
		text: unique.Make(outcomeText{State: o.State, Reason: o.Reason, Message: o.Message})}
}

// Outcome returns the outcome p holds.
func (p PackedOutcome) Outcome() Outcome {
	t := p.texts()
	return Outcome{State: t.State, Reason: t.Reason, Message: t.Message, Deadline: fromUnixNano(p.deadline), Baking: p.baking}
}

// State is the outcome's state.
func (p PackedOutcome) State() fwv1.StationOutcome { return p.texts().State }

// Reason is the failure or skip reason.
func (p PackedOutcome) Reason() string { return p.texts().Reason }

func (p PackedOutcome) texts() outcomeText {
	if p.text == (unique.Handle[outcomeText]{}) {
		return outcomeText{}
	}
	return p.text.Value()
}

// Deadline is when an in-progress station times out, or its bake time ends.
func (p PackedOutcome) Deadline() time.Time { return fromUnixNano(p.deadline) }

// Baking is true while the station bakes.
func (p PackedOutcome) Baking() bool { return p.baking }
