package cups

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// TestObserveRecordsCredentialCRC: the observation carries the credential
// CRC the station reports, and a new one is recorded at once, so that the
// station commands see a rotated credential arrive.
func TestObserveRecordsCredentialCRC(t *testing.T) {
	g := NewWithT(t)
	now := time.Now()
	prev := &twin.Observation{LastSeen: now, Package: "v1", Keys: []uint32{}, CupsCredCRC: u32(111)}
	obs, record, _ := Observe(prev, &Request{Package: "v1", CupsCredCRC: 111}, Outcome{}, now, time.Hour)
	g.Expect(record).To(BeFalse())
	obs, record, changed := Observe(&obs, &Request{Package: "v1", CupsCredCRC: 222}, Outcome{}, now, time.Hour)
	g.Expect(record).To(BeTrue())
	g.Expect(changed).To(BeTrue())
	g.Expect(*obs.CupsCredCRC).To(Equal(uint32(222)))
}
