package rules

import (
	"testing"
	"time"
	"unsafe"

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
