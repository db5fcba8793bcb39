package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/stationfleet/stationfleet/api/v1alpha1"
	"github.com/stationfleet/stationfleet/internal/embedded"
	"github.com/stationfleet/stationfleet/internal/iothub"
	"github.com/stationfleet/stationfleet/internal/stationsim"
	"github.com/stationfleet/stationfleet/internal/twin"
)

// writeConcurrency is the manager's default --rollout-write-concurrency; the
// raw loop uses the same.
const writeConcurrency = 16

// registry returns an IoT Hub client on the world's emulator, configured as
// the manager is for the emulator (no client rate limit, pages of 1000).
func (w *world) registry() (*iothub.Client, error) {
	return iothub.New(w.hub.ConnectionString(), iothub.WithCAFile(w.hub.CAFile()), iothub.WithEndpoint(w.hub.Addr()), iothub.WithoutRateLimits(), iothub.WithPageSize(1000))
}

// forEach runs fn for each id with conc workers and returns the first error.
func forEach(ctx context.Context, ids []string, conc int, fn func(ctx context.Context, id string) error) error {
	ch := make(chan string)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if err := fn(ctx, id); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		ch <- id
	}
	close(ch)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func (w *world) ids() []string {
	out := make([]string, len(w.specs))
	for i, sp := range w.specs {
		out[i] = embedded.DeviceID(sp.EUI)
	}
	return out
}

// rolloutRounds is how many interleaved rollout / raw-loop pairs row 4
// runs (each on a fresh emulator), so that its ratio comes with a spread.
const rolloutRounds = 3

// rolloutRound is one pair of row 4: the rollout's wall time and the raw
// loop's, with what the rollout wrote.
type rolloutRound struct {
	wall, raw     time.Duration
	writes        int64
	owned, status int
}

// rowRollout is DESIGN.md section 9 row 4: a rollout of n stations in one
// batch against the emulator, beside a raw loop of the same twin writes
// (read, then ETag-conditional merge patch, as the controller writes) with
// the same client and concurrency, in rolloutRounds interleaved pairs.
func rowRollout(ctx context.Context, c *cluster, rep *report, n int) {
	row := fmt.Sprintf("4 %dk-station rollout", n/1000)
	var rounds []rolloutRound
	for i := range rolloutRounds {
		r, err := rolloutPair(ctx, c, n, i)
		if err != nil {
			rep.fail(row, fmt.Errorf("round %d: %w", i+1, err))
			return
		}
		rounds = append(rounds, r)
	}
	var ratios, walls, raws []float64
	for _, r := range rounds {
		ratios = append(ratios, r.wall.Seconds()/r.raw.Seconds())
		walls = append(walls, r.wall.Seconds())
		raws = append(raws, r.raw.Seconds())
	}
	ratio, ratioS := spread(ratios, "%.2fx")
	_, wallS := spread(walls, "%.2f s")
	_, rawS := spread(raws, "%.2f s")
	last := rounds[len(rounds)-1]
	rep.add(figure{row: row, name: "wall time to every twin written", value: wallS,
		baseline: fmt.Sprintf("%s (raw write loop, %d workers)", rawS, writeConcurrency),
		ratio:    ratioS, target: "<= 1.25x", met: ratio <= 1.25})
	rep.add(figure{row: row, name: "twin writes (last round)", value: fmt.Sprintf("%d (%d stations owned)", last.writes, last.owned),
		baseline: fmt.Sprintf("%d", n), ratio: fmt.Sprintf("%.2fx", float64(last.writes)/float64(n)), target: "one per station",
		met: last.writes == int64(n) && last.owned == n})
	rep.add(figure{row: row, name: "status object size (JSON)", value: kib(last.status), target: "<= 64 KiB", met: last.status <= 64<<10})
	rep.note("Row 4: wall time from creating the rollout (one 100%% batch) to its status showing every station written (pending 0); "+
		"the manager runs with --iothub-no-rate-limit and --rollout-write-concurrency=%d against the emulator; the raw loop then writes "+
		"the same firmware+ownership patch (read, ETag-conditional merge patch, as the controller does) to the same %d twins with the same "+
		"iothub client and concurrency, from this process. %d pairs, each on a fresh emulator; the ratio is per pair (median, range).",
		writeConcurrency, n, rolloutRounds)
}

