package cups

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestDecideUpgradePath: a rollout whose firmware names the packages it may
// be installed over (firmware.upgradeFrom, in the ownership record) is sent
// only to a station reporting one of them; any other station gets the
// no-change answer, and the refusal is recorded for that rollout (once),
// so that the controller skips it. The station reports "v1" and the twin
// desires "v2".
func TestDecideUpgradePath(t *testing.T) {
	now := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	fresh := &twin.Observation{LastSeen: now.Add(-time.Minute), Station: "2.0.6(linux/std) 2026-11-27 18:19:31",
		Model: "linux", Package: "v1", Keys: []uint32{4101823099}, CupsCredCRC: u32(111)}
	owned := func(from ...string) func(*twin.Twin) {
		return func(t *twin.Twin) {
			t.CUPS.Package = "v2"
			o := *fresh
			t.Observation = &o
			t.Ownership = &twin.Ownership{Rollout: "fleet/spring", UID: "u1", UpgradeFrom: from}
		}
	}
	tests := []struct {
		name        string
		twin        func(*twin.Twin)
		wantUpdate  bool
		wantRefusal string
		wantRecord  bool
	}{
		{name: "the station's package is on the path: update",
			twin: owned("v0.9", "v1"), wantUpdate: true, wantRecord: true},
		{name: "no upgradeFrom: every station gets the update",
			twin: owned(), wantUpdate: true, wantRecord: true},
		{name: "the station's package is off the path: no update, NotOnUpgradePath recorded for the rollout",
			twin: owned("v0.9", "v1.1"), wantRefusal: twin.RefusalNotOnUpgradePath, wantRecord: true},
		{name: "NotOnUpgradePath already recorded: no second write",
			twin: func(t *twin.Twin) {
				owned("v1.1")(t)
				t.Observation.Refusal, t.Observation.RefusedPackage, t.Observation.RefusedRollout = twin.RefusalNotOnUpgradePath, "v2", "u1"
			},
			wantRefusal: twin.RefusalNotOnUpgradePath},
		{name: "off the path and without the signing key: the path is what is recorded",
			twin: func(t *twin.Twin) {
				owned("v1.1")(t)
				t.CUPS.KeyChecksum = u32(42)
			},
			wantRefusal: twin.RefusalNotOnUpgradePath, wantRecord: true},
		{name: "on the path and without the signing key: KeyMismatch as before",
			twin: func(t *twin.Twin) {
				owned("v1")(t)
				t.CUPS.KeyChecksum = u32(42)
			},
			wantRefusal: twin.RefusalKeyMismatch, wantRecord: true},
		{name: "already sent the update by this rollout: the path decided the first send only",
			twin: func(t *twin.Twin) {
				owned("v1.1")(t)
				t.Observation.ServedPackage, t.Observation.ServedRollout, t.Observation.UpdatesServed = "v2", "u1", 1
			},
			wantUpdate: true, wantRecord: true},
		{name: "counted Failed by the rollout: nothing new",
			twin: func(t *twin.Twin) {
				owned("v1.1")(t)
				t.Ownership.Failed = "TimedOut"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			req, tw := stationRequest(), matchingTwin()
			tt.twin(tw)
			d, err := Decide(Input{Request: req, Twin: tw, Authenticated: true, Now: now})
			g.Expect(err).NotTo(HaveOccurred(), "a refusal is never an error: the station gets an answer")
			g.Expect(d.Update != nil).To(Equal(tt.wantUpdate))
			g.Expect(d.Outcome.Refusal).To(Equal(tt.wantRefusal))
			g.Expect(d.Record).To(Equal(tt.wantRecord))
			g.Expect(d.Notify).To(Equal(tt.wantRecord), "the controller is woken when something new is recorded")
			if tt.wantRefusal == twin.RefusalNotOnUpgradePath {
				g.Expect(d.IsNoChange()).To(BeTrue(), "the station gets the no-change answer")
				g.Expect(d.Observation.Refusal).To(Equal(twin.RefusalNotOnUpgradePath))
				g.Expect(d.Observation.RefusedPackage).To(Equal("v2"))
				g.Expect(d.Observation.RefusedRollout).To(Equal("u1"), "the refusal is about this rollout only")
				g.Expect(d.Observation.Package).To(Equal("v1"))
			}
		})
	}
}
