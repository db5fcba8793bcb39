package rules

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/twin"
)

func TestEvaluate(t *testing.T) {
	written := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p := Params{Package: "2.0.7", MaxUpdateAttempts: 3, ProgressDeadline: time.Hour, Now: written.Add(30 * time.Minute)}
	cases := []struct {
		name   string
		s      Station
		p      Params
		state  fwv1.StationOutcome
		reason fwv1.FailureReason
	}{
		{"reported the new package", Station{Package: "2.0.7", WrittenAt: written}, p, fwv1.OutcomeUpdated, ""},
		{"not yet polled", Station{Package: "2.0.6", WrittenAt: written}, p, fwv1.OutcomeInProgress, ""},
		{"key mismatch for this package", Station{Package: "2.0.6", WrittenAt: written, Refusal: twin.RefusalKeyMismatch, RefusedPackage: "2.0.7"}, p, fwv1.OutcomeFailed, fwv1.FailureKeyMismatch},
		{"key mismatch for an older package", Station{Package: "2.0.6", WrittenAt: written, Refusal: twin.RefusalKeyMismatch, RefusedPackage: "2.0.5"}, p, fwv1.OutcomeInProgress, ""},
		{"model mismatch", Station{Package: "2.0.6", WrittenAt: written, Refusal: twin.RefusalModelMismatch, RefusedPackage: "2.0.7"}, p, fwv1.OutcomeFailed, fwv1.FailureModelMismatch},
		{"served maxUpdateAttempts times, may still apply", Station{Package: "2.0.6", WrittenAt: written, ServedPackage: "2.0.7", UpdatesServed: 3}, p, fwv1.OutcomeInProgress, ""},
		{"asked again after maxUpdateAttempts sends (CUPS recorded NotApplied)", Station{Package: "2.0.6", WrittenAt: written, ServedPackage: "2.0.7", UpdatesServed: 3, Refusal: twin.RefusalNotApplied, RefusedPackage: "2.0.7"}, p, fwv1.OutcomeFailed, fwv1.FailureNotApplied},
		{"served more than maxUpdateAttempts by a CUPS server that did not know the limit", Station{Package: "2.0.6", WrittenAt: written, ServedPackage: "2.0.7", UpdatesServed: 4}, p, fwv1.OutcomeFailed, fwv1.FailureNotApplied},
		{"counted Failed earlier: final, even past a report of the package", Station{Package: "2.0.7", WrittenAt: written, Failed: string(fwv1.FailureTimedOut)}, p, fwv1.OutcomeFailed, fwv1.FailureTimedOut},
		{"served counts of another package do not count", Station{Package: "2.0.6", WrittenAt: written, ServedPackage: "2.0.5", UpdatesServed: 9}, p, fwv1.OutcomeInProgress, ""},
		{"past the progress deadline", Station{Package: "2.0.6", WrittenAt: written}, Params{Package: "2.0.7", MaxUpdateAttempts: 3, ProgressDeadline: time.Hour, Now: written.Add(time.Hour)}, fwv1.OutcomeFailed, fwv1.FailureTimedOut},
		{"updated wins over a late deadline", Station{Package: "2.0.7", WrittenAt: written}, Params{Package: "2.0.7", ProgressDeadline: time.Hour, Now: written.Add(48 * time.Hour)}, fwv1.OutcomeUpdated, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			o := Evaluate(tc.s, tc.p)
			g.Expect(o.State).To(Equal(tc.state))
			g.Expect(o.Reason).To(Equal(string(tc.reason)))
			if o.State == fwv1.OutcomeFailed {
				g.Expect(o.Message).NotTo(BeEmpty())
			}
		})
	}
}