// rolloutPair runs one rollout of n stations on a fresh emulator, then the
// raw loop on the same twins.
func rolloutPair(ctx context.Context, c *cluster, n, i int) (rolloutRound, error) {
	var out rolloutRound
	w, err := c.newWorld(ctx, fmt.Sprintf("rollout%d", i+1), n, false)
	if err != nil {
		return out, err
	}
	defer w.close()
	m, err := w.startManager(ctx, "--iothub-no-rate-limit", "--iothub-page-size=1000",
		fmt.Sprintf("--rollout-write-concurrency=%d", writeConcurrency))
	if err != nil {
		return out, err
	}
	defer m.stop()
	if err := m.waitController(ctx); err != nil {
		return out, err
	}
	writes0 := w.hub.Writes()
	ro := w.rollout("rollout", batchStep("100%"))
	// A CPU profile of the manager over the first round's rollout, for
	// when the ratio misses its target.
	profDone := make(chan struct{})
	go func() {
		defer close(profDone)
		if i == 0 {
			saveProfile(m, "profile?seconds=5", filepath.Join(c.logDir, "rollout-cpu.pprof"))
		}
	}()
	start := time.Now()
	if err := c.kube.Client.Create(ctx, ro); err != nil {
		return out, fmt.Errorf("create rollout: %w", err)
	}
	r, err := w.waitFor(ctx, "rollout", 10*time.Minute, "every station written", func(r *fwv1.FirmwareRollout) bool {
		return r.Status.Targets == int32(n) && r.Status.Pending == 0 && r.Status.InProgress+r.Status.Updated+r.Status.Failed == int32(n)
	})
	out.wall = time.Since(start)
	if err != nil {
		return out, err
	}
	<-profDone
	out.writes = w.hub.Writes() - writes0
	out.owned = len(w.hub.RolloutWrites(string(r.UID)))
	out.status = objectSize(r)
	m.stop()

	// The raw loop: the same firmware and ownership patch per twin.
	reg, err := w.registry()
	if err != nil {
		return out, err
	}
	defer reg.Close()
	crc := w.fw.KeyChecksum
	fw := twin.Firmware{Package: w.fw.Package, URL: w.fw.URL, Signature: w.fw.Signature, KeyChecksum: &crc}
	own := twin.Ownership{Rollout: w.ns + "/raw-loop", UID: "raw-loop", Batch: 1, WrittenAt: time.Now().UTC().Truncate(time.Second)}
	rawStart := time.Now()
	err = forEach(ctx, w.ids(), writeConcurrency, func(ctx context.Context, id string) error {
		_, err := reg.Update(ctx, id, func(t *twin.Twin) (*twin.Patch, error) {
			mine := own
			mine.Previous = t.CUPS.Firmware
			return twin.FirmwarePatch(fw, &mine), nil
		})
		return err
	})
	out.raw = time.Since(rawStart)
	if err != nil {
		return out, fmt.Errorf("raw twin-write loop: %w", err)
	}
	return out, nil
}

