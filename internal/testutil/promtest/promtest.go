// Package promtest is the test side of internal/promserver: it starts a
// real Prometheus (Debian's `prometheus` package) on 127.0.0.1 for a test,
// scraping the given targets every second, and stops it in the test's
// cleanup. When Prometheus is not installed the test fails with how to
// install it; it never skips (.ci/run installs it).
package promtest

import (
	"testing"

	"github.com/stationfleet/stationfleet/internal/promserver"
)

// Prometheus is a running Prometheus server (see promserver.Prometheus).
type Prometheus = promserver.Prometheus

// Start starts Prometheus scraping targets (host:port of /metrics
// endpoints) for t, and stops it in t's cleanup.
func Start(t testing.TB, targets ...string) *Prometheus {
	t.Helper()
	p, err := promserver.StartIn(t.TempDir(), targets...)
	if err != nil {
		t.Fatalf("start Prometheus: %v\nInstall it with `apt-get install prometheus` (Debian) or point $%s at a prometheus binary.", err, promserver.EnvBinary)
	}
	t.Cleanup(p.Stop)
	return p
}
