package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
)

// scalePoint is one size of the scale curve.
type scalePoint struct {
	n            int
	seed         time.Duration // emulator: seeding the twins
	hubBytes     uint64        // emulator: heap after seeding, per twin
	written      time.Duration // rollout created -> every twin written
	rss          int64         // manager peak RSS, after one full re-read of the owned stations
	status       int           // rollout object, JSON bytes
	perStationUs float64       // manager CPU per station
}

// rowScale is DESIGN.md section 9's scale row (issue 18 part 3): rollouts
// of each size in sizes, planned, written and tracked against the
// emulator, printed as a curve: time to every twin written, the manager's
// peak RSS and bytes per station, the status size. Each size runs on a
// fresh emulator and manager. Not in the default rows (`-rows scale`,
// `make bench-scale`): 1,000,000 stations need minutes and gigabytes.
func rowScale(ctx context.Context, c *cluster, rep *report, sizes []int, memLimit string) {
	rssName := "manager peak RSS"
	if memLimit != "off" {
		rssName += " (--memory-limit=" + memLimit + ")"
	}
	var pts []scalePoint
	for _, n := range sizes {
		row := fmt.Sprintf("scale %dk stations", n/1000)
		p, err := scaleRun(ctx, c, n, memLimit)
		if err != nil {
			rep.fail(row, err)
			break // the curve of the sizes measured is still printed
		}
		pts = append(pts, p)
		perStation := float64(p.rss) / float64(n)
		rep.add(figure{row: row, name: "time to every twin written", value: p.written.Round(10 * time.Millisecond).String(),
			baseline: perSize(pts, func(q scalePoint) float64 { return q.written.Seconds() / float64(q.n) * 1e6 }, "%.0f µs/station"),
			target:   fmt.Sprintf("close to linear: <= %.1fx the previous size's µs/station", maxGrowth), met: linear(pts)})
		rep.add(figure{row: row, name: rssName, value: mib(p.rss), baseline: fmt.Sprintf("%.0f bytes/station", perStation),
			target: rssTarget(n), met: n < 1_000_000 || p.rss < 1<<30})
		rep.add(figure{row: row, name: "status object size (JSON)", value: kib(p.status), target: "<= 64 KiB", met: p.status <= 64<<10})
		rep.add(figure{row: row, name: "emulator: seed / heap per twin", value: fmt.Sprintf("%s / %d bytes", p.seed.Round(10*time.Millisecond), p.hubBytes),
			target: "(reported)", met: true})
	}
	var curve strings.Builder
	curve.WriteString("Scale curve (stations: time to every twin written, µs per station; manager peak RSS, bytes per station, " +
		"bytes per station added since the previous size (the growth); manager CPU per station):")
	for i, p := range pts {
		marginal := "-"
		if i > 0 && p.n > pts[i-1].n {
			marginal = fmt.Sprintf("%.0f B", float64(p.rss-pts[i-1].rss)/float64(p.n-pts[i-1].n))
		}
		fmt.Fprintf(&curve, "\n%9d: %8s %6.0f µs | %9s %6.0f B, +%s | %6.0f µs CPU", p.n, p.written.Round(10*time.Millisecond),
			p.written.Seconds()/float64(p.n)*1e6, mib(p.rss), float64(p.rss)/float64(p.n), marginal, p.perStationUs)
	}
	rep.note("%s", curve.String())
}

// maxGrowth is how much more time per station a size may take than the
// size before it, for the curve to count as close to linear.
const maxGrowth = 1.5

// linear reports whether the last point's time per station is within
// maxGrowth of the one before it (the first point is).
func linear(pts []scalePoint) bool {
	if len(pts) < 2 {
		return true
	}
	per := func(q scalePoint) float64 { return q.written.Seconds() / float64(q.n) }
	return per(pts[len(pts)-1]) <= maxGrowth*per(pts[len(pts)-2])
}

func rssTarget(n int) string {
	if n >= 1_000_000 {
		return "< 1 GiB"
	}
	return "(curve)"
}

// perSize formats f of the last point.
func perSize(pts []scalePoint, f func(scalePoint) float64, format string) string {
	return fmt.Sprintf(format, f(pts[len(pts)-1]))
}

// scaleRun runs one size of the curve.
func scaleRun(ctx context.Context, c *cluster, n int, memLimit string) (scalePoint, error) {
	p := scalePoint{n: n}
	w, err := c.newWorld(ctx, fmt.Sprintf("scale%d", n), n, false)
	if err != nil {
		return p, err
	}
	defer w.close()
	p.seed, p.hubBytes = w.seedTime, w.seedHeap/uint64(n)
	const resync = 10 * time.Second
	m, err := w.startManager(ctx, "--iothub-no-rate-limit", "--iothub-page-size=1000", fmt.Sprintf("--rollout-status-resync=%s", resync),
		"--memory-limit="+memLimit) // after startManager's own --memory-limit=off: the last one counts
	if err != nil {
		return p, err
	}
	defer m.stop()
	if err := m.waitController(ctx); err != nil {
		return p, err
	}
	cpu0 := cpuSeconds(m.cmd.Process.Pid)
	start := time.Now()
	if err := c.kube.Client.Create(ctx, w.rollout("scale", batchStep("100%"))); err != nil {
		return p, fmt.Errorf("create rollout: %w", err)
	}
	timeout := 10*time.Minute + time.Duration(n/1000)*time.Second
	r, err := w.waitFor(ctx, "scale", timeout, "every station written", func(r *fwv1.FirmwareRollout) bool {
		return r.Status.Targets == int32(n) && r.Status.Pending == 0 && r.Status.InProgress+r.Status.Updated+r.Status.Failed == int32(n)
	})
	p.written = time.Since(start)
	if err != nil {
		return p, err
	}
	// Tracked: at least one full re-read of the owned stations.
	select {
	case <-time.After(resync + 2*time.Second):
	case <-ctx.Done():
		return p, ctx.Err()
	}
	if r, err = w.get(ctx, "scale"); err != nil {
		return p, err
	}
	p.perStationUs = (cpuSeconds(m.cmd.Process.Pid) - cpu0) / float64(n) * 1e6
	p.status = objectSize(r)
	if p.rss, err = m.peakRSS(); err != nil {
		return p, err
	}
	saveProfile(m, "heap", filepath.Join(c.logDir, fmt.Sprintf("scale-%d-heap.pprof", n)))
	return p, nil
}