// rowBigRollout is DESIGN.md section 9 row 5: a rollout of n stations
// planned, written and tracked to completion. Stations apply instantly: as
// soon as the controller has written a twin, this program records in it the
// observation the CUPS server records when the station reports the new
// package (through the same iothub client, as another CUPS replica would);
// the manager learns of it through its periodic full re-read of the
// stations it owns (--rollout-status-resync).
func rowBigRollout(ctx context.Context, c *cluster, rep *report, n int) {
	row := fmt.Sprintf("5 %dk-station rollout tracked", n/1000)
	w, err := c.newWorld(ctx, "bigrollout", n, false)
	if err != nil {
		rep.fail(row, err)
		return
	}
	defer w.close()
	m, err := w.startManager(ctx, "--iothub-no-rate-limit", "--iothub-page-size=1000", "--rollout-status-resync=10s")
	if err != nil {
		rep.fail(row, err)
		return
	}
	defer m.stop()
	reg, err := w.registry()
	if err != nil {
		rep.fail(row, err)
		return
	}
	defer reg.Close()

	ro := w.rollout("big", batchStep("100%"))
	start := time.Now()
	if err := c.kube.Client.Create(ctx, ro); err != nil {
		rep.fail(row, fmt.Errorf("create rollout: %w", err))
		return
	}
	uid := string(ro.UID)
	obs := twin.Observation{Station: stationsim.DefaultStation, Model: stationsim.DefaultModel, Package: w.fw.Package,
		Keys: []uint32{w.signer.CRC}, ServedPackage: w.fw.Package, UpdatesServed: 1}
	rctx, stopReports := context.WithCancel(ctx)
	reported := make(chan error, 1)
	go func() {
		done := map[string]bool{}
		for {
			var fresh []string
			for id := range w.hub.RolloutWrites(uid) {
				if !done[id] {
					done[id] = true
					fresh = append(fresh, id)
				}
			}
			if err := forEach(rctx, fresh, writeConcurrency, func(ctx context.Context, id string) error {
				_, err := reg.Update(ctx, id, func(*twin.Twin) (*twin.Patch, error) {
					o := obs
					o.LastSeen = time.Now().UTC()
					return twin.ObservationPatch(o), nil
				})
				return err
			}); err != nil {
				reported <- err
				return
			}
			if len(done) == n {
				reported <- nil
				return
			}
			select {
			case <-rctx.Done():
				reported <- rctx.Err()
				return
			case <-time.After(time.Second):
			}
		}
	}()
	r, err := w.waitFor(ctx, "big", 10*time.Minute, "Completed", func(r *fwv1.FirmwareRollout) bool {
		return r.Status.Phase == fwv1.PhaseCompleted
	})
	wall := time.Since(start)
	stopReports()
	repErr := <-reported
	if err != nil {
		if repErr != nil && repErr != context.Canceled {
			err = fmt.Errorf("%w (station reports: %v)", err, repErr)
		}
		rep.fail(row, err)
		return
	}
	rss, rssErr := m.peakRSS()
	saveProfile(m, "heap", filepath.Join(c.logDir, "bigrollout-heap.pprof"))
	if rssErr != nil {
		rep.fail(row, rssErr)
		return
	}
	size := objectSize(r)
	rep.add(figure{row: row, name: "manager peak RSS", value: mib(rss), target: "< 256 MiB", met: rss < 256<<20})
	rep.add(figure{row: row, name: "stations updated / wall time", value: fmt.Sprintf("%d of %d in %s", r.Status.Updated, r.Status.Targets, wall.Round(time.Second)),
		target: "all", met: r.Status.Updated == int32(n)})
	rep.add(figure{row: row, name: "status object size (JSON)", value: kib(size), target: "<= 64 KiB", met: size <= 64<<10})
	rep.note("Row 5: one 100%% batch of %d stations, manager with --iothub-no-rate-limit and --rollout-status-resync=10s. Stations apply "+
		"instantly and report through their twins: once the controller has written a twin, this program records the observation the CUPS "+
		"server records when a station reports the new package (Package and ServedPackage 2.0.7), as a CUPS replica other than the "+
		"controller's would; the manager counts them through its periodic full re-read of the stations it owns. Peak RSS is the process's VmHWM.", n)
}

