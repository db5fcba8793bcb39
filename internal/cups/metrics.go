package cups

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Request outcomes, the values of the "outcome" label.
const (
	OutcomeNoChange     = "noChange"     // 14 zero bytes
	OutcomeChange       = "change"       // URIs and/or credentials, no firmware
	OutcomeUpdate       = "update"       // firmware sent (possibly with more)
	OutcomeRefused      = "refused"      // firmware withheld (KeyMismatch, ModelMismatch)
	OutcomeBadRequest   = "badRequest"   // 400
	OutcomeUnauthorized = "unauthorized" // 401: no credentials presented
	OutcomeForbidden    = "forbidden"    // 403: authentication failed, unknown device, router mismatch
	OutcomeNotFound     = "notFound"     // 404: wrong path, or unknown device in insecure mode
	OutcomeMethod       = "badMethod"    // 405
	OutcomeError        = "error"        // 5xx: registry or blob store failure, bad twin
	OutcomeAborted      = "aborted"      // stream failed mid-body; connection aborted
)

// metrics are the server's Prometheus collectors, prefixed stationfleet_cups_.
type metrics struct {
	requests    *prometheus.CounterVec
	updates     prometheus.Counter
	credentials *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	obsWrites   *prometheus.CounterVec
	handshakes  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stationfleet_cups_requests_total",
			Help: "CUPS update-info requests by outcome.",
		}, []string{"outcome"}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stationfleet_cups_updates_served_total",
			Help: "Firmware updates sent to stations.",
		}),
		credentials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stationfleet_cups_credentials_served_total",
			Help: "Credential blobs sent to stations, by set (cups, tc).",
		}, []string{"set"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stationfleet_cups_bytes_streamed_total",
			Help: "Response body bytes written, by kind (update, credentials, other).",
		}, []string{"kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stationfleet_cups_request_duration_seconds",
			Help: "Time from request to the last byte of the response, by outcome.",
			// From a 100 µs cache hit to minutes of firmware streaming.
			Buckets: []float64{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 300},
		}, []string{"outcome"}),
		obsWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stationfleet_cups_observation_writes_total",
			Help: "Durable observation writes, by result (ok, error).",
		}, []string{"result"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stationfleet_cups_tls_handshake_failures_total",
			Help: "TLS handshakes the CUPS server refused or lost, by reason (unknown_ca, expired, no_certificate, bad_certificate, server_certificate_rejected, protocol, closed, timeout, other).",
		}, []string{"reason"}),
	}
	m.requests = register(reg, m.requests)
	m.updates = register(reg, m.updates)
	m.credentials = register(reg, m.credentials)
	m.bytes = register(reg, m.bytes)
	m.latency = register(reg, m.latency)
	m.obsWrites = register(reg, m.obsWrites)
	m.handshakes = register(reg, m.handshakes)
	return m
}

// register registers c, or returns the collector already registered under
// the same name, so that several Servers in one process share the metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A conflicting collector of another shape: keep ours unregistered
		// rather than fail the server.
	}
	return c
}
