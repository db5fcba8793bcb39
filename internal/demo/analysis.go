package demo

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stationfleet/stationfleet/internal/promserver"
	"github.com/stationfleet/stationfleet/internal/stationsim"
)

// AnalysisSampleFile is the rollout the demo applies with --analysis.
const AnalysisSampleFile = "config/samples/firmware_v1alpha1_firmwarerollout_analysis.yaml"

// startAnalysis serves the stations' network-server metrics on loopback,
// makes stations that run pkg forward only the share degrade of their
// uplinks (1: a good firmware), and starts a Prometheus that scrapes them.
// It returns Prometheus's URL and a function that stops both.
func startAnalysis(ctx context.Context, stations []*stationsim.Station, pkg string, degrade float64) (string, func(), error) {
	m := stationsim.NewNetworkMetrics(stations, 0)
	if degrade < 1 {
		m.Degrade(pkg, degrade)
	}
	mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	addr, err := m.Serve(mctx, "127.0.0.1:0")
	if err != nil {
		stopMetrics()
		return "", nil, err
	}
	prom, err := promserver.StartProcess(addr)
	if err != nil {
		stopMetrics()
		return "", nil, fmt.Errorf("start Prometheus (apt-get install prometheus, or set $%s): %w", promserver.EnvBinary, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := prom.WaitScraped(wctx, 1); err != nil {
		prom.Stop()
		stopMetrics()
		return "", nil, err
	}
	return prom.URL, func() { prom.Stop(); stopMetrics() }, nil
}

// setPrometheus points every analysis step of the sample u at url.
func setPrometheus(u *unstructured.Unstructured, url string) error {
	steps, _, err := unstructured.NestedSlice(u.Object, "spec", "strategy", "steps")
	if err != nil {
		return fmt.Errorf("sample steps: %w", err)
	}
	for _, s := range steps {
		if a, ok := s.(map[string]any)["analysis"].(map[string]any); ok {
			if err := unstructured.SetNestedField(a, url, "prometheus", "address"); err != nil {
				return err
			}
		}
	}
	return unstructured.SetNestedSlice(u.Object, steps, "spec", "strategy", "steps")
}
