package controllers

import (
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

func TestStationReportsMerge(t *testing.T) {
	g := NewWithT(t)
	r, err := parseReports(`{"stations":["B","A"]}`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.merge(map[string]struct{}{"A": {}}, false)).To(BeFalse(), "already named: no write")
	g.Expect(r.merge(map[string]struct{}{"C": {}}, false)).To(BeTrue())
	g.Expect(r.String()).To(Equal(`{"stations":["A","B","C"]}`))

	many := map[string]struct{}{}
	for i := range maxReportedStations {
		many[fmt.Sprintf("%016X", i)] = struct{}{}
	}
	g.Expect(r.merge(many, false)).To(BeTrue())
	g.Expect(r.String()).To(Equal(`{"more":true}`), "past the bound the owner reads every station")
	g.Expect(r.merge(map[string]struct{}{"D": {}}, false)).To(BeTrue())
	g.Expect(r.More).To(BeTrue())

	for _, bad := range []string{`{`, `{"stations":[""]}`, `["A"]`} {
		_, err := parseReports(bad)
		g.Expect(err).To(HaveOccurred(), bad)
	}
	r, err = parseReports("")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r.Stations).To(BeEmpty())
}

func TestWakerKeepsToItsNamespaces(t *testing.T) {
	g := NewWithT(t)
	w := NewWaker(4, "a")
	g.Expect(w.Watches("a/r")).To(BeTrue())
	g.Expect(w.Watches("b/r")).To(BeFalse())
	w.NotifyStation("b/r", "S1")
	g.Expect(w.ch).To(BeEmpty(), "never a request for a namespace the cache does not hold")
	g.Expect(w.drain("b/r")).To(BeEmpty())
	w.NotifyStation("a/r", "S1")
	g.Expect(w.ch).To(HaveLen(1))
	g.Expect(w.drain("a/r")).To(Equal([]string{"S1"}))
	g.Expect(NewWaker(1).Watches("any/r")).To(BeTrue(), "no namespaces: every namespace")
}

func TestReportRouter(t *testing.T) {
	g := NewWithT(t)
	elected := make(chan struct{})
	w := NewWaker(4, "a")
	relay := NewReportRelay(nil, nil, 0)
	rt := &ReportRouter{Waker: w, Relay: relay, Elected: elected}
	pending := func(rollout string) int {
		relay.mu.Lock()
		defer relay.mu.Unlock()
		if p := relay.pending[rollout]; p != nil {
			return len(p.ids)
		}
		return 0
	}

	rt.NotifyStation("b/r", "S1")
	g.Expect(pending("b/r")).To(Equal(1), "another namespace: relayed")
	rt.NotifyStation("a/r", "S2")
	g.Expect(pending("a/r")).To(Equal(1), "not the leader: relayed to the leader")
	g.Expect(w.ch).To(BeEmpty())
	close(elected)
	rt.NotifyStation("a/r", "S3")
	g.Expect(w.ch).To(HaveLen(1), "the leader of a watched namespace wakes itself")
	g.Expect(pending("a/r")).To(Equal(1))
	relay.queue.ShutDown()
}

func TestAnnotationsChangedPredicate(t *testing.T) {
	obj := func(ann map[string]string) *fwv1.FirmwareRollout {
		return &fwv1.FirmwareRollout{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
	}
	reports := fwv1.ReportedStationsAnnotation
	tests := []struct {
		name     string
		old, new map[string]string
		want     bool
	}{
		{"reports arrive", nil, map[string]string{reports: "{}"}, true},
		{"more reports", map[string]string{reports: "{}"}, map[string]string{reports: `{"stations":["A"]}`}, true},
		{"reports taken", map[string]string{reports: "{}", "x": "1"}, map[string]string{"x": "1"}, false},
		{"reports taken and a resume", map[string]string{reports: "{}"}, map[string]string{fwv1.ResumeAnnotation: "now"}, true},
		{"resume", nil, map[string]string{fwv1.ResumeAnnotation: "now"}, true},
		{"nothing", map[string]string{"x": "1"}, map[string]string{"x": "1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := annotationsChanged{}.Update(event.UpdateEvent{ObjectOld: obj(tt.old), ObjectNew: obj(tt.new)})
			NewWithT(t).Expect(got).To(Equal(tt.want))
		})
	}
}
