package iothub

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics on controller-runtime's registry. They are package-level and
// registered once, so several Clients in one process (controller and CUPS
// server) share them instead of failing to register twice.
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stationfleet_iothub_requests_total",
		Help: "IoT Hub REST requests by operation and HTTP status code (\"error\" when no response arrived).",
	}, []string{"op", "code"})
	metricThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stationfleet_iothub_throttled_total",
		Help: "IoT Hub responses with 429 or 503 (throttling) by operation.",
	}, []string{"op"})
	metricRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stationfleet_iothub_retries_total",
		Help: "IoT Hub requests repeated after throttling or a transient failure, by operation.",
	}, []string{"op"})
	metricConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stationfleet_iothub_etag_conflicts_total",
		Help: "Twin writes refused with 412 because the twin changed since it was read.",
	})
	metricConnections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stationfleet_iothub_connections_opened_total",
		Help: "Connections opened to IoT Hub, each a TLS handshake; a client that reuses its connections opens few per thousand requests.",
	})
	metricDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stationfleet_iothub_request_duration_seconds",
		Help:    "IoT Hub REST request latency by operation.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	}, []string{"op"})

	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{metricRequests, metricThrottled, metricRetries, metricConflicts, metricConnections, metricDuration} {
			if err := metrics.Registry.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					panic(err) // a programming error: conflicting metric definitions
				}
			}
		}
	})
}
