package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// TestStationGaugeRecordsEveryOutcome: stationfleet_rollout_stations has a
// series per outcome of a rollout, zeros included, and loses them when the
// rollout is forgotten.
func TestStationGaugeRecordsEveryOutcome(t *testing.T) {
	g := NewWithT(t)
	obj := &fwv1.FirmwareRollout{}
	obj.Namespace, obj.Name = "gauge-test", "r"
	obj.Status.Pending, obj.Status.InProgress, obj.Status.Updated, obj.Status.Skipped = 4, 3, 2, 1
	rolloutStations.record(obj)
	g.Expect(gaugeOf(g, obj)).To(Equal(map[string]float64{"Pending": 4, "InProgress": 3, "Updated": 2, "Failed": 0, "Skipped": 1}))
	rolloutStations.forget(obj)
	g.Expect(gaugeOf(g, obj)).To(BeEmpty())
}

// gaugeOf reads the series of obj from stationfleet_rollout_stations, by
// outcome, without creating any.
func gaugeOf(g Gomega, obj *fwv1.FirmwareRollout) map[string]float64 {
	ch := make(chan prometheus.Metric)
	go func() { rolloutStations.vec.Collect(ch); close(ch) }()
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		g.Expect(m.Write(&d)).To(Succeed())
		l := map[string]string{}
		for _, p := range d.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if l["namespace"] == obj.Namespace && l["name"] == obj.Name {
			out[l["outcome"]] = d.GetGauge().GetValue()
		}
	}
	return out
}