// TestNewStationScopesObservation: served counts and refusals recorded
// while another rollout owned the station (an aborted rollout's
// KeyMismatch) say nothing about this one.
func TestNewStationScopesObservation(t *testing.T) {
	g := NewWithT(t)
	written := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	obj := &fwv1.FirmwareRollout{}
	obj.UID, obj.Spec.Firmware.Package = "new", "2.0.7"
	tw := &twin.Twin{DeviceID: "0000000000000001",
		Ownership: &twin.Ownership{UID: "new", Rollout: "ns/new", Batch: 1, WrittenAt: written},
		Observation: &twin.Observation{Package: "2.0.6", ServedPackage: "2.0.7", ServedRollout: "aborted", UpdatesServed: 3,
			Refusal: twin.RefusalKeyMismatch, RefusedPackage: "2.0.7", RefusedRollout: "aborted"}}
	o := EvaluateStation(tw, obj, nil, written.Add(time.Minute))
	g.Expect(o.State).To(Equal(fwv1.OutcomeInProgress))
	g.Expect(o.UpdatesServed).To(BeZero())

	tw.Observation.RefusedRollout = "new"
	o = EvaluateStation(tw, obj, nil, written.Add(time.Minute))
	g.Expect(o.State).To(Equal(fwv1.OutcomeFailed))
	g.Expect(o.Reason).To(BeEquivalentTo(fwv1.FailureKeyMismatch))
}

// TestEvaluateStationFromHistory: a station a later rollout took over shows
// what this rollout counted, from the twin's history.
func TestEvaluateStationFromHistory(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	a := &fwv1.FirmwareRollout{}
	a.Namespace, a.Name, a.UID, a.Spec.Firmware.Package = "ns", "a", "uid-a", "2.0.7"
	tw := &twin.Twin{DeviceID: "0000000000000001", CUPS: twin.CUPS{Firmware: twin.Firmware{Package: "2.0.7"}},
		Ownership:   &twin.Ownership{UID: "uid-a", Rollout: "ns/a", Batch: 2, WrittenAt: now.Add(-time.Hour)},
		Observation: &twin.Observation{Package: "2.0.7", ServedPackage: "2.0.7", ServedRollout: "uid-a", UpdatesServed: 1}}
	e := HistoryEntry(tw, a, now, false)
	g.Expect(e).To(Equal(twin.HistoryEntry{Rollout: "ns/a", UID: "uid-a", Batch: 2, Outcome: "Updated", UpdatesServed: 1, At: now}))

	tw.History = twin.WithHistory(nil, e)
	tw.Ownership = &twin.Ownership{UID: "uid-b", Rollout: "ns/b", Batch: 1, WrittenAt: now}
	tw.Observation = &twin.Observation{Package: "2.0.7"}
	o := EvaluateStation(tw, a, map[string]bool{"uid-b": true}, now)
	g.Expect(o.State).To(Equal(fwv1.OutcomeUpdated))
	g.Expect(o.Batch).To(Equal(2))
	g.Expect(o.UpdatesServed).To(Equal(1))
	g.Expect(o.FromHistory).To(BeTrue())
	g.Expect(o.Message).To(ContainSubstring("now owned by ns/b"))

	// Bounded, newest first, one entry per rollout.
	h := tw.History
	for i := range 10 {
		h = twin.WithHistory(h, twin.HistoryEntry{UID: fmt.Sprint("u", i)})
	}
	h = twin.WithHistory(h, twin.HistoryEntry{UID: "u9", Outcome: "Failed"})
	g.Expect(h).To(HaveLen(twin.MaxHistory))
	g.Expect(h[0]).To(Equal(twin.HistoryEntry{UID: "u9", Outcome: "Failed"}))
	g.Expect(h[1].UID).To(Equal("u8"))
}

func TestBatchSizeAndFailureLimit(t *testing.T) {
	g := NewWithT(t)
	i, s := intstr.FromInt32, intstr.FromString
	cases := []struct {
		v                  intstr.IntOrString
		targets, unwritten int
		want, wantLimit    int
	}{
		{i(1), 100, 100, 1, 1},
		{s("10%"), 100, 99, 10, 10},
		{s("10%"), 15, 15, 2, 1}, // a batch rounds up, a failure limit down
		{s("100%"), 100, 89, 89, 100},
		{s("5"), 100, 3, 3, 5},
		{i(50), 10, 10, 10, 50},
	}
	for _, tc := range cases {
		n, err := BatchSize(&tc.v, tc.targets, tc.unwritten)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(n).To(Equal(tc.want), "batch %s of %d", tc.v.String(), tc.targets)
		l, err := FailureLimit(&tc.v, tc.targets)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(l).To(Equal(tc.wantLimit), "limit %s of %d", tc.v.String(), tc.targets)
	}
	l, err := FailureLimit(nil, 100)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(l).To(BeNumerically(">", 1<<30))
}

