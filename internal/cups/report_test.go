package cups

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/twin"
)

// bakingTwin is a station owned by a rollout of "v2" over "v1" with a bake
// time of one hour, whose twin matches what stationRequest reports.
func bakingTwin() *twin.Twin {
	t := matchingTwin()
	t.CUPS.Package, t.CUPS.URL = "v2", "blob://fw-v2"
	t.Ownership = &twin.Ownership{Rollout: "fleet/spring", UID: "u1", BakeSeconds: 3600,
		Previous: twin.Firmware{Package: "v1", URL: "blob://fw-v1"}}
	return t
}

// poll decides one request of package pkg at now on tw and stores the
// observation in tw as the recorder would.
func poll(g Gomega, tw *twin.Twin, pkg string, now time.Time, mutate func(*twin.Twin)) Decision {
	req := stationRequest()
	req.Package = pkg
	if mutate != nil {
		mutate(tw)
	}
	d, err := Decide(Input{Request: req, Twin: tw, Authenticated: true, Now: now})
	g.Expect(err).NotTo(HaveOccurred())
	if d.Record {
		obs := d.Observation
		tw.Observation = &obs
	}
	return d
}

// TestDecideRecordsTheReport: the first report of the package starts the
// record, each later poll within the bake time joins the sequence and wakes
// the controller, and nothing is recorded after the bake time.
func TestDecideRecordsTheReport(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 2, 3, 0, time.UTC)
	tw := bakingTwin()
	d := poll(g, tw, "v2", at, nil)
	g.Expect(d.Record).To(BeTrue())
	g.Expect(d.Notify).To(BeTrue())
	r := tw.Observation.Report
	g.Expect(r).NotTo(BeNil())
	g.Expect(*r).To(Equal(twin.Report{Rollout: "u1", Package: "v2", At: at, Polls: []time.Time{at}}))

	d = poll(g, tw, "v2", at.Add(time.Minute), nil)
	g.Expect(d.Record && d.Notify).To(BeTrue(), "a poll within the bake time is news for the rollout")
	d = poll(g, tw, "v2", at.Add(2*time.Minute), nil)
	g.Expect(d.Notify).To(BeTrue())
	g.Expect(tw.Observation.Report.Polls).To(Equal([]time.Time{at, at.Add(time.Minute), at.Add(2 * time.Minute)}))

	for i := 3; i < 10; i++ {
		poll(g, tw, "v2", at.Add(time.Duration(i)*time.Minute), nil)
	}
	g.Expect(tw.Observation.Report.Polls).To(HaveLen(twin.MaxReportPolls), "the record stays bounded")
	g.Expect(tw.Observation.Report.Polls[twin.MaxReportPolls-1]).To(Equal(at.Add(9 * time.Minute)))

	before := tw.Observation.Report.Clone()
	d = poll(g, tw, "v2", at.Add(time.Hour), nil)
	g.Expect(d.Notify).To(BeFalse(), "after the bake time a poll is no news")
	g.Expect(tw.Observation.Report).To(Equal(before))
}

// TestDecideReportOnlyWhileBaking: no record without a bake time, for a
// station the rollout counted Failed, or for another package.
func TestDecideReportOnlyWhileBaking(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 2, 3, 0, time.UTC)
	for name, mutate := range map[string]func(*twin.Twin){
		"no bake time":       func(t *twin.Twin) { t.Ownership.BakeSeconds = 0 },
		"counted Failed":     func(t *twin.Twin) { t.Ownership.Failed = "Unhealthy" },
		"not owned":          func(t *twin.Twin) { t.Ownership = nil },
		"reports an old one": func(t *twin.Twin) { t.CUPS.Package = "v3" },
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			tw := bakingTwin()
			poll(g, tw, "v2", at, mutate)
			g.Expect(tw.Observation.Report).To(BeNil())
		})
	}
}