// rowReportDelay is DESIGN.md section 9 row 6: the delay from the poll that
// carries the new package to the rollout status counting it, with the
// stations polling the manager's own CUPS server.
func rowReportDelay(ctx context.Context, c *cluster, rep *report, n int) {
	row := "6 station report to status"
	w, err := c.newWorld(ctx, "report", n, false)
	if err != nil {
		rep.fail(row, err)
		return
	}
	defer w.close()
	m, err := w.startManager(ctx, "--iothub-no-rate-limit", "--iothub-page-size=1000")
	if err != nil {
		rep.fail(row, err)
		return
	}
	defer m.stop()

	var (
		mu      sync.Mutex
		reports = map[string]time.Time{}
	)
	stations := embedded.Stations(w.specs, "http://"+m.cupsAddr)
	fleet := stationsim.NewFleet(stations, stationsim.FleetOptions{Interval: time.Second, Workers: 64,
		OnResult: func(s *stationsim.Station, r stationsim.Result) {
			if r.Err != nil || r.PackageBefore != w.fw.Package {
				return
			}
			id := embedded.DeviceID(s.EUI())
			at := time.Now().Add(-r.Duration) // the poll's start: the report is in its request
			mu.Lock()
			if _, ok := reports[id]; !ok {
				reports[id] = at
			}
			mu.Unlock()
		}})
	fctx, stopFleet := context.WithCancel(ctx)
	fleetDone := make(chan struct{})
	go func() { _ = fleet.Run(fctx); close(fleetDone) }()
	defer func() { stopFleet(); <-fleetDone }()
	// Let every station poll (and be recorded) before the rollout starts.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		rep.fail(row, ctx.Err())
		return
	}

	wc, err := client.NewWithWatch(c.kube.Config, client.Options{Scheme: c.kube.Scheme})
	if err != nil {
		rep.fail(row, err)
		return
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := wc.Watch(wctx, &fwv1.FirmwareRolloutList{}, client.InNamespace(w.ns))
	if err != nil {
		rep.fail(row, fmt.Errorf("watch rollouts: %w", err))
		return
	}
	defer watch.Stop()
	type point struct {
		at      time.Time
		updated int32
	}
	var points []point
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ev := range watch.ResultChan() {
			if r, ok := ev.Object.(*fwv1.FirmwareRollout); ok {
				points = append(points, point{time.Now(), r.Status.Updated})
				if r.Status.Phase == fwv1.PhaseCompleted {
					return
				}
			}
		}
	}()
	if err := c.kube.Client.Create(ctx, w.rollout("report", batchStep("100%"))); err != nil {
		rep.fail(row, fmt.Errorf("create rollout: %w", err))
		return
	}
	select {
	case <-watched:
	case <-time.After(5 * time.Minute):
		stopWatch()
		<-watched
		last, _ := w.get(ctx, "report")
		rep.fail(row, fmt.Errorf("rollout did not complete within 5 min: %s", statusLine(last)))
		return
	case <-ctx.Done():
		rep.fail(row, ctx.Err())
		return
	}
	mu.Lock()
	times := make([]time.Time, 0, len(reports))
	for _, t := range reports {
		times = append(times, t)
	}
	mu.Unlock()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	// The k-th report (in time) is counted once status shows >= k updated.
	var delays []time.Duration
	j := 0
	for k, t := range times {
		for j < len(points) && points[j].updated < int32(k+1) {
			j++
		}
		if j == len(points) {
			break
		}
		delays = append(delays, points[j].at.Sub(t))
	}
	slices.Sort(delays)
	if len(delays) == 0 {
		rep.fail(row, fmt.Errorf("no report was matched to a status change (%d reports, %d status events)", len(times), len(points)))
		return
	}
	p50, p99 := delays[len(delays)/2], delays[min(len(delays)*99/100, len(delays)-1)]
	rep.add(figure{row: row, name: "delay p50 / p99", value: fmt.Sprintf("%s / %s (%d stations)", p50.Round(time.Millisecond), p99.Round(time.Millisecond), len(delays)),
		target: "<= 1 s", met: p99 <= time.Second})
	rep.note("Row 6: %d stations poll the manager's CUPS server every 1 s (stationsim fleet); one 100%% batch; a station's report time is the "+
		"start of its first poll whose request carries 2.0.7; the k-th report in time is counted when a watch on the rollout first shows "+
		"status.updated >= k. Default --rollout-status-resync (30 s), so the count comes from the CUPS server waking the controller in-process.", n)
}
