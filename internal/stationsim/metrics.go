package stationsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NetworkMetrics is what a LoRaWAN network server would export about the
// simulated stations, for analysis steps to query: for each station,
// labelled with its device id (eui, 16 upper-case hex digits), the uplinks
// its radio received and those it forwarded to the network server, as
// counters that grow at a steady rate, and stationsim_station_info (1,
// with the package the station runs).
//
// A "degrading" firmware (Degrade) forwards only a part of what the radio
// receives once a station runs it, so that
//
//	sum(rate(stationsim_uplinks_forwarded_total{eui=~"..."}[30s]))
//	  / sum(rate(stationsim_uplinks_received_total{eui=~"..."}[30s]))
//
// drops from 1 to that part after the update, as a network server's
// forwarding ratio does when a packet forwarder misbehaves.
type NetworkMetrics struct {
	mu        sync.Mutex
	stations  []*Station
	perSecond float64
	degrade   map[string]float64
	counts    map[uint64]*uplinkCounts
	now       func() time.Time

	received, forwarded, info *prometheus.Desc
}

type uplinkCounts struct {
	received, forwarded float64
	at                  time.Time
}

// DefaultUplinksPerSecond is each station's uplink rate: a busy urban
// gateway hears a few frames a second.
const DefaultUplinksPerSecond = 5

// NewNetworkMetrics returns the metrics of stations, each receiving
// uplinksPerSecond (DefaultUplinksPerSecond when 0).
func NewNetworkMetrics(stations []*Station, uplinksPerSecond float64) *NetworkMetrics {
	if uplinksPerSecond <= 0 {
		uplinksPerSecond = DefaultUplinksPerSecond
	}
	labels := []string{"eui"}
	return &NetworkMetrics{
		stations: stations, perSecond: uplinksPerSecond, degrade: map[string]float64{},
		counts: map[uint64]*uplinkCounts{}, now: time.Now,
		received: prometheus.NewDesc("stationsim_uplinks_received_total",
			"Uplink frames the station's radio received (simulated network server view).", labels, nil),
		forwarded: prometheus.NewDesc("stationsim_uplinks_forwarded_total",
			"Uplink frames the station forwarded to the network server (simulated network server view).", labels, nil),
		info: prometheus.NewDesc("stationsim_station_info",
			"The package the station runs (always 1).", []string{"eui", "package"}, nil),
	}
}

// Degrade makes every station that runs pkg forward only the fraction
// forwarded (0 to 1) of the uplinks it receives, from now on; 1 undoes it.
func (m *NetworkMetrics) Degrade(pkg string, forwarded float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance()
	m.degrade[pkg] = max(0, min(1, forwarded))
}

// advance adds to each station's counters what it received and forwarded
// since they were last advanced, at the rate of the package it runs now.
func (m *NetworkMetrics) advance() {
	now := m.now()
	for _, s := range m.stations {
		eui := s.EUI()
		c, ok := m.counts[eui]
		if !ok {
			m.counts[eui] = &uplinkCounts{at: now}
			continue
		}
		dt := now.Sub(c.at).Seconds()
		if dt <= 0 {
			continue
		}
		ratio, ok := m.degrade[s.Package()]
		if !ok {
			ratio = 1
		}
		c.received += m.perSecond * dt
		c.forwarded += m.perSecond * ratio * dt
		c.at = now
	}
}

// Describe implements prometheus.Collector.
func (m *NetworkMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.received
	ch <- m.forwarded
	ch <- m.info
}

// Collect implements prometheus.Collector.
func (m *NetworkMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance()
	for _, s := range m.stations {
		c := m.counts[s.EUI()]
		id, pkg := fmt.Sprintf("%016X", s.EUI()), s.Package()
		ch <- prometheus.MustNewConstMetric(m.received, prometheus.CounterValue, c.received, id)
		ch <- prometheus.MustNewConstMetric(m.forwarded, prometheus.CounterValue, c.forwarded, id)
		ch <- prometheus.MustNewConstMetric(m.info, prometheus.GaugeValue, 1, id, pkg)
	}
}

// Handler serves the metrics in Prometheus's text format.
func (m *NetworkMetrics) Handler() http.Handler {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve serves /metrics on addr (127.0.0.1:0 for a free port) until ctx
// ends, and returns the address it listens on.
func (m *NetworkMetrics) Serve(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen for station metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener is gone: nothing to serve any more
		}
	}()
	return ln.Addr().String(), nil
}
