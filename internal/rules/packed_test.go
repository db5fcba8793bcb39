package rules

import (
	"testing"
	"time"
	"unsafe"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestPackedKeepsEveryField: a station packed and unpacked is the station,
// for every field (a field Pack forgot would come back empty), with its
// times the same instants.
func TestPackedKeepsEveryField(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	rep := &twin.Report{Rollout: "u1", Package: "2.0.7"}
	full := Station{ID: "0016C001F0000001", Order: 1<<63 + 5, OwnerUID: "u1", OwnerName: "ns/r", Batch: 3,
		WrittenAt: at, Failed: "Timeout", Counted: "Failed", CountedReason: "KeyMismatch", Package: "2.0.6",
		Seen: true, ServedPackage: "2.0.7", UpdatesServed: 2, ServedAt: at.Add(time.Minute), Refusal: "key-mismatch",
		RefusedPackage: "2.0.7", Report: rep}
	got := Pack(full).Station()
	if !got.WrittenAt.Equal(full.WrittenAt) || !got.ServedAt.Equal(full.ServedAt) {
		t.Errorf("times: got %v, %v; want %v, %v", got.WrittenAt, got.ServedAt, full.WrittenAt, full.ServedAt)
	}
	got.WrittenAt, got.ServedAt = full.WrittenAt, full.ServedAt
	if got != full {
		t.Errorf("unpacked %+v\nwant     %+v", got, full)
	}
	if z := Pack(Station{ID: "A"}).Station(); z != (Station{ID: "A"}) {
		t.Errorf("an empty station unpacks as %+v", z)
	}
	if z := (Packed{ID: "A"}).Station(); z != (Station{ID: "A"}) {
		t.Errorf("a zero Packed unpacks as %+v", z)
	}
}

// TestPackedIsSmall: the owned view's record stays a third of a Station, so
// that a million owned stations fit the manager's 1 GiB (issue 18 item 3).
func TestPackedIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(Packed{}); n > 72 {
		t.Errorf("Packed is %d bytes, want at most 72", n)
	}
}

// TestPackedOutcomeKeepsEveryField: an outcome packed and unpacked is the
// outcome, and the accessors a pass reads in its loops agree with it.
func TestPackedOutcomeKeepsEveryField(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	for _, o := range []Outcome{
		{State: fwv1.OutcomeFailed, Reason: string(fwv1.FailureTimedOut), Message: "no report", Deadline: at},
		{State: fwv1.OutcomeInProgress, Deadline: at, Baking: true},
		{State: fwv1.OutcomePending},
		{},
	} {
		p := PackOutcome(o)
		if got := p.Outcome(); got != o {
			t.Errorf("unpacked %+v\nwant     %+v", got, o)
		}
		if p.State() != o.State || p.Reason() != o.Reason || !p.Deadline().Equal(o.Deadline) || p.Baking() != o.Baking {
			t.Errorf("accessors of %+v: %q %q %v %v", o, p.State(), p.Reason(), p.Deadline(), p.Baking())
		}
	}
	if z := (PackedOutcome{}).Outcome(); z != (Outcome{}) {
		t.Errorf("a zero PackedOutcome unpacks as %+v", z)
	}
	s := Station{ID: "A", OwnerUID: "u", Failed: "TimedOut", Counted: "Failed", Batch: 2, WrittenAt: at}
	if p := Pack(s); p.OwnerUID() != "u" || p.Failed() != "TimedOut" || p.Counted() != "Failed" || p.Batch() != 2 || !p.WrittenAt().Equal(at) {
		t.Errorf("Packed accessors of %+v: %q %q %q %d %v", s, p.OwnerUID(), p.Failed(), p.Counted(), p.Batch(), p.WrittenAt())
	}
}

// TestPackedOutcomeIsSmall: a pass's view holds one outcome per station of
// the rollout, a million at the largest.
func TestPackedOutcomeIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(PackedOutcome{}); n > 24 {
		t.Errorf("PackedOutcome is %d bytes, want at most 24", n)
	}
}