// TestDecideRestartsTheSequence: a poll after an answer that sent the
// station its URIs or credentials starts a new sequence (DESIGN.md section
// 3: a reconnect R after the server changed the station's cupsUri or CUPS
// credentials is not a failure to reach the network server).
func TestDecideRestartsTheSequence(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 2, 3, 0, time.UTC)
	tw := bakingTwin()
	poll(g, tw, "v2", at, nil)
	d := poll(g, tw, "v2", at.Add(60*time.Second), func(t *twin.Twin) { t.CUPS.CupsCredCRC = u32(999) })
	g.Expect(d.CupsCredURL).NotTo(BeEmpty())
	g.Expect(tw.Observation.Report.RestartNext).To(BeTrue())
	// The station took the credentials; its reconnect a minute later.
	poll(g, tw, "v2", at.Add(120*time.Second), func(t *twin.Twin) { t.CUPS.CupsCredCRC = u32(111) })
	r := tw.Observation.Report
	g.Expect(r.Polls).To(Equal([]time.Time{at.Add(120 * time.Second)}), "the reconnect starts a new sequence")
	g.Expect(r.Restarts).To(Equal(1))
	g.Expect(r.RestartNext).To(BeFalse())
}

// TestDecideRolledBack: a station that reports its previous package after
// the rollout's, within the bake time, is not sent the update again and is
// recorded RolledBack, with the package it fell back to.
func TestDecideRolledBack(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 2, 3, 0, time.UTC)
	tw := bakingTwin()
	d := poll(g, tw, "v1", at.Add(-time.Minute), nil)
	g.Expect(d.Update).NotTo(BeNil(), "before its first report the station is sent the update")
	poll(g, tw, "v2", at, nil)
	d = poll(g, tw, "v1", at.Add(90*time.Second), nil)
	g.Expect(d.Update).To(BeNil(), "a station that fell back is not sent the update again")
	g.Expect(d.Notify).To(BeTrue())
	obs := tw.Observation
	g.Expect(obs.Refusal).To(Equal(twin.RefusalRolledBack))
	g.Expect(obs.RefusedPackage).To(Equal("v2"))
	g.Expect(obs.RefusedRollout).To(Equal("u1"))
	g.Expect(obs.Report.Back).To(Equal("v1"))
	g.Expect(*obs.Report.BackAt).To(Equal(at.Add(90 * time.Second)))

	d = poll(g, tw, "v1", at.Add(2*time.Hour), nil)
	g.Expect(d.Update).To(BeNil(), "a recorded fallback holds after the bake time too")

	// Another package than the previous one is no fallback: it is sent.
	tw2 := bakingTwin()
	poll(g, tw2, "v2", at, nil)
	d = poll(g, tw2, "v0", at.Add(90*time.Second), nil)
	g.Expect(d.Update).NotTo(BeNil())
}

// TestObserveOutOfOrder: two writes of one station can run concurrently,
// and the older one is then applied last: it counts its outcome but takes
// back neither the package the newer reported nor its report.
func TestObserveOutOfOrder(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := t0.Add(3 * time.Second)
	v1, v2 := stationRequest(), stationRequest()
	v2.Package = "v2"
	mk := func(pkg string, when time.Time) *ReportPoll {
		return &ReportPoll{Rollout: "u1", Package: "v2", Bake: time.Hour, Reported: pkg, At: when}
	}
	newer, _, _ := Observe(nil, v2, Outcome{Poll: mk("v2", at)}, at, 0)
	older, _, _ := Observe(&newer, v1, Outcome{Served: "v2", Rollout: "u1", Poll: mk("v1", t0)}, t0, 0)
	g.Expect(older.Package).To(Equal("v2"))
	g.Expect(older.LastSeen).To(Equal(at))
	g.Expect(older.UpdatesServed).To(Equal(1), "the older write's send still counts")
	g.Expect(older.Report.Back).To(BeEmpty())
	g.Expect(older.Report.Polls).To(Equal([]time.Time{at}))
}

// TestReportPollsOutOfOrder: a poll written after a later one takes its
// place in the sequence.
func TestReportPollsOutOfOrder(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 12, 1, 10, 0, 3, 0, time.UTC)
	r := &twin.Report{Rollout: "u1", Package: "v2", At: at, Polls: []time.Time{at, at.Add(120 * time.Second)}}
	p := &ReportPoll{Rollout: "u1", Package: "v2", Bake: time.Hour, Reported: "v2", At: at.Add(60 * time.Second)}
	n := nextReport(r, p)
	g.Expect(n.Polls).To(Equal([]time.Time{at, at.Add(60 * time.Second), at.Add(120 * time.Second)}))
	g.Expect(r.Polls).To(HaveLen(2), "the record passed in is not modified")
	g.Expect(nextReport(n, p)).To(BeIdenticalTo(n), "a poll already recorded changes nothing")
}
