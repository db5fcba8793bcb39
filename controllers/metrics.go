package controllers

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

var (
	// twinWrites counts firmware writes into twins.
	twinWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stationfleet_rollout_twin_writes_total",
		Help: "Twin writes of rollout firmware (one per station and rollout).",
	})
	// batchDuration is the time from a batch's first write to its last outcome.
	batchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stationfleet_rollout_batch_duration_seconds",
		Help:    "Time from a batch's first twin write until every station of the batch had an outcome.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10), // 1 s .. ~3 days
	})
	rolloutStations = &stationGauge{vec: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stationfleet_rollout_stations",
		Help: "Stations of each rollout by outcome.",
	}, []string{"namespace", "name", "outcome"})}
)

func init() {
	metrics.Registry.MustRegister(twinWrites, batchDuration, rolloutStations.vec)
}

type stationGauge struct {
	mu  sync.Mutex
	vec *prometheus.GaugeVec
}

func (g *stationGauge) record(obj *fwv1.FirmwareRollout) {
	g.mu.Lock()
	defer g.mu.Unlock()
	obj.Status.StationCounts.Each(func(outcome fwv1.StationOutcome, n int32) {
		g.vec.WithLabelValues(obj.Namespace, obj.Name, string(outcome)).Set(float64(n))
	})
}

func (g *stationGauge) forget(obj *fwv1.FirmwareRollout) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.vec.DeletePartialMatch(prometheus.Labels{"namespace": obj.Namespace, "name": obj.Name})
}
