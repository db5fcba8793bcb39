package rules

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestProgressDeadlineFromLastSend: the progress deadline runs from the
// station's last progress, the later of its twin being written and the
// update last being sent to it: a station that a slow manager, IoT Hub or
// blob store served late is not TimedOut for the wait. Before, the
// deadline ran from the write only.
func TestProgressDeadlineFromLastSend(t *testing.T) {
	g := NewWithT(t)
	written := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	p := Params{Package: "2.0.8", MaxUpdateAttempts: 2, ProgressDeadline: 2 * time.Minute, Now: written.Add(3 * time.Minute)}
	s := Station{ID: "A", OwnerUID: "u", WrittenAt: written, Package: "2.0.6", Seen: true}

	g.Expect(Evaluate(s, p).State).To(Equal(fwv1.OutcomeFailed), "never sent, 3 min after the write")
	g.Expect(Evaluate(s, p).Reason).To(Equal(string(fwv1.FailureTimedOut)))

	s.ServedPackage, s.UpdatesServed, s.ServedAt = "2.0.8", 1, written.Add(100*time.Second)
	o := Evaluate(s, p)
	g.Expect(o.State).To(Equal(fwv1.OutcomeInProgress), "sent 100 s after the write: 2 min from then")
	g.Expect(o.Deadline).To(Equal(written.Add(100*time.Second + 2*time.Minute)))

	p.Now = written.Add(5 * time.Minute)
	o = Evaluate(s, p)
	g.Expect(o.State).To(Equal(fwv1.OutcomeFailed))
	g.Expect(o.Message).To(ContainSubstring("of the update last being sent"))

	s.ServedPackage = "2.0.7" // another package's send is no progress in this rollout
	g.Expect(ProgressSince(s, p)).To(Equal(written))
}