func TestSpreadOrderIsStableAndSpread(t *testing.T) {
	g := NewWithT(t)
	var ss []Station
	for _, id := range []string{"0000000000000001", "0000000000000002", "0000000000000003", "0000000000000004", "0000000000000005", "0000000000000006"} {
		ss = append(ss, Station{ID: id, Order: SpreadOrder("uid-a", id)})
	}
	SortStations(ss)
	first := ss[0].ID
	// Same rollout, same order after a restart.
	again := append([]Station(nil), ss...)
	for i := range again {
		again[i].Order = SpreadOrder("uid-a", again[i].ID)
	}
	SortStations(again)
	g.Expect(again[0].ID).To(Equal(first))
	// Not alphabetical: some permutation differs from sorted ids.
	alphabetical := true
	for i := 1; i < len(ss); i++ {
		if ss[i-1].ID > ss[i].ID {
			alphabetical = false
		}
	}
	g.Expect(alphabetical).To(BeFalse())
}

// TestFailureForRefusal: every refusal the CUPS server records is the
// failure the rollout counts, by one table.
func TestFailureForRefusal(t *testing.T) {
	g := NewWithT(t)
	for refusal, want := range map[string]fwv1.FailureReason{
		twin.RefusalKeyMismatch: fwv1.FailureKeyMismatch, twin.RefusalModelMismatch: fwv1.FailureModelMismatch, twin.RefusalNotApplied: fwv1.FailureNotApplied,
	} {
		got, ok := FailureForRefusal(refusal)
		g.Expect(ok).To(BeTrue())
		g.Expect(got).To(Equal(want))
		g.Expect(got.Known()).To(BeTrue(), "the API server accepts %s in status.failures", got)
	}
	_, ok := FailureForRefusal("SomethingNew")
	g.Expect(ok).To(BeFalse())

	// A refusal or a failure mark this version does not know (a newer
	// server's) is ignored: counting it under a reason the API does not
	// list would make the API server refuse the rollout's whole status.
	written := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	p := Params{Package: "2.0.7", MaxUpdateAttempts: 3, ProgressDeadline: time.Hour, Now: written.Add(time.Minute)}
	o := Evaluate(Station{Package: "2.0.6", WrittenAt: written, Refusal: "SomethingNew", RefusedPackage: "2.0.7"}, p)
	g.Expect(o.State).To(Equal(fwv1.OutcomeInProgress))
	o = Evaluate(Station{Package: "2.0.6", WrittenAt: written, Failed: "SomethingNew"}, p)
	g.Expect(o.State).To(Equal(fwv1.OutcomeInProgress))
}

func TestAttemptsUsedUp(t *testing.T) {
	g := NewWithT(t)
	g.Expect(AttemptsUsedUp(2, 3)).To(BeFalse())
	g.Expect(AttemptsUsedUp(3, 3)).To(BeTrue(), "maxUpdateAttempts is the number of sends")
	g.Expect(AttemptsUsedUp(50, 0)).To(BeFalse(), "no limit recorded")
}

func TestActiveRollouts(t *testing.T) {
	g := NewWithT(t)
	now := metav1.Now()
	items := []fwv1.FirmwareRollout{
		{ObjectMeta: metav1.ObjectMeta{UID: "running"}, Status: fwv1.FirmwareRolloutStatus{Phase: fwv1.PhaseProgressing}},
		{ObjectMeta: metav1.ObjectMeta{UID: "halted"}, Status: fwv1.FirmwareRolloutStatus{Phase: fwv1.PhaseHalted}},
		{ObjectMeta: metav1.ObjectMeta{UID: "new"}},
		{ObjectMeta: metav1.ObjectMeta{UID: "done"}, Status: fwv1.FirmwareRolloutStatus{Phase: fwv1.PhaseCompleted}},
		{ObjectMeta: metav1.ObjectMeta{UID: "aborted"}, Status: fwv1.FirmwareRolloutStatus{Phase: fwv1.PhaseAborted}},
		{ObjectMeta: metav1.ObjectMeta{UID: "deleting", DeletionTimestamp: &now}, Status: fwv1.FirmwareRolloutStatus{Phase: fwv1.PhasePaused}},
	}
	g.Expect(ActiveRollouts(items)).To(Equal(map[string]bool{"running": true, "halted": true, "new": true, "deleting": false, "done": false, "aborted": false}))
}
